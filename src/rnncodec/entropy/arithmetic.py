"""Coder 1: range coding (constriction) of each bit with the context model's P(bit = 1).

Decoding is only correct if the decoder computes exactly the probabilities the encoder used, so
the context model runs under fixed rules (context_model.deterministic) and its outputs are
snapped to a grid of k/2^16 before the coder sees them. That is not enough across machines: other
float kernels (instruction sets, libraries) move a probability across a grid step now and then,
so coder 1 files are not portable, and coder 2 (integer.py) replaces it. A mismatch shows up as a
chunk failing to decode or its bits CRC failing, reported as FormatError with that note.

The range coding itself (RowSession, encode_bits, BitDecoder) serves coder 2 too, and needs no
torch: the float model (and torch) loads only when a coder 1 model is built.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import constriction
import numpy as np

from ..errors import FormatError
from ..stored import StoredWeights
from .base import CoderSpec, register_coder
from .context import RowModel, TileContext

if TYPE_CHECKING:
    from torch import Tensor

CODER_ID = 1
KIND = "entropy"  # coder 1's weights: the float context model
PROB_BITS = 16  # probabilities are k / 2^16 with 1 ≤ k < 2^16
_BERNOULLI = constriction.stream.model.Bernoulli(perfect=False)


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


# Past its data the range decoder reads zero words, and so invents bits without end. The encoder's
# 64-bit range starts full, shrinks by each coded bit's probability, and gives out a 32-bit word
# each time it falls below 2^32: n words hold at most about 32·n + 96 bits of information (−log2
# of the decoded bits' probabilities), and a segment whose bits carry more ran out of data. The
# slack covers that constant, the zero words constriction drops from a stream's end, and log2's
# rounding on any machine, so no valid segment is refused.
_SLACK_BITS = 256.0


class BitDecoder:
    """Decodes what encode_bits wrote, a slice at a time, as the probabilities become known; a
    segment too short for the bits asked of it is a FormatError at the slice that shows it."""

    def __init__(self, data: bytes) -> None:
        if len(data) % 4:
            raise FormatError("corrupt chunk: arithmetic-coded segment is not a whole number of words")
        self._dec = constriction.stream.queue.RangeDecoder(np.frombuffer(data, "<u4").astype(np.uint32))
        self._room = 8.0 * len(data) + _SLACK_BITS  # bits of information the data can still hold

    def decode(self, probs: np.ndarray) -> np.ndarray:
        try:
            bits = self._dec.decode(_BERNOULLI, probs).astype(np.uint8)
        except (AssertionError, ValueError, RuntimeError):
            raise FormatError("corrupt chunk: invalid arithmetic-coded data") from None
        self._room += np.log2(np.where(bits, probs, 1.0 - probs)).sum()
        if self._room < 0:
            raise FormatError("corrupt chunk: a tile segment ends before its bits")
        return bits

    def finish(self) -> None:
        if not self._dec.maybe_exhausted():
            raise FormatError("corrupt chunk: data left after the last arithmetic-coded bit")


class RowSession:
    """Range-codes one tile's iterations with the probabilities a TileContext computes row by row."""

    def __init__(self, ctx: TileContext) -> None:
        self.ctx = ctx

    def encode(self, bits: np.ndarray, active: np.ndarray | None = None) -> bytes:
        coded, probs = [], []

        def row(y: int, p: np.ndarray) -> np.ndarray:
            row_bits = bits[:, y] if active is None else bits[:, y, active[y]]
            coded.append(row_bits.reshape(-1))
            probs.append(p.reshape(-1))
            return row_bits

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
            return self.ctx.iteration(lambda y, p: p, active)  # the context still steps, in step with the encoder's
        dec = BitDecoder(data)
        bits = self.ctx.iteration(lambda y, p: dec.decode(p.reshape(-1)).reshape(p.shape), active)
        dec.finish()
        return bits


class ContextCoder:
    """A payload coder that range-codes each bit with a context model's P(1): coders 1 and 2."""

    def __init__(self, coder_id: int, model: RowModel, model_id: bytes) -> None:
        self.coder_id, self.model, self.model_id = coder_id, model, model_id

    def session(self, shape: tuple[int, int, int]) -> RowSession:
        return RowSession(TileContext(self.model, shape))


def context_coder_spec(coder_id: int, kind: str, build: Callable[[StoredWeights], RowModel],
                       failure_note: str = "") -> CoderSpec:
    """A context model coder: `build` makes its model from stored weights of `kind`."""

    def make(stored: StoredWeights) -> ContextCoder:
        return ContextCoder(coder_id, build(stored), stored.model_id)

    return CoderSpec(kind, make, failure_note)


def _float_model(stored: StoredWeights) -> RowModel:
    """Coder 1's model; torch loads here, for a coder 1 file or when coder 1 is asked for."""
    from .context_model import build_context_model

    return build_context_model(stored)


register_coder(CODER_ID, context_coder_spec(
    CODER_ID, KIND, _float_model,
    "the file was written by coder 1, whose float context model is not portable: "
    "it may decode only on the kind of machine that wrote it"))
