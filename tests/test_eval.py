"""Evaluation: classical codecs, BD-rate / AUC, `rnncodec eval` on tiny images with its cache, and plots."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import save_tiny_image_model, smooth_image
from PIL import Image

from rnncodec.cli import main
from rnncodec.eval import runner
from rnncodec.eval.bd import auc, auc_range, bd_rate, rising
from rnncodec.eval.codecs import available
from rnncodec.eval.curves import METRICS, Curve
from rnncodec.eval.metrics import psnr_rgb
from rnncodec.eval.report import bd_table, equal_rate_table
from rnncodec.onnx_export import export_graphs
from rnncodec.zoo import MODEL_PATH_ENV, load_image_model


@pytest.mark.parametrize("name", sorted(available()))
def test_classical_codec_round_trip(name):
    codec = available()[name]
    a = smooth_image(64, 80)
    low, high = codec.encode(a, codec.qualities[2]), codec.encode(a, codec.qualities[-3])
    assert len(low) < len(high)
    out = codec.decode(high)
    assert out.shape == a.shape and out.dtype == np.uint8
    assert psnr_rgb(a, out) > psnr_rgb(a, codec.decode(low)) and psnr_rgb(a, out) > 28


def test_required_codecs_present():
    assert {"jpeg", "webp", "avif", "jpeg2000"} <= set(available())


def test_jpeg2000_is_rate_controlled():
    a = smooth_image(256, 256)
    data = available()["jpeg2000"].encode(a, 0.5)
    assert len(data) * 8 / a[..., 0].size == pytest.approx(0.5, rel=0.1)


def test_bd_rate():
    rate = np.array([0.25, 0.5, 1.0, 2.0])
    dist = np.array([28.0, 31.0, 34.0, 37.0])
    assert bd_rate(rate, dist, rate, dist) == pytest.approx(0, abs=1e-9)
    assert bd_rate(rate, dist, rate * 1.25, dist) == pytest.approx(25, abs=1e-6)
    assert bd_rate(rate, dist, rate * 0.8, dist) == pytest.approx(-20, abs=1e-6)


def test_bd_rate_of_a_curve_that_peaks_uses_its_rising_points():
    rate = np.array([0.25, 0.5, 1.0, 2.0])
    dist = np.array([28.0, 31.0, 34.0, 37.0])
    peaked_rate = np.array([0.3, 0.6, 1.2, 2.4, 4.8])  # 20 % more rate, then a point that falls back
    peaked = np.array([28.0, 31.0, 34.0, 37.0, 36.5])
    x, y = rising(peaked_rate, peaked)
    assert list(y) == [28.0, 31.0, 34.0, 37.0] and list(x) == [0.3, 0.6, 1.2, 2.4]
    ref = Curve("jpeg", rate, {"psnr-rgb": dist})
    table = bd_table([ref, Curve("rnncodec", peaked_rate, {"psnr-rgb": peaked})], "psnr-rgb")
    assert "| rnncodec | +20.0 % † |" in table and "† over the points" in table


def test_auc_over_the_shared_range():
    a = (np.array([0.1, 1.0, 3.0]), np.array([1.0, 1.0, 1.0]))
    b = (np.array([0.5, 1.5]), np.array([0.0, 2.0]))
    lo, hi = auc_range([a, b])
    assert (lo, hi) == (0.5, 1.5)
    assert auc(*a, lo, hi) == pytest.approx(1.0)
    assert auc(*b, lo, hi) == pytest.approx(1.0)
    assert auc_range([a]) == (0.125, 2.0)
    with pytest.raises(ValueError):
        auc(*b, 0.125, 2.0)


@pytest.fixture
def dataset(tmp_path) -> Path:
    d = tmp_path / "images"
    d.mkdir()
    for seed in (0, 1):  # MS-SSIM's five scales need sides over 160 px
        Image.fromarray(smooth_image(176, 192, seed)).save(d / f"img{seed}.png")
    return d


def _compressed(image: Path, model: Path, tmp_path: Path, *rate: str) -> bytes:
    """The file `rnncodec compress` writes of `image` with `model` at `rate`, its defaults otherwise."""
    out = tmp_path / "compressed.rnc"
    assert main(["compress", str(image), "-o", str(out), "--model", str(model), "-f", "-q", *rate]) == 0
    return out.read_bytes()


def _eval(dataset: Path, out: Path, model: Path, *extra: str) -> None:
    args = ["eval", str(dataset), "--out", str(out), "--model", str(model), "--codecs", "rnncodec,jpeg", *extra]
    assert main(args) == 0


def test_eval_end_to_end(dataset, tmp_path, model_dir, tiny_model):
    out = tmp_path / "results"
    _eval(dataset, out, model_dir / "tiny.safetensors", "--jobs", "1")
    doc = json.loads((out / "rnncodec.json").read_text())
    assert doc["name"] == "rnncodec" and "mean over 2 images" in doc["description"]
    res = doc["results"]
    assert res["quality"] == list(range(1, tiny_model.cfg.iterations + 1))
    assert set(METRICS) <= set(res) and all(len(res[m]) == len(res["bpp"]) for m in METRICS)
    assert np.all(np.diff(res["bpp"]) > 0)
    with (out / "per_image.csv").open() as f:
        rows = list(csv.DictReader(f))
    jpeg_points = len(available()["jpeg"].qualities)
    assert len(rows) == 2 * (tiny_model.cfg.iterations + jpeg_points)
    # what is measured is what `compress` writes: every rnncodec rate is the size of the file of
    # `compress --iterations K`, header included, and the file eval cut them from is compress's
    model = model_dir / "tiny.safetensors"
    for k in (1, 3):
        row = next(r for r in rows if r["codec"] == "rnncodec" and r["image"] == "img1" and r["quality"] == str(k))
        size = len(_compressed(dataset / "img1.png", model, tmp_path, "--iterations", str(k)))
        assert int(row["bytes"]) == size
        assert float(row["bpp"]) == pytest.approx(size * 8 / (176 * 192))
    most = str(tiny_model.cfg.iterations)
    assert (out / "streams" / "img1.rnc").read_bytes() == _compressed(dataset / "img1.png", model, tmp_path, "-i", most)


def test_eval_resumes_from_cache(dataset, tmp_path, model_dir):
    """A second run reads every job from its cache, written once (each is replaced whole when
    measured): the same table; a changed image's jobs are measured again."""
    out = tmp_path / "results"
    model = model_dir / "tiny.safetensors"
    _eval(dataset, out, model, "--jobs", "1")
    before = (out / "per_image.csv").read_text()
    caches = sorted((out / "cache").rglob("*.json"))
    written = {path: path.stat().st_ino for path in caches}
    assert {path.parent.name for path in caches} == {"rnncodec", "jpeg"}
    _eval(dataset, out, model, "--jobs", "1")
    assert (out / "per_image.csv").read_text() == before
    assert {path: path.stat().st_ino for path in caches} == written
    Image.fromarray(smooth_image(176, 192, 7)).save(dataset / "img0.png")
    _eval(dataset, out, model, "--jobs", "1")
    assert {path for path in caches if path.stat().st_ino != written[path]} == \
        {path for path in caches if path.stem == "img0"}


