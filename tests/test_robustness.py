"""Hostile inputs: fuzzed streams, huge claimed sizes, bad outputs, folders with bad files."""
import errno
import subprocess
import sys
import warnings

import numpy as np
import pytest
from conftest import smooth_image
from hypothesis import HealthCheck, given, settings
from PIL import Image

from rnncodec.codec import decode, encode
from rnncodec.entropy import RawCoder
from rnncodec.errors import FormatError, OutputError
from rnncodec.fileio import atomic_write
from rnncodec.testing import ALLOWED, _reheader, mutations


@pytest.fixture
def stream(tiny_model) -> bytes:
    return encode(smooth_image(24, 40), iterations=3, model=tiny_model, tile=32, overlap=16, coder=RawCoder()).data


@pytest.mark.parametrize("coder", ["raw", "entropy_coder", "integer_coder", "raw+alpha", "integer_coder+adaptive"])
def test_fuzzed_streams_fail_only_with_the_projects_error(tiny_model, request, coder):
    image = smooth_image(24, 40)
    if coder == "raw+alpha":
        image = np.dstack([image, smooth_image(24, 40, seed=1)[..., 0]])
    name = coder.split("+")[0]
    rate = dict(target_psnr=5.0, adaptive=True) if coder.endswith("adaptive") else dict(iterations=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a target out of this random model's reach
        stream = encode(image, model=tiny_model, tile=32, overlap=16,
                        coder=request.getfixturevalue(name) if name.endswith("_coder") else RawCoder(), **rate).data

    @settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(mutations(stream))
    def check(data):
        try:
            dec = decode(data)
        except ALLOWED:
            return
        assert dec.pixels.dtype == np.uint8 and dec.pixels.ndim == 3

    check()


def test_huge_claimed_size_refused_before_allocation(stream):
    huge = _reheader(_reheader(stream, 24, ">I", 1 << 20), 28, ">I", 1 << 20)
    with pytest.raises(FormatError, match="over the cap"):
        decode(huge)
    with pytest.raises(FormatError, match="over the cap"):
        decode(stream, max_pixels=100)


def test_more_iterations_than_the_model_has(stream):
    with pytest.raises(FormatError, match="at most"):
        decode(_reheader(stream, 36, ">B", 60))


def test_full_disk_leaves_no_partial_file(tmp_path):
    def write(f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match="No space left"):
        atomic_write(tmp_path / "out.rnc", write)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_kept_without_force(tmp_path):
    (tmp_path / "o").write_bytes(b"keep")
    with pytest.raises(OutputError, match="exists"):
        atomic_write(tmp_path / "o", lambda f: f.write(b"new"))
    assert (tmp_path / "o").read_bytes() == b"keep"
    atomic_write(tmp_path / "o", lambda f: f.write(b"new"), force=True)
    assert (tmp_path / "o").read_bytes() == b"new"


def test_folder_compress_goes_on_past_a_bad_file(tmp_path, model_dir):
    src, out = tmp_path / "in", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    for i, name in enumerate(["a.png", "sub/b.png"]):
        Image.fromarray(smooth_image(20, 30, seed=i)).save(src / name)
    (src / "broken.png").write_bytes(b"\x89PNG garbage")
    r = subprocess.run([sys.executable, "-m", "rnncodec.cli", "compress", str(src), "-o", str(out), "-j", "2",
                        "--iterations", "2", "--model", str(model_dir / "tiny.safetensors")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 7
    assert "broken.png" in r.stderr and "1 of 3 file(s) failed" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["a.png.rnc", "sub", "sub/b.png.rnc"]
    assert decode((out / "a.png.rnc").read_bytes()).pixels.shape == (20, 30, 3)


def test_folder_names_never_collide_and_skipped_files_are_told(tmp_path, model_dir, tiny_model):
    """Pillow's own test folder holds hopper.png, hopper.jpg and hopper.bmp side by side."""
    src = tmp_path / "photos"
    src.mkdir()
    image = Image.fromarray(smooth_image(16, 16))
    for name in ("hopper.png", "hopper.jpg", "hopper.bmp", "hopper.gif", "Hopper.TIF"):
        image.save(src / name)
    Image.fromarray(np.dstack([smooth_image(16, 16), np.full((16, 16), 128, np.uint8)])).save(src / "alpha.webp",
                                                                                                 lossless=True)
    Image.fromarray(np.arange(256, dtype=np.uint16).reshape(16, 16) * 257).save(src / "deep.png")  # 16-bit: a note
    image.save(src / "scan.data", format="PNG")  # no image extension, but Pillow knows the content
    (src / "notes.txt").write_text("not an image")
    (src / "README").write_text("no extension")
    (src / "earlier.rnc").write_bytes(encode(smooth_image(16, 16), iterations=1, model=tiny_model).data)  # an output
    cmd = [sys.executable, "-m", "rnncodec.cli", "compress", str(src), "--iterations", "1",
           "--model", str(model_dir / "tiny.safetensors")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "photos.rnc"  # the default: the folder's name plus .rnc, beside it
    assert sorted(p.name for p in out.iterdir()) == ["Hopper.TIF.rnc", "alpha.webp.rnc", "deep.png.rnc", "hopper.bmp.rnc",
                                                     "hopper.gif.rnc", "hopper.jpg.rnc", "hopper.png.rnc", "scan.data.rnc"]
    assert decode((out / "alpha.webp.rnc").read_bytes()).alpha.min() == 128
    deep = f"rnncodec: note: {src / 'deep.png'}: I;16 image converted to 8 bits per channel"  # from a worker process
    assert r.stderr.splitlines() == [deep, "rnncodec: note: skipped 3 file(s) that are not images (-v lists them)"]
    r = subprocess.run([*cmd, "-o", str(tmp_path / "again"), "-v", "-q"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [f"rnncodec: skipped (not an image file): {src / name}"
                                     for name in ("README", "earlier.rnc", "notes.txt")]
