"""The binary context model (Toderici et al. 2017, progressive entropy coding): P(bit = 1) for every bit of an iteration.

Two sources of context:
- this iteration's bits already coded, in row order: a whole row of positions is one step. A
  masked conv sees the rows above only, and a row LSTM (1×3 kernels) carries a state down the
  rows. All C bits of all positions in a row share one step, so decoding a tile takes h steps
  per iteration instead of h·w.
- the earlier iterations: a 1×1 conv-LSTM over the iteration axis, fed by a 3×3 conv of the
  previous iteration's bits; a 3×3 conv of its state is the context for the whole iteration.
Bits enter as ±1; a bit not yet known is 0 (the zero padding above the first row).

`forward` computes every probability in parallel for training; `TileContext` computes the same
function one row at a time, the way an encoder and a decoder must.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ModelError
from ..layers.cells import ConvLSTM, State
from ..stored import StoredWeights, build_module

KIND = "entropy"


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


class RowLSTM(ConvLSTM):
    """A conv-LSTM whose kernels span one row (1×3): one step reads and updates one row."""

    def __init__(self, in_ch: int, hidden: int) -> None:
        super().__init__(in_ch, hidden, k_in=(1, 3), k_hidden=(1, 3))


class ContextModel(nn.Module):
    def __init__(self, cfg: ContextConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.bits
        self.masked = nn.Conv2d(c, cfg.masked, (cfg.rows_above, cfg.kernel_w), padding=(0, cfg.kernel_w // 2))
        self.iter_in = nn.Conv2d(c, cfg.state, 3, padding=1)
        self.iter_lstm = ConvLSTM(cfg.state, cfg.state, k_in=1, k_hidden=1)
        self.iter_out = nn.Conv2d(cfg.state, cfg.state, 3, padding=1)
        self.row_lstm = RowLSTM(cfg.masked + cfg.state, cfg.row)
        self.head = nn.Sequential(nn.Conv2d(cfg.row + cfg.masked + cfg.state, cfg.head, 1), nn.ReLU(),
                                  nn.Conv2d(cfg.head, c, 1))
        self.iter_bias = nn.Parameter(torch.zeros(cfg.iterations, c))

    def iteration_context(self, prev_bits: Tensor, state: State | None) -> tuple[Tensor, State]:
        """Context for the next iteration from the previous one's bits (zeros before the first)."""
        h, state = self.iter_lstm(torch.tanh(self.iter_in(prev_bits)), state)
        return torch.tanh(self.iter_out(h)), state

    def bias(self, t: Tensor | int) -> Tensor:
        return self.iter_bias[torch.as_tensor(t).clamp(max=self.cfg.iterations - 1)]

    def _logits(self, above: Tensor, ctx: Tensor, rows: State | None, bias: Tensor) -> tuple[Tensor, State]:
        """One row step: features of the rows above and the iteration context -> logits."""
        r, rows = self.row_lstm(torch.cat((above, ctx), 1), rows)
        return self.head(torch.cat((r, above, ctx), 1)) + bias, rows

    def forward(self, bits: Tensor) -> Tensor:
        """Logits of P(bit = 1) for N×T×C×h×w bits (±1), all iterations at once (training)."""
        n, t_max, c, h, w = bits.shape
        prev = torch.cat((bits.new_zeros(n, 1, c, h, w), bits[:, :-1]), 1)
        state, ctxs = None, []
        for t in range(t_max):
            ctx, state = self.iteration_context(prev[:, t], state)
            ctxs.append(ctx)
        ctx = torch.stack(ctxs, 1).flatten(0, 1)
        x = F.pad(bits.flatten(0, 1), (0, 0, self.cfg.rows_above, 0))
        above = torch.tanh(self.masked(x))[:, :, :h]  # row y sees rows y−k … y−1
        bias = self.bias(torch.arange(t_max)).repeat(n, 1)[:, :, None, None]
        rows, out = None, []
        for y in range(h):
            logits, rows = self._logits(above[:, :, y : y + 1], ctx[:, :, y : y + 1], rows, bias)
            out.append(logits)
        return torch.cat(out, 2).unflatten(0, (n, t_max))

    # -- the row-by-row coding path (TileContext) --------------------------------------------
    @property
    def arch(self) -> ContextConfig:
        return self.cfg

    @property
    def dtype(self) -> torch.dtype:
        return self.masked.weight.dtype

    def begin_iteration(self, prev: Tensor, state: State | None, t: int) -> tuple[tuple[Tensor, Tensor], State]:
        """The context of iteration t for every row, and the state for the next iteration."""
        ctx, state = self.iteration_context(prev, state)
        return (ctx, self.bias(t)[None, :, None, None]), state

    def row_probabilities(self, known: Tensor, it: tuple[Tensor, Tensor], y: int, rows: State | None) -> tuple[Tensor, State]:
        """P(1) of row y's C×w bits, from the 1×C×rows_above×w bits above it."""
        ctx, bias = it
        above = torch.tanh(self.masked(known.contiguous()))
        logits, rows = self._logits(above, ctx[:, :, y : y + 1].contiguous(), rows, bias)
        return torch.sigmoid(logits)[0, :, 0], rows


