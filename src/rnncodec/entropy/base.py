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
_FAILURE_NOTES: dict[int, str] = {}


def register_coder(coder_id: int, factory: Callable[[bytes], BitCoder], failure_note: str = "") -> None:
    """Register a factory that builds the coder for a header's entropy model id. `failure_note`
    tells users what else than corruption a chunk of this coder that fails to decode may mean."""
    _REGISTRY[coder_id] = factory
    _FAILURE_NOTES[coder_id] = failure_note


def get_coder(coder_id: int, model_id: bytes) -> BitCoder:
    if coder_id not in _REGISTRY:
        raise FormatError(f"unknown payload coder id {coder_id}")
    return _REGISTRY[coder_id](model_id)


def explain_failure(coder_id: int, error: FormatError) -> FormatError:
    """A chunk's decoding or CRC error, with the coder's note if it has one (still one line)."""
    note = _FAILURE_NOTES.get(coder_id, "")
    return FormatError(f"{error}; {note}") if note else error
