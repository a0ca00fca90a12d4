"""Progressive decoding: a stream cut anywhere decodes its complete iterations, and a stream read
as it arrives gives an image after each complete iteration, the same image a prefix file gives."""
import subprocess
import sys
import warnings

import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image, ImageFile

import rnncodec
from rnncodec import container
from rnncodec.codec import decode, decode_progressive, encode
from rnncodec.errors import FormatError, Note


@pytest.fixture(scope="module")
def stream() -> bytes:
    """Three iterations over 2×2 tiles, with adaptive block counts: every mechanism a chunk has."""
    return encode(smooth_image(64, 80, seed=9), quality=60, tile=48, overlap=16).data


def _prefixes(stream: bytes) -> list[bytes]:
    header, chunks = container.read(stream)
    return [container.truncate(header, chunks, k) for k in range(1, len(chunks) + 1)]


def test_a_cut_anywhere_decodes_its_complete_iterations_with_a_note(stream):
    prefixes = _prefixes(stream)
    assert len(prefixes) >= 2
    rng = np.random.default_rng(4)
    for k in range(1, len(prefixes)):  # cut inside iteration k + 1: its first and last byte, and one between
        start, end = len(prefixes[k - 1]), len(prefixes[k])
        expected = decode(prefixes[k - 1]).pixels
        for cut in sorted({start + 1, int(rng.integers(start + 1, end)), end - 1}):
            with pytest.warns(Note, match=f"ends inside iteration {k + 1}: the {k} complete iteration"):
                decoded = decode(stream[:cut])
            assert decoded.iterations == k and np.array_equal(decoded.pixels, expected)
            with pytest.raises(FormatError, match=f"ends inside iteration {k + 1}"):
                decode(stream[:cut], strict=True)


def test_a_cut_inside_the_header_or_the_first_iteration_is_still_an_error(stream):
    first = len(_prefixes(stream)[0])
    for cut in (3, 20, len(container.read(stream)[0].to_bytes()) - 1, first - 1):
        with pytest.raises(FormatError):
            decode(stream[:cut])


@pytest.mark.parametrize("piece", [1, 7, 4096])
def test_bytes_as_they_arrive_give_an_image_per_iteration(stream, piece):
    pieces = (stream[i : i + piece] for i in range(0, len(stream), piece))
    frames = list(decode_progressive(pieces))
    expected = [decode(p) for p in _prefixes(stream)]
    assert [f.iterations for f in frames] == [e.iterations for e in expected]
    assert all(np.array_equal(f.pixels, e.pixels) for f, e in zip(frames, expected))


def test_progressive_frames_come_before_the_stream_ends(stream):
    """Each frame is yielded as soon as its chunk is in: the reader has not read past it."""
    sizes, read = [len(p) for p in _prefixes(stream)], []

    def arriving():
        for i in range(0, len(stream), 5):
            read.append(min(i + 5, len(stream)))
            yield stream[i : i + 5]

    for k, _ in enumerate(decode_progressive(arriving()), 1):
        assert read[-1] < sizes[k - 1] + 5  # no more than one piece past the chunk's end
    assert k == len(sizes)


def test_a_cut_or_corrupt_stream_read_as_it_arrives(stream):
    header_size = len(container.read(stream)[0].to_bytes())
    cut = len(_prefixes(stream)[1]) + 3
    with pytest.warns(Note, match="the 2 complete iteration"):
        assert [f.iterations for f in decode_progressive(iter([stream[:cut]]))] == [1, 2]
    with pytest.raises(FormatError, match="ends inside iteration 3"):
        list(decode_progressive(stream[:cut], strict=True))
    bad = bytearray(stream)
    bad[header_size + 20] ^= 0x40  # inside the first chunk's payload
    with pytest.raises(FormatError):
        list(decode_progressive(bytes(bad)))
    with pytest.raises(FormatError):
        list(decode_progressive(stream[: header_size + 3]))


def test_the_api_yields_pil_images(stream):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a whole stream: no note
        images = list(rnncodec.decompress_progressive(stream))
    assert len(images) == len(_prefixes(stream)) and all(im.size == (80, 64) for im in images)


def test_the_cli_decodes_a_cut_file_unless_strict(tmp_path, stream):
    cut = tmp_path / "cut.rnc"
    cut.write_bytes(stream[: len(_prefixes(stream)[1]) + 3])
    run = [sys.executable, "-m", "rnncodec.cli", "decompress", cut]
    r = subprocess.run([*run, "-o", tmp_path / "a.png"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "note: the stream ends inside iteration 3: the 2 complete" in r.stderr, r.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), decode(_prefixes(stream)[1]).pixels)
    r = subprocess.run([*run, "-o", tmp_path / "b.png", "--strict"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 3 and r.stderr.count("\n") == 1 and not (tmp_path / "b.png").exists(), r.stderr


def test_pillow_opens_a_cut_file_where_it_opens_truncated_images(tmp_path, stream, monkeypatch):
    cut = tmp_path / "cut.rnc"
    cut.write_bytes(stream[: len(_prefixes(stream)[0]) + 3])
    with pytest.raises(FormatError):
        Image.open(cut)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.warns(Note):
        im = Image.open(cut)
    assert im.info["iterations"] == 1 and np.array_equal(np.asarray(im), decode(_prefixes(stream)[0]).pixels)