RowCoder = Callable[[int, Tensor], np.ndarray]  # (row index, C×n probabilities) -> those n positions' C×n bits


class RowModel(Protocol):
    """A context model as TileContext steps it: ContextModel (float) or IntegerNet (coder 2)."""

    @property
    def arch(self) -> ContextConfig: ...

    @property
    def dtype(self) -> torch.dtype: ...

    def begin_iteration(self, prev: Tensor, state: Any, t: int) -> tuple[Any, Any]: ...

    def row_probabilities(self, known: Tensor, it: Any, y: int, rows: Any) -> tuple[Tensor, Any]: ...


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
        self.prev = torch.zeros(1, *shape, dtype=model.dtype)
        self.state: Any = None
        self.t = 0
        self.before: tuple[Tensor, Any, int] | None = None  # (prev, state, t) before the last iteration

    def iteration(self, code_row: RowCoder, active: np.ndarray | None = None) -> np.ndarray:
        """Code the next iteration; `code_row` turns each row's probabilities into its bits. With
        `active` (h×w bool), only active positions are coded: the others are 0 in the output and
        unknown (0, like the rows not yet coded) to the model."""
        m, (c, h, w), k = self.model, self.shape, self.model.arch.rows_above
        self.before = (self.prev, self.state, self.t)  # the model's states are new tensors each iteration
        it, self.state = m.begin_iteration(self.prev, self.state, self.t)
        known = torch.zeros(1, c, h + k, w, dtype=m.dtype)  # k rows of zeros, then the bits as they are coded
        out = np.zeros(self.shape, dtype=np.uint8)
        rows = None
        for y in range(h):
            p, rows = m.row_probabilities(known[:, :, y : y + k], it, y, rows)
            if active is None:
                out[:, y] = code_row(y, p)
                known[0, :, y + k] = torch.from_numpy(out[:, y]).to(m.dtype) * 2 - 1
            elif active[y].any():
                cols = torch.from_numpy(active[y])
                out[:, y, active[y]] = code_row(y, p[:, cols])
                known[0, :, y + k, cols] = torch.from_numpy(out[:, y, active[y]]).to(m.dtype) * 2 - 1
        self.prev = known[:, :, k:].clone()
        self.t += 1
        return out

    def undo(self) -> None:
        """Back to before the last iteration (`CoderSession.undo`)."""
        if self.before is None:
            raise RuntimeError("no iteration to undo")
        (self.prev, self.state, self.t), self.before = self.before, None


def build_context_model(stored: StoredWeights) -> ContextModel:
    """A context model from stored weights, in float32 and eval mode."""
    return build_module(stored, KIND, lambda config: ContextModel(ContextConfig.from_json(config)))
