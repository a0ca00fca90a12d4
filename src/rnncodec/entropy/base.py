"""The coder interface, and the registry that says how a header's coder id becomes a coder."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import FormatError

NO_MODEL = bytes(8)  # entropy model id of coders that have no model


class CoderSession(Protocol):
    """Codes one tile, iteration after iteration; bits are C×h×w uint8 arrays of 0/1.

    `active` (h×w bool, None for all) names the positions that carry bits this iteration
    (spatially adaptive bit rates): only theirs are coded, and the others decode as 0.
    `copy.copy(session)` goes on from where the session is, apart from it: an encoder that
    codes an image again resumes from a copy it kept."""

    def encode(self, bits: np.ndarray, active: np.ndarray | None = None) -> bytes: ...

    def decode(self, data: bytes, active: np.ndarray | None = None) -> np.ndarray: ...


class BitCoder(Protocol):
    coder_id: int
    model_id: bytes

    def session(self, shape: tuple[int, int, int]) -> CoderSession: ...


@dataclass(frozen=True)
class CoderSpec:
    """How to build a coder: `build(stored)` from the stored weights of `kind` (its context model),
    or, for a coder without a model (`kind` None), `build()`, and its files name NO_MODEL.

    Finding the weights is zoo.py's business: this package never looks for files."""

    kind: str | None
    build: Callable[..., BitCoder]
    failure_note: str = ""  # what else than corruption a chunk of this coder that fails to decode may mean


_REGISTRY: dict[int, CoderSpec] = {}


def register_coder(coder_id: int, spec: CoderSpec) -> None:
    _REGISTRY[coder_id] = spec


def coder_spec(coder_id: int) -> CoderSpec:
    if coder_id not in _REGISTRY:
        raise FormatError(f"unknown payload coder id {coder_id}")
    return _REGISTRY[coder_id]


def explain_failure(coder_id: int, error: FormatError) -> FormatError:
    """A chunk's decoding or CRC error, with the coder's note if it has one (still one line)."""
    note = _REGISTRY[coder_id].failure_note if coder_id in _REGISTRY else ""
    return FormatError(f"{error}; {note}") if note else error
