"""Coder 2's context model: the float model's architecture (context_model.py) in integer arithmetic.

A decoder must compute exactly the probabilities the encoder used. Float convolutions do not give
that across CPUs, instruction sets and libraries, so this network is an integer network (Ballé,
Johnston & Minnen, "Integer networks for data compression with latent-variable models", ICLR
2019): every number in it is an integer, and every step is exact on every machine.

- Bits enter as −1, +1, and 0 where not yet known.
- Weights are int8, biases integers in accumulator units. A layer sums weight × input exactly.
- A layer's accumulator becomes a table index by an integer multiplier per output channel and a
  rounding shift: (acc · mult + 2^(S−1)) >> S, plus the table's offset, clamped to the table.
  Index i stands for the real value i / 2^lut_frac − lut_max.
- Nonlinearities are tables stored with the weights (so the model id covers them): tanh to int8
  (units of 1/127), sigmoid and tanh in Q`cell_frac` for the LSTM gates, and the logit straight
  to k in [1, 2^16 − 1], the range coder's P(1) = k / 2^16. The head's ReLU is a clamp to
  [0, 127] of a requantised accumulator (its scale is folded into the multipliers).
- LSTM cell state in Q`cell_frac`, clamped to ±cell_max.

Why every step is exact on every machine (docs/FORMAT.md, coder 2):
- Products are explicit matrix products (im2col, then a matmul), never convolution kernels
  (Winograd and FFT algorithms are not exact). Their operands are int8 values (weights, ±1
  bits, activations), and each output's sum of |products| is checked below 2^24 when the model
  is built: a float32 matmul is then exact in any summation order, with or without FMA, on any
  BLAS, thread count, instruction set or device, and so are the reduced-precision modes torch
  may use for float32 products (TF32 and bf16 hold integers up to 256 exactly and accumulate in
  float32). A layer that could exceed 2^24 runs its product in float64 instead. Biases never
  enter the matmul: they are added afterwards in float64.
- The rest runs in float64 on integers (or integers times a power of two) checked below 2^53:
  +, −, × of such values, floor, clamp and table look-ups are exact by IEEE 754.
- Built with `reference=True`, the same code runs in int64 throughout (the textbook rounding
  shift): the tests check that both give the same integers.

With float parameters rounded by straight-through estimators (quantise.py), the same code is
the quantisation-aware training graph: its forward values are the integer model's, to the bit.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ModelError
from ..stored import StoredWeights
from .context_model import ContextConfig

KIND = "entropy-int"
ACT = 127  # int8 activations: tanh outputs in units of 1/127
WEIGHT_MAX = 127  # int8 weights
PROB_BITS = 16  # P(1) = k / 2^16, 1 ≤ k < 2^16, as coder 1
EXACT_LIMIT = 1 << 53  # float64 holds every integer below this exactly


@dataclass(frozen=True)
class IntegerConfig:
    context: ContextConfig = field(default_factory=ContextConfig)
    lut_frac: int = 6  # table index i stands for (i − lut_max) / 64
    lut_max: int = 768  # tables span ±12.0 (2·768 + 1 entries): every one is saturated there
    shift: int = 24  # requantisation: (acc · mult + 2^23) >> 24
    cell_frac: int = 12  # LSTM gates and cell state are value · 2^12
    cell_max: int = 1 << 20  # |c| ≤ 256.0: bounds the cell's products

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "context": asdict(self.context)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> IntegerConfig:
        d = json.loads(text)
        return cls(**{**d, "context": ContextConfig(**d["context"])})


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


class Layer(NamedTuple):
    """One layer's integers: weight O×I×kh×kw, bias O (the head's output: iterations×O), mult O."""

    weight: Tensor
    bias: Tensor
    mult: Tensor


class LayerSpec(NamedTuple):
    inputs: tuple[str, ...]  # input groups, in the order of the weight's input channels
    out: str  # output channels
    kernel: tuple[int, int]
    act: str  # what the requantised index becomes: a table, "relu" or "lstm"


def layer_specs(c: ContextConfig) -> dict[str, LayerSpec]:
    """The layers of context_model.ContextModel, with each LSTM's input and hidden convs merged into
    one (inputs concatenated), and its head's two 1×1 convs apart."""
    return {
        "masked": LayerSpec(("bits",), "masked", (c.rows_above, c.kernel_w), "tanh8"),
        "iter_in": LayerSpec(("bits",), "state", (3, 3), "tanh8"),
        "iter_lstm": LayerSpec(("state", "state"), "4·state", (1, 1), "lstm"),
        "iter_out": LayerSpec(("state",), "state", (3, 3), "tanh8"),
        "row_lstm": LayerSpec(("masked", "state", "row"), "4·row", (1, 3), "lstm"),
        "head1": LayerSpec(("row", "masked", "state"), "head", (1, 1), "relu"),
        "head2": LayerSpec(("head",), "bits", (1, 1), "prob"),
    }


