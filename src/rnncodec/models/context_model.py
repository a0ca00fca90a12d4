"""The float context model (Toderici et al. 2017, progressive entropy coding): P(bit = 1) for every bit of an iteration.

Two sources of context:
- this iteration's bits already coded, in row order: a whole row of positions is one step. A
  masked conv sees the rows above only, and a row LSTM (1×3 kernels) carries a state down the
  rows. All C bits of all positions in a row share one step, so decoding a tile takes h steps
  per iteration instead of h·w.
- the earlier iterations: a 1×1 conv-LSTM over the iteration axis, fed by a 3×3 conv of the
  previous iteration's bits; a 3×3 conv of its state is the context for the whole iteration.
Bits enter as ±1; a bit not yet known is 0 (the zero padding above the first row).

`forward` computes every probability in parallel for training (train/entropy.py);
entropy.context.TileContext steps the row methods below to compute the same function one row at
a time, the way an encoder and a decoder must (the legacy coder 1, entropy/arithmetic.py, which
says why this network lives here and builds it from stored weights).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ContextConfig
from ..layers.cells import ConvLSTM, State


@contextmanager
def deterministic() -> Iterator[None]:
    """One thread, no autograd, no autocast: the same float32 kernels whatever the caller's thread
    count or mixed precision, so that a coder 1 decoder computes the encoder's probabilities."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode(), torch.autocast("cpu", enabled=False):
            yield
    finally:
        torch.set_num_threads(threads)


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

    # -- the row-by-row coding path (entropy.context.RowModel) -------------------------------
    @property
    def arch(self) -> ContextConfig:
        return self.cfg

    def running(self) -> AbstractContextManager:
        return deterministic()

    def begin_iteration(self, prev: np.ndarray, state: State | None, t: int) -> tuple[tuple[Tensor, Tensor], State]:
        """The context of iteration t for every row, and the state for the next iteration."""
        ctx, state = self.iteration_context(torch.from_numpy(prev)[None], state)
        return (ctx, self.bias(t)[None, :, None, None]), state

    def row_probabilities(self, known: np.ndarray, it: tuple[Tensor, Tensor], y: int,
                          rows: State | None) -> tuple[np.ndarray, State]:
        """P(1) of row y's C×w bits, from the C×rows_above×w bits above it."""
        ctx, bias = it
        above = torch.tanh(self.masked(torch.from_numpy(known)[None].contiguous()))
        logits, rows = self._logits(above, ctx[:, :, y : y + 1].contiguous(), rows, bias)
        return torch.sigmoid(logits)[0, :, 0].numpy(), rows

