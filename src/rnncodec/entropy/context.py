"""What coders 1 and 2 share above the range coder: the context models' architecture
(ContextConfig) and TileContext, the row-by-row driver that encoder and decoder both run.

No torch here: coder 2's integer model runs in numpy (integer.py), and coder 1's float model
(context_model.py) converts at its row methods.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from ..errors import ModelError


@dataclass(frozen=True)
class ContextConfig:
    bits: int = 32  # bits per position per iteration: the image model's binarizer depth
    iterations: int = 16  # iterations with their own learned bias; later ones reuse the last
    masked: int = 32  # channels of the masked conv over the rows above
    rows_above: int = 3  # rows the masked conv sees
    kernel_w: int = 7  # its width
    state: int = 32  # channels of the cross-iteration conv-LSTM
    row: int = 32  # channels of the row LSTM
    head: int = 64  # channels of the 1×1 output layers

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ContextConfig:
        return cls(**json.loads(text))


RowCoder = Callable[[int, np.ndarray], np.ndarray]  # (row index, C×n probabilities) -> those n positions' C×n bits


class RowModel(Protocol):
    """A context model as TileContext steps it: context_model.ContextModel (coder 1) or
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
        """Row y's C×w P(1), float64 on the range coder's grid k / 2^16, from the C×rows_above×w
        bits above it, and the row state for the next row."""
        ...


class TileContext:
    """A model's state while one tile's iterations are coded in order, row by row.

    Encoder and decoder run this same code with the same shapes, so they compute the same
    probabilities (exactly for the integer model; for the float one, under the determinism
    rules of coder 1).
    """

    def __init__(self, model: RowModel, shape: tuple[int, int, int]) -> None:
        if shape[0] != model.arch.bits:
            raise ModelError(f"the entropy model codes {model.arch.bits} bits per position, the image model {shape[0]}")
        self.model, self.shape = model, shape
        self.prev = np.zeros(shape, np.float32)
        self.state: Any = None
        self.t = 0
        self.before: tuple[np.ndarray, Any, int] | None = None  # (prev, state, t) before the last iteration

    def iteration(self, code_row: RowCoder, active: np.ndarray | None = None) -> np.ndarray:
        """Code the next iteration; `code_row` turns each row's probabilities into its bits. With
        `active` (h×w bool), only active positions are coded: the others are 0 in the output and
        unknown (0, like the rows not yet coded) to the model."""
        m, (c, h, w), k = self.model, self.shape, self.model.arch.rows_above
        self.before = (self.prev, self.state, self.t)  # the models' states are new objects each iteration
        known = np.zeros((c, h + k, w), np.float32)  # k rows of zeros, then the bits as they are coded
        out = np.zeros(self.shape, dtype=np.uint8)
        with m.running():
            it, self.state = m.begin_iteration(self.prev, self.state, self.t)
            rows = None
            for y in range(h):
                p, rows = m.row_probabilities(known[:, y : y + k], it, y, rows)
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

    def undo(self) -> None:
        """Back to before the last iteration (`CoderSession.undo`)."""
        if self.before is None:
            raise RuntimeError("no iteration to undo")
        (self.prev, self.state, self.t), self.before = self.before, None