def channels(c: ContextConfig, group: str) -> int:
    return 4 * getattr(c, group[2:]) if group.startswith("4·") else getattr(c, group)


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

    def __init__(self, cfg: IntegerConfig, layers: dict[str, Layer], tables: dict[str, Tensor],
                 reference: bool = False) -> None:
        self.cfg = cfg
        # bits and int8 activations (matrix operands) in `dtype`; accumulators, cell, tables in `exact`
        self.dtype, self.exact = (torch.int64, torch.int64) if reference else (torch.float32, torch.float64)
        c, lut = cfg.context, cfg.lut_max
        specs = layer_specs(c)
        if set(layers) != set(specs) or set(tables) != set(table_functions(cfg)):
            raise ModelError("integer entropy weights: missing or unknown layers or tables")
        for k, v in tables.items():
            if v.shape != (2 * lut + 1,):
                raise ModelError(f"integer entropy weights: table {k} has {v.numel()} entries, expected {2 * lut + 1}")
        if tables["prob"].min() < 1 or tables["prob"].max() >= 1 << PROB_BITS:
            raise ModelError("integer entropy weights: probability table outside [1, 2^16 − 1]")
        # the LSTM gates i, f, o read the sigmoid table, the candidate j the tanh table after it
        self.tables = {"gates": torch.cat((tables["sigmoid"], tables["tanh"])).to(self.exact),
                       "tanh8": tables["tanh8"].to(self.dtype), "prob": tables["prob"].to(self.exact)}
        self.gate_offsets = {n: torch.cat((torch.zeros(3 * n), torch.full((n,), 2 * lut + 1)))[:, None].to(self.exact)
                             for n in (c.state, c.row)}
        self.smooth = table_functions(cfg)
        self.layers: dict[str, Affine] = {}
        for name, spec in specs.items():
            layer = layers[name]
            expected = (channels(c, spec.out), sum(channels(c, g) for g in spec.inputs), *spec.kernel)
            if tuple(layer.weight.shape) != expected or tuple(layer.mult.shape) != expected[:1] \
                    or tuple(layer.bias.shape[-1:]) != expected[:1]:
                raise ModelError(f"integer entropy weights: layer {name} does not fit the config")
            offset, hi = (0, ACT) if spec.act == "relu" else (lut, 2 * lut)
            self.layers[name] = self._affine(name, spec, layer, offset, hi)
        m, s, r = c.masked, c.state, c.row
        row = self.layers["row_lstm"]
        w = row.weight.view(4 * r, m + s + r, 3)
        self.row_known = row._replace(weight=torch.cat((w[:, :m], w[:, m + s :]), 1).flatten(1))  # above and h
        self.row_ctx = row._replace(weight=w[:, m : m + s].flatten(1))  # the iteration context: once an iteration
        head = self.layers["head1"]
        self.head_known = head._replace(weight=head.weight[:, : r + m])
        self.head_ctx = head._replace(weight=head.weight[:, r + m :])

    def _affine(self, name: str, spec: LayerSpec, layer: Layer, offset: int, hi: int) -> Affine:
        """The layer as Affine, after checking that every step of it stays exact (see module docstring):
        int8 weights; each output's sum of |products| below 2^24 for a float32 product (else the
        product runs in float64); and |acc| · mult + the rest below 2^53 for the float64 steps."""
        w, b, mult = layer.weight.flatten(1), layer.bias, layer.mult
        if w.detach().abs().max() > WEIGHT_MAX or (mult < 1).any():
            raise ModelError(f"integer entropy weights: layer {name} has weights outside int8 or a multiplier below 1")
        x_max = 1 if spec.inputs == ("bits",) else ACT
        products = w.detach().double().abs().sum(1) * x_max
        acc = products + b.detach().double().abs().reshape(-1, len(mult)).amax(0)
        if (acc * mult.double()).max() + (offset + 1) * 2.0**self.cfg.shift >= EXACT_LIMIT:
            raise ModelError(f"integer entropy weights: layer {name} could leave float64's exact integers")
        if self.dtype == torch.int64:
            return Affine(w.to(torch.int64), b.to(torch.int64)[..., None], mult.to(torch.int64)[:, None], offset, hi)
        scale = mult.to(self.exact) * 2.0**-self.cfg.shift
        product_dtype = torch.float32 if products.max() < 1 << 24 else torch.float64
        return Affine(w.to(product_dtype), (b.to(self.exact) * scale + (0.5 + offset))[..., None], scale[:, None],
                      offset, hi)

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
        parts = IterationContext(self.affine(self.row_ctx, im2col(F.pad(ctx, (1, 1)), 1, 3)).view(n, -1, h, w),
                                 self.affine(self.head_ctx, ctx.flatten(2)).view(n, -1, h, w),
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
        gates = self.affine(self.row_known, cols, ctx.row_lstm[:, :, y])
        h, c = self.cell(self.index(self.row_known, gates), None if rows is None else rows[1])
        hidden = self.index(self.head_known, self.affine(self.head_known, torch.cat((h, above), 1), ctx.head1[:, :, y]))
        out = self.layers["head2"]  # (hidden: ReLU outputs, 0…127)
        return self.lookup("prob", self.index(out, self.affine(out, hidden, ctx.bias))), (h, c)
    # -- the row-by-row coding path (context_model.TileContext) ------------------------------
    @property
    def arch(self) -> ContextConfig:
        return self.cfg.context

    def begin_iteration(self, prev: Tensor, state: State | None, t: int) -> tuple[IterationContext, State]:
        return self.iteration_context(prev, state, torch.tensor([t]))

    def row_probabilities(self, known: Tensor, ctx: IterationContext, y: int, rows: State | None) -> tuple[Tensor, State]:
        """k of row y's C×w bits, from the 1×C×rows_above×w bits above it."""
        k, rows = self.row(self.above(known)[:, :, 0], ctx, y, rows)
        return k[0], rows

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
    if stored.kind != KIND:
        raise ModelError(f"expected {KIND} model weights, got {stored.kind!r} weights")
    try:
        cfg = IntegerConfig.from_json(stored.config)
        layers = {name: Layer(*(stored.tensors[f"{name}.{part}"] for part in Layer._fields)) for name in layer_specs(cfg.context)}
        tables = {name: stored.tensors[f"table.{name}"] for name in table_functions(cfg)}
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelError(f"{KIND} weights do not fit their config: {exc}") from None
    if any(t.is_floating_point() for t in stored.tensors.values()):
        raise ModelError(f"{KIND} weights must be integers")
    return IntegerNet(cfg, layers, tables, reference)


def integer_tensors(layers: dict[str, Layer], tables: dict[str, Tensor]) -> dict[str, Tensor]:
    """The tensors a weights file stores: int8 weights, int32 biases, multipliers and tables."""
    out = {}
    for name, layer in layers.items():
        out[f"{name}.weight"] = layer.weight.to(torch.int8)
        out[f"{name}.bias"] = layer.bias.to(torch.int32)
        out[f"{name}.mult"] = layer.mult.to(torch.int32)
    out.update({f"table.{k}": v.to(torch.int32) for k, v in tables.items()})
    return out

