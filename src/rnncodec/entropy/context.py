"""What coders 1 and 2 share: TileContext, the row-by-row driver of a context model that encoder
and decoder both run, and ContextCoder, which feeds the probabilities it computes to the range
coder (range_coder.py), snapped to its grid.

No torch here: coder 2's integer model runs in numpy (integer.py), and coder 1's float model
(models/context_model.py) converts at its row methods.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from copy import copy
from typing import Any, Protocol

import numpy as np

from ..config import ContextConfig
from ..errors import FormatError, ModelError
from ..stored import StoredWeights
from .base import CoderSpec
from .range_coder import BitDecoder, encode_bits, quantise

RowCoder = Callable[[int, np.ndarray], np.ndarray]  # (row index, C×n probabilities) -> those n positions' C×n bits


class RowModel(Protocol):
    """A context model as TileContext steps it: models.context_model.ContextModel (coder 1) or
    integer.IntegerRowModel (coder 2). Bits are float32 ±1, and 0 where not (yet) coded."""

    @property
    def arch(self) -> ContextConfig: ...

    def running(self) -> AbstractContextManager:
        """The rules an iteration's computations run under (threads, for instance)."""
        ...

    def begin_iteration(self, prev: np.ndarray, state: Any, t: int) -> tuple[Any, Any]:
        """From the previous iteration's C×h×w bits: iteration t's context for every row, and the
        state for the next iteration."""
        ...

    def row_probabilities(self, known: np.ndarray, it: Any, y: int, rows: Any) -> tuple[np.ndarray, Any]:
        """Row y's C×w P(1) from the C×rows_above×w bits above it (TileContext snaps them to the
        range coder's grid), and the row state for the next row."""
        ...


class TileContext:
    """A model's state while one tile's iterations are coded in order, row by row.

    Encoder and decoder run this same code with the same shapes, so they compute the same
    probabilities (exactly for the integer model; for the float one, under the determinism
    rules of coder 1). The range coder sees them on its grid (range_coder.quantise), whatever
    the model: the integer model's are there already, the float model's are snapped.
    """

    def __init__(self, model: RowModel, shape: tuple[int, int, int]) -> None:
        if shape[0] != model.arch.bits:
            raise ModelError(f"the entropy model codes {model.arch.bits} bits per position, the image model {shape[0]}")
        self.model, self.shape = model, shape
        self.prev = np.zeros(shape, np.float32)
        self.state: Any = None
        self.t = 0

    def iteration(self, code_row: RowCoder, active: np.ndarray | None = None) -> np.ndarray:
        """Code the next iteration; `code_row` turns each row's probabilities into its bits. With
        `active` (h×w bool), only active positions are coded: the others are 0 in the output and
        unknown (0, like the rows not yet coded) to the model."""
        m, (c, h, w), k = self.model, self.shape, self.model.arch.rows_above
        known = np.zeros((c, h + k, w), np.float32)  # k rows of zeros, then the bits as they are coded
        out = np.zeros(self.shape, dtype=np.uint8)
        with m.running():
            it, self.state = m.begin_iteration(self.prev, self.state, self.t)
            rows = None
            for y in range(h):
                p, rows = m.row_probabilities(known[:, y : y + k], it, y, rows)
                p = quantise(p)
                if active is None:
                    out[:, y] = code_row(y, p)
                    known[:, y + k] = out[:, y] * 2.0 - 1
                elif active[y].any():
                    cols = active[y]
                    out[:, y, cols] = code_row(y, p[:, cols])
                    known[:, y + k, cols] = out[:, y, cols] * 2.0 - 1
        self.prev = known[:, k:].copy()
        self.t += 1
        return out


class RowSession:
    """Range-codes one tile's iterations with the probabilities a TileContext computes row by row."""

    def __init__(self, ctx: TileContext) -> None:
        self.ctx = ctx

    def __copy__(self) -> RowSession:  # one that goes on from here on its own: the context's state is replaced, not changed
        return RowSession(copy(self.ctx))

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
