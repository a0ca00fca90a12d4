"""The range coder: each bit coded with its P(bit = 1) by constriction's range coder.

Probabilities sit on a grid of k / 2^16 with 1 ≤ k < 2^16, which float64 holds exactly, so that
encoder and decoder hand constriction the very same numbers (context.TileContext snaps a context
model's probabilities to it). A segment is the coder's 32-bit words, little-endian.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import constriction
import numpy as np

from ..errors import FormatError

if TYPE_CHECKING:
    from torch import Tensor

PROB_BITS = 16  # probabilities are k / 2^16 with 1 ≤ k < 2^16
_BERNOULLI = constriction.stream.model.Bernoulli(perfect=False)


def quantise(p: Tensor | np.ndarray) -> np.ndarray:
    """Probabilities snapped to the k/2^16 grid, never 0 or 1, as float64 (exact)."""
    scale = float(1 << PROB_BITS)
    k = np.rint(np.asarray(p, dtype=np.float64) * scale)
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