def test_eval_in_parallel(dataset, tmp_path):
    out = tmp_path / "results"
    assert main(["eval", str(dataset), "--out", str(out), "--codecs", "jpeg", "--jobs", "2"]) == 0
    assert len(json.loads((out / "jpeg.json").read_text())["results"]["bpp"]) == len(available()["jpeg"].qualities)


def test_plot_writes_pngs_and_summary(dataset, tmp_path, model_dir):
    out = tmp_path / "results"
    _eval(dataset, out, model_dir / "tiny.safetensors", "--jobs", "1")
    anchors = tmp_path / "anchors"
    anchors.mkdir()
    (anchors / "kodak_paper.csv").write_text("bpp,ms_ssim_rgb,psnr_rgb\n0.25,0.9,26\n0.5,0.95,28\n1.0,0.98,31\n2.0,0.99,34\n")
    assert main(["plot", str(out), "--anchors", str(anchors)]) == 0
    for metric in ("ms-ssim-rgb-db", "psnr-rgb", "psnr-hvs"):
        png = out / f"kodak_{metric}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "summary.md").read_text()
    assert "BD-rate vs JPEG" in text and "paper (published)" in text and "| jpeg | +0.0 % |" in text


def test_equal_rate_table_interpolates_the_others():
    ours = Curve("rnncodec", np.array([0.25, 0.5, 3.0]), {"ms-ssim-rgb": np.array([0.9, 0.95, 0.99]),
                                                            "psnr-rgb": np.array([25.0, 28.0, 35.0])}, quality=[2, 4, 24])
    jpeg = Curve("jpeg", np.array([0.2, 0.6, 1.0]), {"ms-ssim-rgb": np.array([0.8, 0.9, 0.95]),
                                                      "psnr-rgb": np.array([24.0, 28.0, 30.0])})
    rows = equal_rate_table([ours, jpeg], []).splitlines()
    assert rows[2] == "| 2 | 0.2500 | 0.9000 | 0.8125 | 25.00 | 24.50 |"
    assert rows[4].endswith("| – | 35.00 | – |")  # outside JPEG's measured rates: no number


