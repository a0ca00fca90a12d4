"""Coder 2's integer network (integer.py) in torch, every row at once, as three things:

- with float parameters rounded by straight-through estimators (quantise.py), the quantisation-
  aware training graph: its forward values are the integer model's, to the bit;
- built from stored integers, the same steps as integer.IntegerRowModel (what coder 2 runs, in
  numpy): float32 products of int8 operands, the rest exact in float64 (integer.py says why);
- built with `reference=True`, the textbook integer network, in int64 throughout (the rounding
  shift an arithmetic shift): the tests check that all three give the same integers.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..stored import StoredWeights
from .integer import ACT, IntegerConfig, Layer, Step, checked, steps, stored_layers
from .range_coder import PROB_BITS


def table_functions(cfg: IntegerConfig) -> dict[str, Callable[[Tensor], Tensor]]:
    """What each table holds, as a smooth function of the real index value; training uses these
    as the look-ups' gradients. The stored tables are these, rounded (see make_tables)."""
    cell = float(1 << cfg.cell_frac)
    return {"tanh8": lambda x: ACT * torch.tanh(x), "sigmoid": lambda x: cell * torch.sigmoid(x),
            "tanh": lambda x: cell * torch.tanh(x), "prob": lambda x: (1 << PROB_BITS) * torch.sigmoid(x)}


def make_tables(cfg: IntegerConfig) -> dict[str, Tensor]:
    """The tables, computed once when a model is fitted and then stored with it (a machine's tanh
    may differ in the last place, so a decoder never recomputes them)."""
    x = torch.arange(-cfg.lut_max, cfg.lut_max + 1, dtype=torch.float64) / (1 << cfg.lut_frac)
    tables = {name: torch.round(f(x)).to(torch.int32) for name, f in table_functions(cfg).items()}
    tables["prob"] = tables["prob"].clamp(1, (1 << PROB_BITS) - 1)
    return tables


def shift_round(x: Tensor, shift: int) -> Tensor:
    """x / 2^shift rounded half up. Exact in int64 (an arithmetic shift) and in float64 (a power of
    two scale and a floor of an exact integer); in training, the gradient of x / 2^shift."""
    half = 1 << (shift - 1)
    if not x.is_floating_point():
        return (x + half) >> shift
    exact = torch.floor((x.detach() + half) * 2.0**-shift)
    return _straight_through(exact, x * 2.0**-shift) if x.requires_grad else exact


def _straight_through(exact: Tensor, smooth: Tensor) -> Tensor:
    """`exact` forward (exact + 0 is exact), the smooth function's gradient backward."""
    return exact + (smooth - smooth.detach())


def im2col(x: Tensor, kh: int, kw: int) -> Tensor:
    """N×C×H×W (already padded) -> N×(C·kh·kw)×(H'·W'), in the order of a conv weight's columns."""
    n, c = x.shape[:2]
    patches = x.unfold(2, kh, 1).unfold(3, kw, 1)  # N×C×H'×W'×kh×kw, a view
    return patches.permute(0, 1, 4, 5, 2, 3).reshape(n, c * kh * kw, -1)


State = tuple[Tensor, Tensor]  # an LSTM's (h, c): h int8 values, c in Q cell_frac


class IterationContext(NamedTuple):
    """What the previous iterations give every row of this one: accumulator parts, bias included."""

    row_lstm: Tensor  # N×4row×h×w
    head1: Tensor  # N×head×h×w
    bias: Tensor  # N×C×1: the head's output bias for this iteration


class Affine(NamedTuple):
    """A layer (or a part of one) ready to run: `IntegerNet.affine`, then `IntegerNet.index`.

    Fast path: the product weight @ x of int8 operands in float32 (float64 if a sum could reach
    2^24), then in float64 acc · mult · 2^−S + bias, where the bias holds bias · mult · 2^−S, the
    rounding half and the table offset: index = floor of that. Reference path: everything in
    int64, index = ((weight @ x + bias) · mult + 2^(S−1)) >> S, plus offset. The same integer.
    """

    weight: Tensor  # O×K
    bias: Tensor  # O×1 (the head's output: iterations×O×1)
    mult: Tensor  # O×1: mult · 2^−S on the fast path
    offset: int  # lut_max for a table (index 0 is its first entry), 0 for the ReLU
    hi: int  # index clamps to [0, hi]


