"""Coder 1: range coding (constriction) of each bit with the context model's P(bit = 1).

Decoding is only correct if the decoder computes exactly the probabilities the encoder used, so
the context model runs under fixed rules (`deterministic`) and its outputs are snapped to a grid
of k/2^16 before the coder sees them. A mismatch that still happens shows up as the chunk's
bits CRC failing, reported as FormatError.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import constriction
import numpy as np
import torch
from safetensors import safe_open
from torch import Tensor

from ..errors import FormatError, ModelError
from ..weights import PACKAGE_WEIGHTS, find_by_id, load_weights, weight_files
from .base import register_coder
from .context_model import KIND, ContextModel, TileContext, build_context_model

CODER_ID = 1
PROB_BITS = 16  # probabilities are k / 2^16 with 1 ≤ k < 2^16
DEFAULT_ENTROPY_WEIGHTS = PACKAGE_WEIGHTS / "default-entropy.safetensors"
_BERNOULLI = constriction.stream.model.Bernoulli(perfect=False)


@contextmanager
def deterministic() -> Iterator[None]:
    """One thread, no autograd: the same float32 kernels whatever the caller's thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            yield
    finally:
        torch.set_num_threads(threads)


def quantise(p: Tensor | np.ndarray) -> np.ndarray:
    """Probabilities snapped to the k/2^16 grid, never 0 or 1, flattened, as float64 (exact)."""
    scale = float(1 << PROB_BITS)
    k = np.rint(np.asarray(p, dtype=np.float64).reshape(-1) * scale)
    return np.clip(k, 1, scale - 1) / scale


def encode_bits(bits: np.ndarray, probs: np.ndarray) -> bytes:
    """Range-code 0/1 `bits` with quantised P(1) `probs` (same length) into little-endian words."""
    enc = constriction.stream.queue.RangeEncoder()
    enc.encode(bits.reshape(-1).astype(np.int32), _BERNOULLI, probs)
    return enc.get_compressed().astype("<u4").tobytes()


class BitDecoder:
    """Decodes what encode_bits wrote, a slice at a time, as the probabilities become known."""

    def __init__(self, data: bytes) -> None:
        if len(data) % 4:
            raise FormatError("corrupt chunk: arithmetic-coded segment is not a whole number of words")
        self._dec = constriction.stream.queue.RangeDecoder(np.frombuffer(data, "<u4").astype(np.uint32))

    def decode(self, probs: np.ndarray) -> np.ndarray:
        try:
            return self._dec.decode(_BERNOULLI, probs).astype(np.uint8)
        except (AssertionError, ValueError, RuntimeError):
            raise FormatError("corrupt chunk: invalid arithmetic-coded data") from None

    def finish(self) -> None:
        if not self._dec.maybe_exhausted():
            raise FormatError("corrupt chunk: data left after the last arithmetic-coded bit")


class _Session:
    def __init__(self, model: ContextModel, shape: tuple[int, int, int]) -> None:
        if shape[0] != model.cfg.bits:
            raise ModelError(f"the entropy model codes {model.cfg.bits} bits per position, the image model {shape[0]}")
        self.ctx = TileContext(model, shape)

    def encode(self, bits: np.ndarray) -> bytes:
        probs = []

        def row(y: int, p: Tensor) -> np.ndarray:
            probs.append(quantise(p))
            return bits[:, y]

        with deterministic():
            self.ctx.iteration(row)
        return encode_bits(bits.transpose(1, 0, 2), np.concatenate(probs))

    def decode(self, data: bytes) -> np.ndarray:
        dec = BitDecoder(data)
        with deterministic():
            bits = self.ctx.iteration(lambda y, p: dec.decode(quantise(p)).reshape(p.shape))
        dec.finish()
        return bits


class ArithmeticCoder:
    coder_id = CODER_ID

    def __init__(self, model: ContextModel, model_id: bytes) -> None:
        self.model, self.model_id = model, model_id

    def session(self, shape: tuple[int, int, int]) -> _Session:
        return _Session(self.model, shape)


@lru_cache(maxsize=4)
def arithmetic_coder(path: Path | None = None) -> ArithmeticCoder:
    """The coder with the context model in `path`, or the packaged one."""
    path = Path(path) if path is not None else DEFAULT_ENTROPY_WEIGHTS
    if not path.exists():
        raise ModelError(f"no entropy model weights at {path}")
    stored = load_weights(path)
    return ArithmeticCoder(build_context_model(stored), stored.model_id)


def entropy_weights_for(image_model_id: bytes) -> Path | None:
    """The first entropy weights ($RNNCODEC_MODEL_PATH, then the package) fitted to this image model.

    A context model fitted to another image model's codes can cost more than raw bits.
    """
    for f in weight_files():
        with safe_open(str(f), framework="pt") as sf:
            meta = sf.metadata() or {}
        if meta.get("kind") == KIND and meta.get("image_model") == image_model_id.hex():
            return f
    return None


@lru_cache(maxsize=4)
def _factory(model_id: bytes) -> ArithmeticCoder:
    return ArithmeticCoder(build_context_model(find_by_id(model_id, KIND)), model_id)


register_coder(CODER_ID, _factory)
