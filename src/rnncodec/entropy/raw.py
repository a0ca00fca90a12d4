"""Coder 0: the bits packed eight to a byte, no entropy coding."""
from __future__ import annotations

import numpy as np

from ..errors import FormatError
from .base import NO_MODEL, CoderSpec, register_coder


class _RawSession:
    def __init__(self, shape: tuple[int, int, int]) -> None:
        self.shape = shape
        self.size = int(np.prod(shape))

    def encode(self, bits: np.ndarray) -> bytes:
        return np.packbits(bits.reshape(-1)).tobytes()

    def decode(self, data: bytes) -> np.ndarray:
        if len(data) != (self.size + 7) // 8:
            raise FormatError(f"corrupt chunk: raw segment of {len(data)} bytes, expected {(self.size + 7) // 8}")
        return np.unpackbits(np.frombuffer(data, np.uint8), count=self.size).reshape(self.shape)


class RawCoder:
    coder_id = 0
    model_id = NO_MODEL

    def session(self, shape: tuple[int, int, int]) -> _RawSession:
        return _RawSession(shape)


register_coder(RawCoder.coder_id, CoderSpec(None, RawCoder))
