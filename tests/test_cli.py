"""The command line end to end, through a subprocess, as a user runs it."""
import io
import json
import os
import pty
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


def test_packaged_models_by_name(tmp_path, png):
    """`--model wide` picks the packaged wide model and the context model fitted to it; the file
    names both, so decompress finds them with no option, and info names the model. A file of that
    name comes first."""
    from rnncodec.stored import read_metadata
    from rnncodec.zoo import NAMED_MODELS, find

    wide_id = read_metadata(NAMED_MODELS["wide"])["model_id"]
    files = {}
    for name in ("default", "wide"):
        files[name] = tmp_path / f"{name}.rnc"
        assert run("compress", png, "-o", files[name], "-i", "2", "--model", name).returncode == 0
        assert run("decompress", files[name], "-o", tmp_path / f"{name}.png").returncode == 0
    described = {name: json.loads(run("info", f, "--json").stdout) for name, f in files.items()}
    assert described["wide"]["model_id"] == wide_id != described["default"]["model_id"]
    assert [described[name]["model"] for name in files] == ["default", "wide"]  # info says where each is found
    assert read_metadata(find("entropy-int", model_id=described["wide"]["entropy_id"]))["image_model"] == wide_id
    (tmp_path / "wide").write_bytes(b"not weights")
    r = run("compress", png, "-o", tmp_path / "x.rnc", "--model", "wide", cwd=tmp_path)
    assert r.returncode != 0 and not (tmp_path / "x.rnc").exists()


def test_info_says_when_a_files_model_is_not_here():
    """Before a decode would fail: the tests' tiny model is on no search path here."""
    r = run("info", Path(__file__).parent / "vectors" / "coder2.rnc", env={"RNNCODEC_MODEL_PATH": ""})
    assert r.returncode == 0 and "not found here" in r.stdout


def test_downscaled_coding(tmp_path, png):
    """--downscale 2 codes at half size and decodes at full size; a budget below one full-size
    iteration goes to a smaller size by itself; info says both sizes."""
    half, small, big = tmp_path / "half.rnc", tmp_path / "small.rnc", tmp_path / "big.png"
    Image.fromarray(smooth_image(96, 128, seed=2)).save(big)
    assert run("compress", png, "-o", half, "-i", "3", "--downscale", "2").returncode == 0
    assert run("decompress", half, "-o", tmp_path / "half.png").returncode == 0
    assert Image.open(tmp_path / "half.png").size == (56, 40)
    info = run("info", half)
    assert info.returncode == 0 and "56×40, coded at 28×20" in info.stdout
    one = run("compress", big, "-o", tmp_path / "one.rnc", "-i", "1", "--downscale", "1")
    budget = 0.7 * (tmp_path / "one.rnc").stat().st_size * 8 / (96 * 128)
    assert one.returncode == 0 and run("compress", big, "-o", small, "--bpp", budget).returncode == 0
    described = json.loads(run("info", small, "--json").stdout)
    assert described["bpp"] <= budget and described["coded_width"] < described["width"] == 128
    assert run("compress", png, "-o", tmp_path / "x.rnc", "--downscale", "3").returncode == 2


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
    r = run("compress", png, "-o", tmp_path / "tiny.rnc", "--bpp", "0.001")
    assert r.returncode == 1 and "below what one iteration costs" in r.stderr and not (tmp_path / "tiny.rnc").exists()
    r = run("compress", png, "-o", tmp_path / "far.rnc", "--target-psnr", "90")
    assert r.returncode == 0 and "out of reach: stopped at 16 iterations" in r.stderr


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


