"""The rate options are written once (`rate.Rate`): every user surface takes the same set from there,
and a given backend, precision and image give the same bytes every time."""
import hashlib
import io
import subprocess
import sys
from dataclasses import fields

import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image

from rnncodec import container
from rnncodec.backend import load_backend
from rnncodec.cli import build_parser, main
from rnncodec.codec import compress, decode, encode
from rnncodec.errors import OptionError
from rnncodec.quality import FLAT, masked_error, ms_ssim_rgb, psnr_rgb, squared_error
from rnncodec.rate import DEFAULT_QUALITY, Rate
from rnncodec.tiles import plan_tiles

# a valid value of each option, and what it needs beside it; the test checks these are all of them
EXAMPLES = {"iterations": (2, {}), "bpp": (0.9, {}), "target_psnr": (14.0, {}), "target_ms_ssim": (0.3, {}),
            "quality": (30.0, {}), "adaptive": (False, {"target_psnr": 14.0}), "downscale": (2, {"iterations": 2})}


def _flags(name: str, value) -> list[str]:
    if isinstance(value, bool):
        return ["--" + ("" if value else "no-") + name.replace("_", "-")]
    return ["--" + name.replace("_", "-"), str(value)]


def test_every_surface_takes_every_rate_option_from_one_place(tmp_path, model_dir, capsys):
    """compress --help, encode() and Image.save(format="RNC") each take every field of Rate, with
    its help, and each gives the file that Rate gives."""
    assert set(EXAMPLES) == set(Rate.options())
    with pytest.raises(SystemExit):
        build_parser().parse_args(["compress", "--help"])
    help_text = "".join(capsys.readouterr().out.split())  # argparse wraps lines, at hyphens too
    img, tiny = smooth_image(32, 48), str(model_dir / "tiny.safetensors")
    png = tmp_path / "in.png"
    Image.fromarray(img).save(png)
    for option in fields(Rate):
        value, extra = EXAMPLES[option.name]
        keywords = {option.name: value, **extra}
        assert _flags(option.name, True)[0] in help_text and "".join(option.metadata["help"].split()) in help_text
        expected = encode(img, Rate(**keywords), model=load_backend("torch", tiny, "fp32")).data
        assert encode(img, model=load_backend("torch", tiny, "fp32"), **keywords).data == expected
        out = tmp_path / f"{option.name}.rnc"
        flags = [f for name, v in keywords.items() for f in _flags(name, v)]
        torch_fp32 = ["--precision", "fp32", "--engine", "torch"]
        assert main(["compress", str(png), "-o", str(out), "--model", tiny, *torch_fp32, *flags]) == 0
        assert out.read_bytes() == expected
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="RNC", **keywords)  # the packaged model
        assert buf.getvalue() == compress(img, Rate(**keywords))


def test_every_surface_checks_the_options_alike(tmp_path, capsys):
    png = tmp_path / "in.png"
    Image.fromarray(smooth_image(32, 48)).save(png)
    with pytest.raises(OptionError, match="quality lies between 0 and 100"):
        Rate(quality=120)
    with pytest.raises(OptionError, match="quality lies between 0 and 100"):
        encode(smooth_image(32, 48), quality=120)
    with pytest.raises(OptionError, match="quality lies between 0 and 100"):
        Image.fromarray(smooth_image(32, 48)).save(io.BytesIO(), format="RNC", quality=120)
    assert main(["compress", str(png), "-o", str(tmp_path / "x.rnc"), "--quality", "120"]) == 1
    assert "rnncodec: error: quality lies between 0 and 100" in capsys.readouterr().err
    with pytest.raises(TypeError):
        encode(smooth_image(32, 48), qualty=50)  # not a rate option


# SHA-256 of the file each backend writes for one small image, in fp32: a change to these bytes is
# a change to the encoder, to be made on purpose (the decoder's side is pinned by tests/vectors)
PINNED = {
    ("torch", "iterations"): "1207e1913aa56b8b97028b84592226dc3e0a08cbd3bd49da289eb6158c3f569f",
    ("torch", "quality"): "a91c99da951be40bc2029bf98b0165a2a6819fc2590ee82c6d6eb06dc601b2b5",
    ("onnx", "iterations"): "167c686ca2f9cb5411dec71713a6d2a51fb97e6801b10108e6a45a6d3866469b",
    ("onnx", "quality"): "cef05fe6e099360a0a8fcedf560d0a71309892353526fc3cbaf522163f9ab642",
}


@pytest.mark.parametrize("engine,goal", list(PINNED))
def test_each_backend_writes_pinned_bytes(engine, goal):
    rate = Rate(iterations=3) if goal == "iterations" else Rate(quality=50)
    data = encode(smooth_image(48, 64, seed=7), rate, model=load_backend(engine, None, "fp32")).data
    assert hashlib.sha256(data).hexdigest() == PINNED[engine, goal]