def test_description_names_a_wider_last_layer(tmp_path, model_dir, monkeypatch):
    """Results of two models of one width (the default and `--tail-width 0.5`) must not read alike."""
    save_tiny_image_model(tmp_path / "wide.safetensors", tail_width=0.5)
    export_graphs(load_image_model(tmp_path / "wide.safetensors"), tmp_path)  # eval runs compress's engine
    monkeypatch.setenv(MODEL_PATH_ENV, os.pathsep.join([str(tmp_path), str(model_dir)]))
    assert "last decoder layer 0.5" in runner.describe(runner.RNNCODEC, str(tmp_path / "wide.safetensors"))
    assert "last decoder layer" not in runner.describe(runner.RNNCODEC, str(model_dir / "tiny.safetensors"))


@pytest.mark.parametrize("mode", sorted(runner.RNNCODEC_MODES))
def test_eval_of_rate_options(dataset, tmp_path, model_dir, mode):
    """rnncodec-ms-ssim and rnncodec-quality: one real file per setting, as `compress` writes it."""
    out = tmp_path / "results"
    args = ["eval", str(dataset), "--out", str(out), "--model", str(model_dir / "tiny.safetensors"),
            "--codecs", mode, "--jobs", "1", "--limit", "1"]
    assert main(args) == 0
    keyword, sweep, meaning = runner.RNNCODEC_MODES[mode]
    doc = json.loads((out / f"{mode}.json").read_text())
    assert doc["results"]["quality"] == list(sweep) and meaning in doc["description"]
    with (out / "per_image.csv").open() as f:
        rows = {float(r["quality"]): r for r in csv.DictReader(f)}
    option = "--" + keyword.replace("_", "-")
    data = _compressed(dataset / "img0.png", model_dir / "tiny.safetensors", tmp_path, option, f"{sweep[0]:g}")
    assert int(rows[sweep[0]]["bytes"]) == len(data)


def test_comparison_page_refuses_rate_options(dataset, tmp_path, capsys):
    """The page matches every codec to rnncodec's iteration counts: the rate options have none."""
    args = ["eval", str(dataset), "--out", str(tmp_path / "r"), "--codecs", "rnncodec,rnncodec-ms-ssim", "--html"]
    assert main(args) != 0
    assert "unknown or unavailable codecs ['rnncodec-ms-ssim']" in capsys.readouterr().err