def test_default_names_never_overwrite(tmp_path, png):
    r = run("compress", png.name, "--iterations", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rnc = tmp_path / "in.png.rnc"
    assert rnc.exists()
    _one_clean_line(run("compress", png.name, cwd=tmp_path), 6)  # in.png.rnc exists
    before = png.read_bytes()
    _one_clean_line(run("decompress", rnc.name, cwd=tmp_path), 6)  # it would write in.png: the original
    assert png.read_bytes() == before
    assert run("decompress", rnc.name, "--force", cwd=tmp_path).returncode == 0
    assert Image.open(png).size == (56, 40) and png.read_bytes() != before
    rnc.rename(tmp_path / "x.rnc")
    assert run("decompress", "x.rnc", cwd=tmp_path).returncode == 0
    assert Image.open(tmp_path / "x.png").size == (56, 40)


def test_standard_input_and_output(tmp_path, png):
    r = subprocess.run([sys.executable, "-m", "rnncodec.cli", "compress", "-", "-o", "-", "--iterations", "2"],
                       input=png.read_bytes(), capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout[:4] == b"RNC\x1a"
    d = subprocess.run([sys.executable, "-m", "rnncodec.cli", "decompress", "-"], input=r.stdout, capture_output=True,
                       timeout=300)
    assert d.returncode == 0, d.stderr
    assert Image.open(io.BytesIO(d.stdout)).size == (56, 40)
    bad = subprocess.run([sys.executable, "-m", "rnncodec.cli", "decompress", "-", "-o", "-", "--strict"], input=r.stdout[:-3],
                         capture_output=True, timeout=300)
    assert bad.returncode == 3 and bad.stdout == b""  # nothing half-written to standard output either


def test_decompress_writes_the_format_its_output_names(tmp_path, png):
    rnc = tmp_path / "a.rnc"
    assert run("compress", png, "-o", rnc, "--iterations", "2").returncode == 0
    for name, fmt in (("a.PNG", "PNG"), ("a.jpg", "JPEG"), ("a.webp", "WEBP"), ("a.tiff", "TIFF")):
        r = run("decompress", rnc, "-o", tmp_path / name)
        assert r.returncode == 0, r.stderr
        assert Image.open(tmp_path / name).format == fmt
    r = run("decompress", rnc, "-o", tmp_path / "a.xyz")
    assert r.returncode == 6 and r.stderr.strip().endswith("unknown image file extension (use .png)")
    assert not (tmp_path / "a.xyz").exists()


def test_binary_output_is_refused_on_a_terminal(png):
    primary, secondary = pty.openpty()
    try:
        r = subprocess.run([sys.executable, "-m", "rnncodec.cli", "compress", str(png), "-o", "-"], stdout=secondary,
                           stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(primary)
        os.close(secondary)
    assert r.returncode == 6 and "terminal" in r.stderr


def test_a_reader_that_leaves_early_ends_it_quietly():
    """`rnncodec info k.rnc | head -1`: no traceback and no error line, the SIGPIPE status."""
    vector = Path(__file__).parent / "vectors" / "default-coder2-tiles.rnc"
    p = subprocess.Popen([sys.executable, "-m", "rnncodec.cli", "info", vector], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.close()  # before the interpreter has even started: its first write finds no reader
    assert p.wait(timeout=300) == 141
    assert p.stderr.read() == b""


def test_version_names_the_packaged_models():
    from rnncodec import __version__
    from rnncodec.zoo import load_image_model

    r = run("--version")
    assert r.returncode == 0, r.stderr
    assert f"rnncodec {__version__}" in r.stdout and load_image_model().model_id.hex() in r.stdout
    assert "coder 2" in r.stdout


def test_info_json_and_notes(tmp_path, png):
    from rnncodec import container

    rnc = tmp_path / "a.rnc"
    assert run("compress", png, "-o", rnc, "--iterations", "3").returncode == 0
    r = run("info", "--json", rnc)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    header, chunks = container.read(rnc.read_bytes())
    assert (info["width"], info["height"], info["iterations"], info["bytes"]) == (56, 40, 3, rnc.stat().st_size)
    assert [c["prefix_bytes"] for c in info["chunks"]] == [len(container.truncate(header, chunks, k)) for k in (1, 2, 3)]
    assert info["chunks"][-1]["prefix_bpp"] == pytest.approx(info["bpp"])
    r = run("decompress", rnc, "-o", tmp_path / "a.png", "--iterations", "20")
    assert r.returncode == 0 and r.stderr.strip() == "rnncodec: note: 20 iterations asked for, the file holds 3: decoded 3"
    r = run("decompress", rnc, "-o", tmp_path / "b.png", "--iterations", "20", "-q")
    assert r.returncode == 0 and r.stderr == ""


def test_alpha_through_the_command_line(tmp_path):
    alpha = np.zeros((40, 56), np.uint8)
    alpha[4:30, 6:50] = np.linspace(0, 255, 44, dtype=np.uint8)
    Image.fromarray(np.dstack([smooth_image(40, 56), alpha]), "RGBA").save(tmp_path / "t.png")
    assert run("compress", "t.png", "--iterations", "2", cwd=tmp_path).returncode == 0
    assert run("decompress", "t.png.rnc", "-o", "out.png", cwd=tmp_path).returncode == 0
    out = Image.open(tmp_path / "out.png")
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out.getchannel("A")), alpha)
    r = run("compress", "t.png", "-o", "flat.rnc", "--alpha", "drop", "--background", "#000000", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert run("decompress", "flat.rnc", cwd=tmp_path).returncode == 0
    assert Image.open(tmp_path / "flat.png").mode == "RGB"
    assert run("compress", "t.png", "-o", "x.rnc", "--alpha", "drop", "--background", "nope", cwd=tmp_path).returncode == 1


def test_output_flag_is_the_same_everywhere():
    from rnncodec.cli import build_parser

    parser = build_parser()
    for argv in (["train", "data"], ["train-entropy", "data"], ["eval", "data"], ["plot", "results"]):
        for flag in ("-o", "--output", "--out"):
            assert parser.parse_args([*argv, flag, "somewhere"]).out == "somewhere", (argv, flag)
    for argv in (["export", "ck.pt"], ["quantise-entropy", "m", "--calib", "d"], ["compress", "a"], ["decompress", "a"]):
        assert parser.parse_args([*argv, "-o", "x"]).output == "x"


@pytest.mark.parametrize("command", ["compress", "decompress", "info", "train", "train-entropy", "quantise-entropy", "export",
                                     "eval", "plot"])
def test_every_command_has_help(command, capsys):
    from rnncodec.cli import build_parser

    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "--help"])
    assert exit_.value.code == 0 and "usage: rnncodec " + command in capsys.readouterr().out


def test_quality_from_the_command_line(tmp_path, png):
    rnc, out = tmp_path / "q.rnc", tmp_path / "q.png"
    assert run("compress", png, "-o", rnc, "--quality", "40").returncode == 0
    assert run("decompress", rnc, "-o", out).returncode == 0
    assert Image.open(out).size == (56, 40)
    assert "adaptive: block iteration counts" in run("info", rnc).stdout
    r = run("compress", png, "-o", tmp_path / "bad.rnc", "--quality", "120")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "quality lies between 0 and 100" in r.stderr
    assert not (tmp_path / "bad.rnc").exists()


def test_adaptive_from_the_command_line(tmp_path, png):
    rnc, out = tmp_path / "a.rnc", tmp_path / "a.png"
    assert run("compress", png, "-o", rnc, "--target-psnr", "26", "--adaptive").returncode == 0
    assert run("decompress", rnc, "-o", out).returncode == 0
    for flag, name in (([], "default.rnc"), (["--no-adaptive"], "alone.rnc")):  # adaptive is the default for targets
        assert run("compress", png, "-o", tmp_path / name, "--target-psnr", "26", *flag).returncode == 0
    assert (tmp_path / "default.rnc").read_bytes() == rnc.read_bytes()
    assert run("decompress", tmp_path / "alone.rnc", "-o", tmp_path / "alone.png").returncode == 0
    info = json.loads(run("info", rnc, "--json").stdout)
    assert info["iterations"] >= 1
    r = run("compress", png, "-o", tmp_path / "b.rnc", "--iterations", "3", "--adaptive")
    assert r.returncode == 1 and "need a quality target" in r.stderr
