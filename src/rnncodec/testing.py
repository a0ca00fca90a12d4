"""Test helpers shared by the test suite and tools/fuzz.py: photo-like test images, tiny seeded
models (image, float and integer context), and stream mutations for fuzzing decoders (bit flips,
cuts, insertions, extreme header fields).

Needs hypothesis (the `dev` extra); the codec itself never imports this module.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import replace
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
# the same fields at their extremes and at the format's bounds, where an off-by-one would show
_EXTREMES = [(5, ">B", (0, 1, 2, 3, 255)), (6, ">B", (0, 1, 2, 4, 8, 15, 16, 255)),
             (24, ">I", (0, 1, 16, container.MAX_SIDE, container.MAX_SIDE + 1, 2**32 - 1)),
             (28, ">I", (0, 1, 16, container.MAX_SIDE, container.MAX_SIDE + 1, 2**32 - 1)),
             (32, ">H", (0, 16, 32, container.MAX_TILE_SPAN - 32, container.MAX_TILE_SPAN, 2**16 - 16, 2**16 - 1)),
             (34, ">H", (0, 16, 32, 2**16 - 16)),
             (36, ">B", (0, 1, container.MAX_ITERATIONS, container.MAX_ITERATIONS + 1, 255))]


def _chunks(data: bytes) -> tuple[int, list[tuple[int, int, bytes]]] | None:
    """Where a valid stream's chunks start, and each chunk as (its offset, its bits CRC, its payload)."""
    try:
        header, chunks = container.read(data)
    except (FormatError, struct.error):
        return None
    pos, out = len(header.to_bytes()), []
    for payload, crc in chunks:
        out.append((pos, crc, payload))
        pos += container.CHUNK_OVERHEAD + len(payload)
    return len(header.to_bytes()), out


def _segments(payload: bytes) -> list[bytes]:
    """A chunk's tile segments (the tile count is the first that parses the whole payload)."""
    for count in range(1, 257):
        try:
            return container.split_segments(payload, count)
        except FormatError:
            pass
    return []


def _restructure(draw, data: bytes) -> bytes:
    """A mutation that keeps the container's framing readable but lies inside it: segment lengths
    shuffled, segments emptied or cut, chunks swapped, dropped or given extreme lengths."""
    parsed = _chunks(data)
    if parsed is None or not parsed[1]:
        return data
    start, chunks = parsed
    head, frames = data[:start], [(crc, payload) for _, crc, payload in chunks]
    t = draw(st.integers(0, len(frames) - 1))
    kind = draw(st.sampled_from(["segments", "empty", "swap", "length", "drop"]))
    if kind in ("segments", "empty"):
        crc, payload = frames[t]
        segments = _segments(payload)
        if not segments:
            return data
        if kind == "segments":  # the same bytes, cut at other places
            lengths = draw(st.permutations([len(seg) for seg in segments]))
            joined, segments, pos = b"".join(segments), [], 0
            for n in lengths:
                segments.append(joined[pos : pos + n])
                pos += n
        else:  # a segment that ends early: the range decoder runs out of data
            i = draw(st.integers(0, len(segments) - 1))
            segments[i] = segments[i][: draw(st.integers(0, max(0, len(segments[i]) - 1)))]
        frames[t] = (crc, container.join_segments(segments))
    elif kind == "swap":
        u = draw(st.integers(0, len(frames) - 1))
        frames[t], frames[u] = frames[u], frames[t]
    elif kind == "drop":
        del frames[t]
    else:  # a chunk's length field at an extreme: the rest of the stream is read as its payload
        crc, payload = frames[t]
        n = draw(st.sampled_from([0, 1, len(payload) - 1, len(payload) + 1, 2**31, 2**32 - 1]))
        framed = b"".join(container._CHUNK.pack(len(p), c) + p for c, p in frames)
        offset = sum(container.CHUNK_OVERHEAD + len(p) for _, p in frames[:t])
        return head + framed[:offset] + struct.pack(">I", max(n, 0)) + framed[offset + 4 :]
    return head + b"".join(container._CHUNK.pack(len(p), c) + p for c, p in frames)


def _swap_sections(draw, data: bytes) -> bytes:
    """Two optional header sections' contents exchanged (an alpha plane read as block counts), or
    one emptied, with the header CRC fixed so the lie gets past it."""
    parsed = _chunks(data)
    if parsed is None:
        return data
    header = container.read(data)[0]
    names = [name for _, name in container._SECTIONS if getattr(header, name) is not None]
    if not names:
        return data
    a, b = draw(st.sampled_from(names)), draw(st.sampled_from(names))
    values = {a: getattr(header, b), b: getattr(header, a)} if a != b else {a: b""}
    return replace(header, **values).to_bytes() + data[parsed[0] :]


@st.composite
def mutations(draw, data: bytes) -> bytes:
    """One random mutation of a valid stream: bytes flipped, cut, inserted or spliced, header
    fields set to any value or to their extremes (the header CRC fixed), or the structure lied
    about (segments, chunks and sections: `_restructure`, `_swap_sections`)."""
    kind = draw(st.sampled_from(["flip", "cut", "insert", "field", "splice", "extreme", "structure", "sections"]))
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
    if kind == "structure":
        return _restructure(draw, data)
    if kind == "sections":
        return _swap_sections(draw, data)
    if kind == "extreme":
        out = data  # several at once (a tile at its bound in a huge image); the flags last, as _reheader reads them
        fields = draw(st.lists(st.sampled_from(_EXTREMES), min_size=1, max_size=3, unique_by=lambda f: f[0]))
        for offset, fmt, values in sorted(fields, key=lambda f: f[0] == 6):
            out = _reheader(out, offset, fmt, draw(st.sampled_from(values)))
        return out
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
