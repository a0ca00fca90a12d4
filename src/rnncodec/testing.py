"""Test helpers shared by the test suite and tools/fuzz.py: photo-like test images, tiny seeded
models (image, float and integer context), and stream mutations for fuzzing decoders (bit flips,
cuts, insertions, extreme header fields).

Needs hypothesis (the `dev` extra); the codec itself never imports this module.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from hypothesis import strategies as st

from rnncodec import container
from rnncodec.config import ContextConfig, preset
from rnncodec.errors import FormatError, ModelError
from rnncodec.models import RNNCodec
from rnncodec.models.context_model import ContextModel
from rnncodec.stored import save_weights

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


def save_tiny_image_model(path: Path, **overrides: float) -> bytes:
    """The tiny seeded image model the tests (and tests/vectors) use, or a variant of it (preset
    overrides, e.g. tail_width); returns its id."""
    torch.manual_seed(0)
    net = RNNCodec(preset("tiny", **{"iterations": 6, **overrides}))
    return save_weights(path, "image", net.cfg.to_json(), net.state_dict())


def tiny_context_model(seed: int, **config: int) -> ContextModel:
    """A seeded float context model with weights drawn wide, so that its probabilities are far
    from 1/2, as a trained model's are."""
    torch.manual_seed(seed)
    net = ContextModel(ContextConfig(**config))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.5)
    return net.eval()


def save_tiny_integer_model(float_net: ContextModel, path: Path, **metadata: str) -> bytes:
    """Coder 2's integer model of a float context model (post-training quantisation, as
    quantise-entropy starts), with small tables to keep the file small; returns its id."""
    from rnncodec.entropy.integer import IntegerConfig
    from rnncodec.train.quantise import FakeQuantModel, relu_scales  # a fitting tool: only when asked

    bits = (torch.rand(4, 3, float_net.cfg.bits, 5, 6, generator=torch.Generator().manual_seed(0)) < 0.5).float() * 2 - 1
    cfg = IntegerConfig(float_net.cfg, lut_frac=4, lut_max=96)
    return FakeQuantModel(float_net, relu_scales(float_net, bits, 1.0), cfg).export(path, **metadata)
