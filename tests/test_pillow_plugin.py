"""The Pillow plugin, through Pillow's own API only: Image.open, load, save, the registries."""
import io
import subprocess
import sys

import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image

import rnncodec  # noqa: F401  (registers the plugin)
from rnncodec.errors import FormatError


@pytest.fixture
def photo() -> Image.Image:
    return Image.fromarray(smooth_image(40, 56))


def test_registered_with_pillow():
    assert Image.registered_extensions()[".rnc"] == "RNC"
    assert Image.MIME["RNC"] == "image/x-rnc"


def test_save_and_open_by_extension(tmp_path, photo):
    photo.save(tmp_path / "a.rnc", iterations=4)
    with Image.open(tmp_path / "a.rnc") as im:
        assert (im.format, im.mode, im.size, im.info["iterations"]) == ("RNC", "RGB", (56, 40), 4)
        assert Image.MIME[im.format] == "image/x-rnc"
        im.load()
        error = np.abs(np.asarray(im, np.float64) - np.asarray(photo, np.float64)).mean()
    assert error < 30  # a real reconstruction of the photo, not a blank image


def test_a_downscaled_file_opens_at_its_display_size(tmp_path, photo):
    photo.save(tmp_path / "half.rnc", iterations=3, downscale=2)
    with Image.open(tmp_path / "half.rnc") as im:
        assert im.size == (56, 40)
        im.load()
        assert np.asarray(im).shape == (40, 56, 3)


def test_iterations_decode_a_prefix(tmp_path, photo):
    photo.save(tmp_path / "four.rnc", iterations=4)
    photo.save(tmp_path / "two.rnc", iterations=2)
    with Image.open(tmp_path / "four.rnc") as im:
        im.iterations = 2
        prefix = np.asarray(im)
    with Image.open(tmp_path / "two.rnc") as two, Image.open(tmp_path / "four.rnc") as four:
        assert np.array_equal(prefix, np.asarray(two))  # the first two iterations of a file are a file of two
        assert not np.array_equal(prefix, np.asarray(four))


def test_bpp_and_file_objects(photo):
    buf = io.BytesIO()
    photo.save(buf, format="RNC", bpp=1.0)
    assert len(buf.getvalue()) * 8 / (56 * 40) <= 1.0
    buf.seek(0)
    with Image.open(buf) as im:
        assert im.format == "RNC" and 1 < im.info["iterations"] < 16  # the rate, not the model's count, set it
        im.load()


@pytest.mark.parametrize("adaptive", [False, True])
def test_a_quality_target(photo, adaptive):
    buf = io.BytesIO()
    photo.save(buf, format="RNC", target_psnr=30.0, adaptive=adaptive)
    buf.seek(0)
    with Image.open(buf) as im:
        decoded = np.asarray(im, np.float64)
    mse = ((decoded - np.asarray(photo, np.float64)) ** 2).mean()
    assert 10 * np.log10(255**2 / mse) >= 30.0


def test_quality_as_for_jpeg(photo):
    sizes = []
    for q in (10, 70):
        buf = io.BytesIO()
        photo.save(buf, format="RNC", quality=q)
        sizes.append(len(buf.getvalue()))
        buf.seek(0)
        with Image.open(buf) as im:
            assert im.size == photo.size and np.asarray(im).shape == (40, 56, 3)
    assert sizes[0] < sizes[1]


def test_alpha_round_trip(tmp_path):
    alpha = np.tile(np.linspace(0, 255, 56, dtype=np.uint8), (40, 1))
    Image.fromarray(np.dstack([smooth_image(40, 56), alpha]), "RGBA").save(tmp_path / "t.rnc", iterations=1)
    with Image.open(tmp_path / "t.rnc") as im:
        assert im.mode == "RGBA"
        assert np.array_equal(np.asarray(im.getchannel("A")), alpha)


def test_corrupt_file_is_the_projects_error(tmp_path, photo):
    photo.save(tmp_path / "a.rnc", iterations=2)
    (tmp_path / "cut.rnc").write_bytes((tmp_path / "a.rnc").read_bytes()[:-3])
    with pytest.raises(FormatError, match="the stream ends inside iteration 2"):
        Image.open(tmp_path / "cut.rnc")


def test_import_is_cheap_and_never_loads_the_trainers(tmp_path, photo):
    photo.save(tmp_path / "a.png")
    code = ("import sys, rnncodec; from PIL import Image; heavy = 'torch' in sys.modules; "
            f"Image.open({str(tmp_path / 'a.png')!r}).save({str(tmp_path / 'a.rnc')!r}, iterations=1); "
            f"Image.open({str(tmp_path / 'a.rnc')!r}).load(); "
            "bad = sorted(m for m in sys.modules if m.startswith('rnncodec.train')); print(heavy, bad); "
            "sys.exit(heavy or bool(bad))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
