"""The command line end to end, through a subprocess, as a user runs it."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image

KODIM = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak" / "kodim01.png"


def run(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "rnncodec.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=300)


@pytest.fixture
def png(tmp_path) -> Path:
    path = tmp_path / "in.png"
    Image.fromarray(smooth_image(40, 56)).save(path)
    return path


def test_round_trip_with_packaged_model(tmp_path, png):
    rnc, out, low = tmp_path / "a.rnc", tmp_path / "a.png", tmp_path / "b.png"
    r = run("compress", png, "-o", rnc, "--iterations", "4")
    assert r.returncode == 0, r.stderr
    r = run("decompress", rnc, "-o", out)
    assert r.returncode == 0, r.stderr
    assert Image.open(out).size == (56, 40)
    assert run("decompress", rnc, "-o", low, "--iterations", "2").returncode == 0
    info = run("info", rnc)
    assert info.returncode == 0 and "4 of 4 written" in info.stdout and "56×40" in info.stdout


def test_explicit_model_and_bpp(tmp_path, png, model_dir):
    rnc = tmp_path / "a.rnc"
    r = run("compress", png, "-o", rnc, "--bpp", "0.4", "--model", model_dir / "tiny.safetensors")
    assert r.returncode == 0, r.stderr
    assert rnc.stat().st_size * 8 / (40 * 56) <= 0.4
    assert run("decompress", rnc, "-o", tmp_path / "a.png", env={"RNNCODEC_MODEL_PATH": str(model_dir)}).returncode == 0


def test_quality_targets(tmp_path, png):
    from rnncodec.quality import ms_ssim_rgb, psnr_rgb

    original = np.asarray(Image.open(png).convert("RGB"))
    assert run("compress", png, "-o", tmp_path / "all.rnc").returncode == 0
    for flag, target, score in (("--target-psnr", 24.0, psnr_rgb), ("--target-ms-ssim", 0.45, ms_ssim_rgb)):
        rnc, out = tmp_path / f"{flag}.rnc", tmp_path / f"{flag}.png"
        assert run("compress", png, "-o", rnc, flag, target).returncode == 0
        assert run("decompress", rnc, "-o", out).returncode == 0
        assert score(original, np.asarray(Image.open(out))) >= target
        assert rnc.stat().st_size < (tmp_path / "all.rnc").stat().st_size  # it stopped before the last iteration
    assert run("compress", png, "-o", tmp_path / "x.rnc", "--bpp", "1", "--target-psnr", "30").returncode == 2


@pytest.mark.skipif(not KODIM.exists(), reason="shared Kodak data not present")
def test_kodak_image_at_four_iterations(tmp_path, model_dir):
    rnc = tmp_path / "k.rnc"
    r = run("compress", KODIM, "-o", rnc, "--iterations", "4", "--model", model_dir / "tiny.safetensors")
    assert r.returncode == 0, r.stderr
    raw_bytes = 4 * 768 * 512 * 0.125 / 8
    assert raw_bytes < rnc.stat().st_size < raw_bytes + 200  # raw bits plus a small header
    env = {"RNNCODEC_MODEL_PATH": str(model_dir)}
    assert run("decompress", rnc, "-o", tmp_path / "k.png", env=env).returncode == 0
    assert Image.open(tmp_path / "k.png").size == (768, 512)


def _one_clean_line(r, code):
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("rnncodec: error:"), r.stderr
    assert "Traceback" not in r.stderr


def test_errors_are_one_line_with_exit_codes(tmp_path, png):
    rnc = tmp_path / "a.rnc"
    assert run("compress", png, "-o", rnc, "--iterations", "2").returncode == 0
    _one_clean_line(run("compress", png, "-o", rnc), 6)  # exists, no --force
    assert run("compress", png, "-o", rnc, "--iterations", "1", "--force").returncode == 0
    (tmp_path / "bad.rnc").write_bytes(b"NOPE" + rnc.read_bytes()[4:])
    _one_clean_line(run("decompress", tmp_path / "bad.rnc", "-o", tmp_path / "x.png"), 3)
    (tmp_path / "cut.rnc").write_bytes(rnc.read_bytes()[:-3])
    _one_clean_line(run("decompress", tmp_path / "cut.rnc", "-o", tmp_path / "x.png"), 3)
    (tmp_path / "text.png").write_text("not an image")
    _one_clean_line(run("compress", tmp_path / "text.png", "-o", tmp_path / "t.rnc"), 4)
    _one_clean_line(run("compress", tmp_path / "missing.png", "-o", tmp_path / "t.rnc"), 4)
    _one_clean_line(run("compress", png, "-o", tmp_path / "m.rnc", "--model", tmp_path / "none.safetensors"), 5)
    _one_clean_line(run("decompress", rnc, "-o", tmp_path / "nodir" / "x.png"), 6)
    assert not any(p.name.endswith(".part") for p in tmp_path.iterdir())
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "t.rnc").exists()


def test_wrong_model_is_refused(tmp_path, png, model_dir):
    rnc = tmp_path / "a.rnc"
    assert run("compress", png, "-o", rnc, "--iterations", "1").returncode == 0  # packaged model
    r = run("decompress", rnc, "-o", tmp_path / "x.png", "--model", model_dir / "tiny.safetensors")
    _one_clean_line(r, 5)
    assert "needs" in r.stderr
