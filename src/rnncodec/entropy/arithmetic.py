"""Coder 1: range coding (constriction) of each bit with the context model's P(bit = 1).

Decoding is only correct if the decoder computes exactly the probabilities the encoder used, so
the context model runs under fixed rules (`deterministic`) and its outputs are snapped to a grid
of k/2^16 before the coder sees them. That is not enough across machines: other float kernels
(instruction sets, libraries) move a probability across a grid step now and then, so coder 1
files are not portable, and coder 2 (integer.py) replaces it. A mismatch shows up as a chunk
failing to decode or its bits CRC failing, reported as FormatError with that note.

The range coding itself (RowSession, encode_bits, BitDecoder) serves coder 2 too.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import constriction
import numpy as np
import torch
from torch import Tensor

from ..errors import FormatError
from ..stored import StoredWeights
from .base import CoderSpec, register_coder
from .context_model import KIND, RowModel, TileContext, build_context_model

CODER_ID = 1
PROB_BITS = 16  # probabilities are k / 2^16 with 1 ≤ k < 2^16
_BERNOULLI = constriction.stream.model.Bernoulli(perfect=False)


@contextmanager
def deterministic() -> Iterator[None]:
    """One thread, no autograd, no autocast: the same float32 kernels whatever the caller's thread
    count or mixed precision (a bf16 autocast would round coder 2's exact integer products)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode(), torch.autocast("cpu", enabled=False):
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


class RowSession:
    """Range-codes one tile's iterations with the probabilities a TileContext computes row by row;
    `to_probs` turns a row's model output into the coder's exact float64 probabilities."""

    def __init__(self, ctx: TileContext, to_probs: Callable[[Tensor], np.ndarray]) -> None:
        self.ctx, self.to_probs = ctx, to_probs

    def encode(self, bits: np.ndarray, active: np.ndarray | None = None) -> bytes:
        coded, probs = [], []

        def row(y: int, p: Tensor) -> np.ndarray:
            row_bits = bits[:, y] if active is None else bits[:, y, active[y]]
            coded.append(row_bits.reshape(-1))
            probs.append(self.to_probs(p))
            return row_bits

        with deterministic():
            self.ctx.iteration(row, active)
        if not coded:  # every position stopped: nothing to code
            return b""
        return encode_bits(np.concatenate(coded), np.concatenate(probs))

    def undo(self) -> None:
        self.ctx.undo()

    def decode(self, data: bytes, active: np.ndarray | None = None) -> np.ndarray:
        if active is not None and not active.any():
            if data:
                raise FormatError("corrupt chunk: data for a tile whose blocks have all stopped")
            with deterministic():  # the context still steps, in step with the encoder's
                return self.ctx.iteration(lambda y, p: p, active)
        dec = BitDecoder(data)
        with deterministic():
            bits = self.ctx.iteration(lambda y, p: dec.decode(self.to_probs(p)).reshape(p.shape), active)
        dec.finish()
        return bits


class ContextCoder:
    """A payload coder that range-codes each bit with a context model's P(1): coders 1 and 2."""

    def __init__(self, coder_id: int, model: RowModel, model_id: bytes, to_probs: Callable[[Tensor], np.ndarray]) -> None:
        self.coder_id, self.model, self.model_id, self.to_probs = coder_id, model, model_id, to_probs

    def session(self, shape: tuple[int, int, int]) -> RowSession:
        return RowSession(TileContext(self.model, shape), self.to_probs)


def context_coder_spec(coder_id: int, kind: str, build: Callable[[StoredWeights], RowModel],
                       to_probs: Callable[[Tensor], np.ndarray], failure_note: str = "") -> CoderSpec:
    """A context model coder: `build` makes its model from stored weights of `kind`, `to_probs`
    turns the model's row outputs into the range coder's probabilities."""

    def make(stored: StoredWeights) -> ContextCoder:
        return ContextCoder(coder_id, build(stored), stored.model_id, to_probs)

    return CoderSpec(kind, make, failure_note)


register_coder(CODER_ID, context_coder_spec(
    CODER_ID, KIND, build_context_model, quantise,
    "the file was written by coder 1, whose float context model is not portable: "
    "it may decode only on the kind of machine that wrote it"))
