"""The coder interface and the registry that maps a header's coder id to a coder."""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from ..errors import FormatError

NO_MODEL = bytes(8)  # entropy model id of coders that have no model


class CoderSession(Protocol):
    """Codes one tile, iteration after iteration; bits are C×h×w uint8 arrays of 0/1."""

    def encode(self, bits: np.ndarray) -> bytes: ...

    def decode(self, data: bytes) -> np.ndarray: ...


class BitCoder(Protocol):
    coder_id: int
    model_id: bytes

    def session(self, shape: tuple[int, int, int]) -> CoderSession: ...


_REGISTRY: dict[int, Callable[[bytes], BitCoder]] = {}


def register_coder(coder_id: int, factory: Callable[[bytes], BitCoder]) -> None:
    """Register a factory that builds the coder for a header's entropy model id."""
    _REGISTRY[coder_id] = factory


def get_coder(coder_id: int, model_id: bytes) -> BitCoder:
    if coder_id not in _REGISTRY:
        raise FormatError(f"unknown payload coder id {coder_id}")
    return _REGISTRY[coder_id](model_id)
