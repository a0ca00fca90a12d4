"""Test helpers shared by the test suite and tools/fuzz.py: photo-like test images, and stream
mutations for fuzzing decoders (bit flips, cuts, insertions, extreme header fields).

Needs hypothesis (the `dev` extra); the codec itself never imports this module.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np
from hypothesis import strategies as st

from rnncodec import container
from rnncodec.errors import FormatError, ModelError

ALLOWED = (FormatError, ModelError)  # the only ways a decode may fail


def _reheader(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    """Overwrite a fixed header field and fix the header CRC, so the bad value gets past the CRC."""
    size = end = container._FIXED.size
    for flag, _ in container._SECTIONS:  # the optional sections (ICC profile, alpha) the stream holds
        if data[6] & flag:
            end += 4 + struct.unpack_from(">I", data, end)[0]
    head = bytearray(data[:size])
    struct.pack_into(fmt, head, offset, value)
    body = bytes(head) + data[size:end]
    return body + struct.pack(">I", zlib.crc32(body)) + data[end + 4 :]


# (offset, struct format, strategy) of each fixed header field worth pushing to extremes
_FIELDS = [(5, ">B", st.integers(0, 255)), (6, ">B", st.integers(0, 255)), (24, ">I", st.integers(0, 2**32 - 1)),
           (28, ">I", st.integers(0, 2**32 - 1)), (32, ">H", st.integers(0, 2**16 - 1)),
           (34, ">H", st.integers(0, 2**16 - 1)), (36, ">B", st.integers(0, 255))]


@st.composite
def mutations(draw, data: bytes) -> bytes:
    """One random mutation of a valid stream."""
    kind = draw(st.sampled_from(["flip", "cut", "insert", "field", "splice"]))
    buf = bytearray(data)
    if kind == "flip":
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(buf) - 1))
            buf[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(buf)
    if kind == "cut":
        return bytes(buf[: draw(st.integers(0, len(buf) - 1))])
    if kind == "insert":
        i = draw(st.integers(0, len(buf)))
        return bytes(buf[:i]) + draw(st.binary(min_size=1, max_size=16)) + bytes(buf[i:])
    if kind == "splice":
        i, j = sorted(draw(st.lists(st.integers(0, len(buf)), min_size=2, max_size=2)))
        return bytes(buf[:i]) + bytes(buf[j:])
    offset, fmt, values = draw(st.sampled_from(_FIELDS))
    return _reheader(data, offset, fmt, draw(values))


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A photo-like test image: smooth gradients plus a little noise, H×W×3 uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([128 + 100 * np.sin(x / 23 + c) * np.cos(y / 31 - c) for c in range(3)], axis=-1)
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
