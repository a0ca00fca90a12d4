"""The container refuses every malformed stream with FormatError and a clear message."""
import struct
import zlib
from dataclasses import replace

import numpy as np
import pytest
from conftest import smooth_image

from rnncodec import container
from rnncodec.codec import decode, encode
from rnncodec.errors import FormatError


@pytest.fixture
def stream(tiny_model) -> bytes:
    return encode(smooth_image(32, 48), iterations=3, model=tiny_model).data


def test_header_round_trip():
    h = container.Header(0, b"abcdefgh", bytes(8), 10, 20, 512, 16, 4, b"icc-bytes", b"alpha-bytes", precision="bf16")
    parsed, chunks = container.read(container.write(h, [(b"xy", 7)]))
    assert parsed == h and chunks == [(b"xy", 7)]


def test_a_display_size_round_trips_and_is_checked():
    h = container.Header(0, b"abcdefgh", bytes(8), 10, 20, 512, 16, 4, display=container.pack_display(19, 80))
    parsed, _ = container.read(container.write(h, [(b"xy", 7)]))
    assert parsed == h and parsed.display_size == (19, 80) and replace(h, display=None).display_size == (10, 20)
    for display, message in ((container.pack_display(9, 20), "invalid display size 9×20 for an image coded at 10×20"),
                             (container.pack_display(10, 161), "invalid display size"),  # more than 8× the coded side
                             (b"\x00" * 7, "corrupt display size")):
        with pytest.raises(FormatError, match=message):
            container.read(container.write(replace(h, display=display), [(b"xy", 7)]))


@pytest.mark.parametrize("byte,precision", [(0, None), (1, "fp32"), (2, "bf16"), (9, None)])
def test_the_encoders_precision_is_a_byte_older_readers_skip(stream, byte, precision):
    """The byte older files left 0: a value this reader does not know reads as not recorded."""
    data = bytearray(stream)
    data[7] = byte
    pos = len(container.read(stream)[0].to_bytes()) - 4  # the header CRC's place
    data[pos: pos + 4] = struct.pack(">I", zlib.crc32(bytes(data[:pos])))
    assert container.read(bytes(data))[0].precision == precision


@pytest.fixture
def alpha_stream(tiny_model) -> bytes:
    rgba = np.dstack([smooth_image(32, 48), np.tile(np.arange(48, dtype=np.uint8) * 5, (32, 1))])
    return encode(rgba, iterations=3, model=tiny_model).data


def _with_alpha(stream: bytes, alpha: bytes) -> bytes:
    """The stream with its alpha section replaced and the header CRC made right again."""
    header, chunks = container.read(stream)
    return container.write(replace(header, alpha=alpha), chunks)


def test_alpha_plane_is_lossless_and_in_every_prefix(alpha_stream):
    header, chunks = container.read(alpha_stream)
    ramp = np.tile(np.arange(48, dtype=np.uint8) * 5, (32, 1))
    assert np.array_equal(container.alpha_plane(header), ramp)
    assert len(header.alpha) < 100  # a ramp filters to constants: deflate codes it in a few bytes
    assert container.prefix_sizes(header, chunks)[0] == len(container.truncate(header, chunks, 1))
    assert np.array_equal(decode(container.truncate(header, chunks, 1)).alpha, ramp)


def test_corrupt_alpha_section(alpha_stream):
    n = len(container.read(alpha_stream)[0].alpha)
    bad = bytearray(alpha_stream)
    bad[container._FIXED.size + 4 + n // 2] ^= 1  # inside the alpha data: the header CRC catches it
    with pytest.raises(FormatError, match="header CRC"):
        decode(bytes(bad))
    with pytest.raises(FormatError, match="truncated header"):
        decode(alpha_stream[: container._FIXED.size + 4 + n // 2])
    plane = np.zeros((32, 48), np.uint8)
    for alpha in (b"not deflate", zlib.compress(plane.tobytes())[:-1], zlib.compress(plane[:-1].tobytes()),
                  zlib.compress(plane.tobytes()) + b"!", zlib.compress(bytes(1 << 26))):  # … a zip bomb stops at H×W
        with pytest.raises(FormatError, match="corrupt alpha plane"):
            decode(_with_alpha(alpha_stream, alpha))


def test_bad_magic(stream):
    with pytest.raises(FormatError, match="bad magic"):
        decode(b"XXXX" + stream[4:])


def test_header_crc(stream):
    bad = bytearray(stream)
    bad[20] ^= 1
    with pytest.raises(FormatError, match="header CRC"):
        decode(bytes(bad))


def test_chunk_crc(stream):
    _, chunks = container.read(stream)
    bad = bytearray(stream)
    bad[len(stream) - len(chunks[-1][0]) - 1] ^= 0xFF  # last byte of the last chunk's CRC field
    with pytest.raises(FormatError, match="CRC mismatch"):
        decode(bytes(bad))


def test_swapped_chunks(stream):
    header, chunks = container.read(stream)
    with pytest.raises(FormatError, match="CRC mismatch"):
        decode(container.write(header, [chunks[1], chunks[0], chunks[2]]))


@pytest.mark.parametrize("cut", [-1, -5, -20])
def test_cut_inside_a_chunk_is_an_error_when_strict(stream, cut):
    with pytest.raises(FormatError, match="the stream ends inside iteration 3"):
        decode(stream[:cut], strict=True)


def test_cut_inside_the_header(stream):
    for n in (3, 10, 40):
        with pytest.raises(FormatError):
            decode(stream[:n])


def test_header_only_holds_no_iterations(stream):
    header, _ = container.read(stream)
    with pytest.raises(FormatError, match="no iterations"):
        decode(header.to_bytes())


def test_trailing_bytes(stream):
    with pytest.raises(FormatError, match="trailing data"):
        decode(stream + b"\0" * 9)


@pytest.mark.parametrize("offset,value,message", [(4, 9, "version 9"), (6, 16, "unknown header flags 0x10"),
                                                  (6, 4, "block iteration counts and format version disagree")])
def test_a_newer_format_is_refused(stream, offset, value, message):
    bad = bytearray(stream[: container._FIXED.size])
    bad[offset] = value
    bad += struct.pack(">I", zlib.crc32(bytes(bad)))
    with pytest.raises(FormatError, match=message):
        container.read(bytes(bad))


@pytest.mark.parametrize("field,value", [("width", 0), ("height", 1 << 30), ("iterations", 200), ("tile", 8)])
def test_extreme_header_fields_refused_before_allocation(field, value):
    fields = dict(coder_id=0, model_id=bytes(8), entropy_id=bytes(8), width=16, height=16, tile=512, overlap=16, iterations=2)
    fields[field] = value
    raw = container.Header(**fields).to_bytes()
    with pytest.raises(FormatError):
        container.read(raw)


def test_segments_round_trip_and_corruption():
    segs = [b"", b"a" * 200, b"xyz"]
    assert container.split_segments(container.join_segments(segs), 3) == segs
    with pytest.raises(FormatError):
        container.split_segments(container.join_segments(segs)[:-1], 3)
    with pytest.raises(FormatError):
        container.split_segments(container.join_segments(segs) + b"!", 3)
