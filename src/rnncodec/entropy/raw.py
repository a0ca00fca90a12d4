"""Coder 0: the bits packed eight to a byte, no entropy coding."""
from __future__ import annotations

import numpy as np

from ..errors import FormatError
from .base import NO_MODEL, CoderSpec, register_coder


class _RawSession:
    def __init__(self, shape: tuple[int, int, int]) -> None:
        self.shape = shape

    def encode(self, bits: np.ndarray, active: np.ndarray | None = None) -> bytes:
        return np.packbits(bits if active is None else bits[:, active]).tobytes()

    def decode(self, data: bytes, active: np.ndarray | None = None) -> np.ndarray:
        coded = (self.shape[0], *self.shape[1:]) if active is None else (self.shape[0], int(active.sum()))
        size = int(np.prod(coded))
        if len(data) != (size + 7) // 8:
            raise FormatError(f"corrupt chunk: raw segment of {len(data)} bytes, expected {(size + 7) // 8}")
        bits = np.unpackbits(np.frombuffer(data, np.uint8), count=size).reshape(coded)
        if active is None:
            return bits
        out = np.zeros(self.shape, np.uint8)
        out[:, active] = bits
        return out


class RawCoder:
    coder_id = 0
    model_id = NO_MODEL

    def session(self, shape: tuple[int, int, int]) -> _RawSession:
        return _RawSession(shape)


register_coder(RawCoder.coder_id, CoderSpec(None, RawCoder))