class IntegerNet:
    """The integer network, fast (`reference=False`) or pure int64 (`reference=True`), built from
    `Layer`s: stored integers, or straight-through rounded floats (quantise.py)."""

    def __init__(self, cfg: IntegerConfig, layers: dict[str, Layer[Tensor]], tables: dict[str, Tensor],
                 reference: bool = False) -> None:
        self.cfg = cfg
        # bits and int8 activations (matrix operands) in `dtype`; accumulators, cell, tables in `exact`
        self.dtype, self.exact = (torch.int64, torch.int64) if reference else (torch.float32, torch.float64)
        c, lut = cfg.context, cfg.lut_max
        wide = checked(cfg, {k: Layer(*(t.detach().cpu().numpy() for t in layer)) for k, layer in layers.items()},
                       {k: v.cpu().numpy() for k, v in tables.items()})
        # the LSTM gates i, f, o read the sigmoid table, the candidate j the tanh table after it
        self.tables = {"gates": torch.cat((tables["sigmoid"], tables["tanh"])).to(self.exact),
                       "tanh8": tables["tanh8"].to(self.dtype), "prob": tables["prob"].to(self.exact)}
        self.gate_offsets = {n: torch.cat((torch.zeros(3 * n), torch.full((n,), 2 * lut + 1)))[:, None].to(self.exact)
                             for n in (c.state, c.row)}
        self.smooth = table_functions(cfg)
        self.layers = {name: self._affine(step) for name, step in steps(cfg, layers, wide).items()}

    def _affine(self, step: Step[Tensor]) -> Affine:
        """A step as Affine (`integer.checked` has checked that it stays exact, and which product
        dtype it needs)."""
        (w, b, mult), offset, hi, wide = step
        if self.dtype == torch.int64:
            return Affine(w.to(torch.int64), b.to(torch.int64)[..., None], mult.to(torch.int64)[:, None], offset, hi)
        scale = mult.to(self.exact) * 2.0**-self.cfg.shift
        return Affine(w.to(torch.float64 if wide else torch.float32), (b.to(self.exact) * scale + (0.5 + offset))[..., None],
                      scale[:, None], offset, hi)

    # -- the steps ---------------------------------------------------------------------------
    def affine(self, layer: Affine, x: Tensor, bias: Tensor | None = None) -> Tensor:
        """N×K×L inputs -> N×O×L, what `index` needs (`bias` replaces the layer's: parts computed before)."""
        b = layer.bias if bias is None else bias
        x = x.to(layer.weight.dtype)
        product = (layer.weight @ x[0])[None] if x.shape[0] == 1 else layer.weight @ x  # one tile: a plain matrix product
        if self.exact == torch.int64:
            return product + b
        return torch.addcmul(b, product.to(self.exact), layer.mult)

    def index(self, layer: Affine, acc: Tensor) -> Tensor:
        """affine's output -> table indices (or ReLU outputs), clamped: see Affine."""
        if acc.is_floating_point():
            exact = torch.floor(acc.detach())
            idx = _straight_through(exact, acc) if acc.requires_grad else exact
        else:
            idx = ((acc * layer.mult + (1 << (self.cfg.shift - 1))) >> self.cfg.shift) + layer.offset
        return idx.clamp(0, layer.hi)

    def lookup(self, name: str, idx: Tensor) -> Tensor:
        """table[idx]; in training, the gradient of the smooth function it tabulates."""
        exact = self.tables[name].index_select(0, idx.detach().long().flatten()).view(idx.shape)
        if not idx.requires_grad:
            return exact
        lut, step = self.cfg.lut_max, 2.0 ** -self.cfg.lut_frac
        x = (idx - lut) * step
        if name == "gates":
            smooth = torch.where(idx < 2 * lut + 1, self.smooth["sigmoid"](x), self.smooth["tanh"](x - (2 * lut + 1) * step))
        else:
            smooth = self.smooth[name](x)
        return _straight_through(exact, smooth)

    def conv(self, layer: Affine, x: Tensor, kernel: tuple[int, int], pad: tuple[int, int]) -> Tensor:
        """tanh(conv(x)) as int8 in units of 1/127, N×O×H'×W', by im2col and matmul."""
        x = F.pad(x, (pad[1], pad[1], pad[0], pad[0]))
        idx = self.index(layer, self.affine(layer, im2col(x, *kernel)))
        return self.lookup("tanh8", idx).view(*idx.shape[:2], x.shape[2] - kernel[0] + 1, x.shape[3] - kernel[1] + 1)

    def cell(self, idx: Tensor, c: Tensor | None) -> State:
        """LSTM: c' = σ(f)·c + σ(i)·tanh(j), h' = σ(o)·tanh(c'), from N×4H×L gate indices."""
        f_bits, lut = self.cfg.cell_frac, self.cfg.lut_max
        i, f, o, g = self.lookup("gates", idx + self.gate_offsets[idx.shape[1] // 4]).chunk(4, 1)
        x = i * g if c is None else torch.addcmul(i * g, f, c)
        c = shift_round(x, f_bits).clamp(-self.cfg.cell_max, self.cfg.cell_max)
        t = self.lookup("tanh8", (shift_round(c, f_bits - self.cfg.lut_frac) + lut).clamp(0, 2 * lut))
        return shift_round(o * t, f_bits).to(self.dtype), c

    def iteration_context(self, prev: Tensor, state: State | None, t: Tensor) -> tuple[IterationContext, State]:
        """From the previous iteration's N×C×h×w bits: this iteration's context parts and state."""
        n, _, h, w = prev.shape
        x = self.conv(self.layers["iter_in"], prev, (3, 3), (1, 1)).flatten(2)
        lstm = self.layers["iter_lstm"]
        hc = x.new_zeros(x.shape) if state is None else state[0]
        hc, cc = self.cell(self.index(lstm, self.affine(lstm, torch.cat((x, hc), 1))), None if state is None else state[1])
        ctx = self.conv(self.layers["iter_out"], hc.view(n, -1, h, w), (3, 3), (1, 1))
        parts = IterationContext(self.affine(self.layers["row_ctx"], im2col(F.pad(ctx, (1, 1)), 1, 3)).view(n, -1, h, w),
                                 self.affine(self.layers["head_ctx"], ctx.flatten(2)).view(n, -1, h, w),
                                 self.layers["head2"].bias[t.clamp(max=self.cfg.context.iterations - 1)])
        return parts, (hc, cc)

    def above(self, known: Tensor) -> Tensor:
        """The masked conv: N×C×(n + rows_above − 1)×w known bits -> N×masked×n×w int8 features."""
        c = self.cfg.context
        return self.conv(self.layers["masked"], known, (c.rows_above, c.kernel_w), (0, c.kernel_w // 2))

    def row(self, above: Tensor, ctx: IterationContext, y: int, rows: State | None) -> tuple[Tensor, State]:
        """One row: N×masked×w features of the rows above -> N×C×w values k of P(1) = k / 2^16."""
        h = above.new_zeros(above.shape[0], self.cfg.context.row, above.shape[2]) if rows is None else rows[0]
        cols = im2col(F.pad(torch.cat((above, h), 1)[:, :, None], (1, 1)), 1, 3)
        row, head = self.layers["row_known"], self.layers["head_known"]
        gates = self.affine(row, cols, ctx.row_lstm[:, :, y])
        h, c = self.cell(self.index(row, gates), None if rows is None else rows[1])
        hidden = self.index(head, self.affine(head, torch.cat((h, above), 1), ctx.head1[:, :, y]))
        out = self.layers["head2"]  # (hidden: ReLU outputs, 0…127)
        return self.lookup("prob", self.index(out, self.affine(out, hidden, ctx.bias))), (h, c)

    def forward(self, bits: Tensor) -> Tensor:
        """k of every bit of N×T×C×h×w bits (±1), all iterations at once (training and tests)."""
        n, t_max, c, h, w = bits.shape
        bits = bits.to(self.dtype)
        prev = torch.cat((bits.new_zeros(n, 1, c, h, w), bits[:, :-1]), 1)
        state, parts = None, []
        for t in range(t_max):
            ctx, state = self.iteration_context(prev[:, t], state, torch.full((n,), t))
            parts.append(ctx)
        ctx = IterationContext(*(torch.stack(p, 1).flatten(0, 1) for p in zip(*parts)))
        above = self.above(F.pad(bits.flatten(0, 1), (0, 0, self.cfg.context.rows_above, 0))[:, :, :-1])
        rows, out = None, []
        for y in range(h):
            k, rows = self.row(above[:, :, y], ctx, y, rows)
            out.append(k)
        return torch.stack(out, 2).unflatten(0, (n, t_max))


def build_integer_net(stored: StoredWeights, reference: bool = False) -> IntegerNet:
    """The integer network from stored weights; anything that does not fit is a ModelError."""
    cfg, layers, tables = stored_layers(stored)
    return IntegerNet(cfg, {k: Layer(*map(torch.from_numpy, layer)) for k, layer in layers.items()},
                      {k: torch.from_numpy(v) for k, v in tables.items()}, reference)


def integer_tensors(layers: dict[str, Layer[Tensor]], tables: dict[str, Tensor]) -> dict[str, Tensor]:
    """The tensors a weights file stores: int8 weights, int32 biases, multipliers and tables."""
    out = {}
    for name, layer in layers.items():
        out[f"{name}.weight"] = layer.weight.to(torch.int8)
        out[f"{name}.bias"] = layer.bias.to(torch.int32)
        out[f"{name}.mult"] = layer.mult.to(torch.int32)
    out.update({f"table.{k}": v.to(torch.int32) for k, v in tables.items()})
    return out