def test_the_same_command_twice_writes_the_same_bytes(tmp_path):
    png = tmp_path / "in.png"
    Image.fromarray(smooth_image(48, 64, seed=2)).save(png)
    outputs = []
    for i in range(2):
        out = tmp_path / f"{i}.rnc"
        r = subprocess.run([sys.executable, "-m", "rnncodec.cli", "compress", png, "-o", out, "--target-psnr", "26",
                            "--tile", "32", "--overlap", "16"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_no_rate_option_means_the_default_quality_on_every_surface(tmp_path, model_dir):
    """A user who gives no rate option gets `quality=DEFAULT_QUALITY` from the API, the CLI and
    Pillow alike; `adaptive=False` alone still codes every iteration."""
    img, tiny = smooth_image(32, 48, seed=5), str(model_dir / "tiny.safetensors")
    backend = load_backend("onnx", tiny, "fp32")  # the engine of every surface by default
    expected = encode(img, quality=DEFAULT_QUALITY, model=backend).data
    assert Rate() == Rate(quality=DEFAULT_QUALITY) and encode(img, model=backend).data == expected
    png, out = tmp_path / "in.png", tmp_path / "out.rnc"
    Image.fromarray(img).save(png)
    r = subprocess.run([sys.executable, "-m", "rnncodec.cli", "compress", png, "-o", out, "--model", tiny,
                        "--precision", "fp32"], capture_output=True, text=True)
    assert r.returncode == 0 and out.read_bytes() == expected, r.stderr
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="RNC")  # the packaged model
    assert buf.getvalue() == compress(img, quality=DEFAULT_QUALITY)
    every = encode(img, adaptive=False, model=backend)
    assert every.iterations == backend.cfg.iterations and container.read(every.data)[0].blocks is None


def _half_flat(h: int, w: int) -> np.ndarray:
    img = smooth_image(h, w, seed=8)
    img[:, : w // 2] = 128  # a flat half, met early, and a busy half: counts of their own pay
    return img


@pytest.mark.parametrize("metric", ["psnr", "ms_ssim"])
def test_an_adaptive_target_is_never_larger_than_the_target_alone(metric):
    """A target weighs whole iterations, a partial last one and (adaptive) counts of their own, and
    keeps the smallest file that reaches it: adaptive ≤ the target alone ≤ the whole iterations."""
    measure = psnr_rgb if metric == "psnr" else ms_ssim_rgb
    model = load_backend("torch", None, "fp32")  # a trained model: its iterations' gains are uneven over blocks
    img = _half_flat(176, 192)  # MS-SSIM's five scales need sides of 161 px
    header, chunks = container.read(encode(img, iterations=5, model=model).data)
    wholes = [container.truncate(header, chunks, k) for k in range(1, 6)]
    q = [measure(img, decode(data).pixels) for data in wholes]
    for target in (q[1] + 0.3 * (q[2] - q[1]), q[2] + 0.7 * (q[3] - q[2])):
        alone, adaptive = (encode(img, model=model, adaptive=a, downscale=1, **{f"target_{metric}": target}).data
                           for a in (False, True))
        k = next(k for k, v in enumerate(q, 1) if v >= target)
        assert len(adaptive) <= len(alone) < len(wholes[k - 1])
        assert min(measure(img, decode(data).pixels) for data in (alone, adaptive)) >= target


def test_tiles_share_one_choice_of_counts(tmp_path):
    """Over several tiles, one λ serves them all: the CLI's target file has counts per block across
    tiles, reaches the target, and is no larger than the target alone's, nor than whole iterations."""
    img, png = _half_flat(96, 128), tmp_path / "in.png"
    Image.fromarray(img).save(png)
    header, chunks = container.read(encode(img, iterations=4, tile=48, overlap=16, precision="fp32").data)
    q = [psnr_rgb(img, decode(container.truncate(header, chunks, k)).pixels) for k in range(1, 5)]
    target, files = (q[1] + q[2]) / 2, []
    for flags in ([], ["--no-adaptive"]):
        out = tmp_path / f"{len(flags)}.rnc"
        r = subprocess.run([sys.executable, "-m", "rnncodec.cli", "compress", png, "-o", out, "--target-psnr",
                            str(target), "--tile", "48", "--overlap", "16", "--downscale", "1", "--precision", "fp32",
                            *flags], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        files.append(out.read_bytes())
    adaptive, alone = files
    grids = [tuple(-(-s // 16) for s in box.shape) for box in plan_tiles(96, 128, 48, 16)]
    counts = container.block_counts(container.read(adaptive)[0], grids)
    assert len(grids) > 1 and len({int(c.max()) for c in counts} | {int(c.min()) for c in counts}) > 1
    assert len(adaptive) <= len(alone) < len(container.truncate(header, chunks, 3))
    assert psnr_rgb(img, decode(adaptive).pixels) >= target


def test_quality_counts_an_error_less_where_the_original_is_busy():
    """`quality`'s block distortion: a flat block's squared error as it is, a busy block's scaled by
    FLAT / (its luma variance + FLAT), the same error showing less in texture."""
    original = np.full((32, 32, 3), 128, np.uint8)
    original[:, 16:] = np.random.default_rng(0).integers(0, 200, (32, 16, 3))
    recons = np.stack([original, original + 8])
    plain, masked = squared_error(recons, original), masked_error(recons, original)
    assert np.allclose(masked[:, :, 0], plain[:, :, 0], rtol=1e-5) and np.all(masked[0] == 0)
    luma = original[:16, 16:].astype(float) @ [0.299, 0.587, 0.114] / 255
    assert np.allclose(masked[1, 0, 1], plain[1, 0, 1] * FLAT / (luma.var() + FLAT), rtol=1e-4)
    assert masked[1, 0, 1] < plain[1, 0, 1] / 2
