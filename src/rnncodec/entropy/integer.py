"""Coder 2: range coding (constriction) of each bit with the integer context model's P(1) = k / 2^16.

A decoder must compute exactly the probabilities the encoder used. Float convolutions do not give
that across CPUs, instruction sets and libraries, so coder 2's context model is an integer network
(Ballé, Johnston & Minnen, "Integer networks for data compression with latent-variable models",
ICLR 2019) with the float model's architecture (models/context_model.py): every number in it is an
integer, and every step is exact on every machine, so a file decodes wherever rnncodec runs.

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
  is built (`checked`): a float32 matmul is then exact in any summation order, with or without
  FMA, on any BLAS, thread count, instruction set or device, and so are the reduced-precision
  modes torch may use for float32 products (TF32 and bf16 hold integers up to 256 exactly and
  accumulate in float32). A layer that could exceed 2^24 runs its product in float64 instead.
  Biases never enter the matmul: they are added afterwards in float64.
- The rest runs in float64 on integers (or integers times a power of two) checked below 2^53:
  +, −, × of such values, floor, clamp and table look-ups are exact by IEEE 754.

This module holds the network's definition and checks, and its row-by-row inference in numpy
(IntegerRowModel), which encoders and decoders run: no torch, so `compress` codes without it.
The range coding is range_coder.py's, driven by context.ContextCoder as coder 1's is, fed
k / 2^16, which float64 holds exactly.
integer_model.py holds the same network in torch, every row at once: the quantisation-aware
training graph, and the int64 textbook version the tests hold both to.
"""
from __future__ import annotations

import json
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Generic, NamedTuple, TypeVar

import numpy as np
from numpy.lib.stride_tricks import as_strided
from threadpoolctl import ThreadpoolController

from ..config import ContextConfig
from ..errors import ModelError
from ..stored import StoredWeights
from .base import register_coder
from .context import context_coder_spec
from .range_coder import PROB_BITS

CODER_ID = 2
KIND = "entropy-int"
ACT = 127  # int8 activations: tanh outputs in units of 1/127
WEIGHT_MAX = 127  # int8 weights
EXACT_LIMIT = 1 << 53  # float64 holds every integer below this exactly
TABLES = ("tanh8", "sigmoid", "tanh", "prob")  # what each holds: integer_model.table_functions


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


A = TypeVar("A")  # numpy arrays here; torch tensors in training (integer_model.py)


class Layer(NamedTuple, Generic[A]):
    """One layer's integers: weight O×I×kh×kw, bias O (the head's output: iterations×O), mult O."""

    weight: A
    bias: A
    mult: A


class LayerSpec(NamedTuple):
    inputs: tuple[str, ...]  # input groups, in the order of the weight's input channels
    out: str  # output channels
    kernel: tuple[int, int]
    act: str  # what the requantised index becomes: a table, "relu" or "lstm"


def layer_specs(c: ContextConfig) -> dict[str, LayerSpec]:
    """The layers of models.context_model.ContextModel, with each LSTM's input and hidden convs merged into
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


def index_range(spec: LayerSpec, cfg: IntegerConfig) -> tuple[int, int]:
    """A layer's index offset (a table's index 0 is its first entry; the ReLU has none) and the
    largest index (the table's last entry; the ReLU's 127)."""
    return (0, ACT) if spec.act == "relu" else (cfg.lut_max, 2 * cfg.lut_max)


def checked(cfg: IntegerConfig, layers: dict[str, Layer[np.ndarray]], tables: dict[str, np.ndarray]) -> set[str]:
    """Check that the layers and tables fit the config and that every step stays exact (module
    docstring): int8 weights, multipliers ≥ 1, |acc| · mult + the rest below 2^53 for the float64
    steps. Returns the layers whose products need float64: a sum of |products| could reach 2^24."""
    c, lut = cfg.context, cfg.lut_max
    specs = layer_specs(c)
    if set(layers) != set(specs) or set(tables) != set(TABLES):
        raise ModelError("integer entropy weights: missing or unknown layers or tables")
    for k, v in tables.items():
        if v.shape != (2 * lut + 1,):
            raise ModelError(f"integer entropy weights: table {k} has {v.size} entries, expected {2 * lut + 1}")
    if tables["prob"].min() < 1 or tables["prob"].max() >= 1 << PROB_BITS:
        raise ModelError("integer entropy weights: probability table outside [1, 2^16 − 1]")
    wide = set()
    for name, spec in specs.items():
        w, b, mult = layers[name]
        expected = (channels(c, spec.out), sum(channels(c, g) for g in spec.inputs), *spec.kernel)
        if w.shape != expected or mult.shape != expected[:1] or b.shape[-1:] != expected[:1]:
            raise ModelError(f"integer entropy weights: layer {name} does not fit the config")
        magnitudes = np.abs(w.astype(np.float64)).reshape(len(w), -1)
        if magnitudes.max() > WEIGHT_MAX or (mult < 1).any():
            raise ModelError(f"integer entropy weights: layer {name} has weights outside int8 or a multiplier below 1")
        products = magnitudes.sum(1) * (1 if spec.inputs == ("bits",) else ACT)
        acc = products + np.abs(b.astype(np.float64)).reshape(-1, len(mult)).max(0)
        offset = index_range(spec, cfg)[0]
        if (acc * mult.astype(np.float64)).max() + (offset + 1) * 2.0**cfg.shift >= EXACT_LIMIT:
            raise ModelError(f"integer entropy weights: layer {name} could leave float64's exact integers")
        if products.max() >= 1 << 24:
            wide.add(name)
    return wide


def stored_layers(stored: StoredWeights) -> tuple[IntegerConfig, dict[str, Layer[np.ndarray]], dict[str, np.ndarray]]:
    """The config, layers and tables of stored integer weights, as the file holds them."""
    if stored.kind != KIND:
        raise ModelError(f"expected {KIND} model weights, got {stored.kind!r} weights")
    try:
        cfg = IntegerConfig.from_json(stored.config)
        layers = {name: Layer(*(stored.tensors[f"{name}.{part}"] for part in Layer._fields)) for name in layer_specs(cfg.context)}
        tables = {name: stored.tensors[f"table.{name}"] for name in TABLES}
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelError(f"{KIND} weights do not fit their config: {exc}") from None
    if any(t.dtype.kind == "f" for t in stored.tensors.values()):
        raise ModelError(f"{KIND} weights must be integers")
    return cfg, layers, tables


class Step(NamedTuple, Generic[A]):
    """A layer as the row-by-row inference runs it (`steps`)."""

    layer: Layer[A]  # its weight an O×K matrix, K in the order of im2col's rows
    offset: int  # index_range
    hi: int
    wide: bool  # its products need float64 (`checked`)


def steps(cfg: IntegerConfig, layers: dict[str, Layer[A]], wide: set[str]) -> dict[str, Step[A]]:
    """The layers as the row-by-row inference runs them, in numpy (IntegerRowModel) and in torch
    (integer_model.IntegerNet): the row LSTM and the head's first layer split by what feeds them,
    into the part computed every row from the rows above and the row state (`row_known`,
    `head_known`) and the part computed once an iteration from its context (`row_ctx`,
    `head_ctx`); both parts keep the layer's bias and multipliers. The other layers stay whole.
    Works on numpy arrays and torch tensors alike."""
    c = cfg.context
    m, s, r = c.masked, c.state, c.row
    specs = layer_specs(c)

    def step(name: str, weight: A) -> Step[A]:
        return Step(layers[name]._replace(weight=weight.reshape(len(weight), -1)), *index_range(specs[name], cfg),
                    name in wide)

    row = layers["row_lstm"].weight.reshape(4 * r, m + s + r, 3)  # inputs: above, the context, h
    head = layers["head1"].weight  # inputs: h, above, the context
    return {**{name: step(name, layers[name].weight) for name in specs if name not in ("row_lstm", "head1")},
            "row_known": step("row_lstm", row[:, [*range(m), *range(m + s, m + s + r)]]),
            "row_ctx": step("row_lstm", row[:, m : m + s]),
            "head_known": step("head1", head[:, : r + m]),
            "head_ctx": step("head1", head[:, r + m :])}


# -- the row-by-row inference -------------------------------------------------------------
class _Affine(NamedTuple):
    """A layer (or a part of one) ready to run: index = floor(weight @ x · mult + bias), clamped
    to [0, hi]. The product in float32 (float64 for a `checked` wide layer), the rest in float64;
    the bias holds bias · mult · 2^−S, the rounding half and the table offset."""

    weight: np.ndarray  # O×K
    bias: np.ndarray  # O×1 (the head's output: iterations×O×1)
    mult: np.ndarray  # O×1: mult · 2^−S
    hi: int


class _Iteration(NamedTuple):
    """What the previous iterations give every row of this one: accumulator parts, bias included."""

    row_lstm: np.ndarray  # h×4row×w
    head1: np.ndarray  # h×head×w
    bias: np.ndarray  # C×1: the head's output bias for this iteration


@cache
def _blas() -> ThreadpoolController:
    """numpy's BLAS, found once: finding it scans the process's libraries, too slow to repeat for
    every iteration."""
    return ThreadpoolController().select(user_api="blas")


def _shift_round(x: np.ndarray, shift: int) -> np.ndarray:
    """x / 2^shift rounded half up: a power of two scale and a floor of an exact integer."""
    return np.floor((x + (1 << (shift - 1))) * 2.0**-shift)


def _pad(x: np.ndarray, ph: int, pw: int) -> np.ndarray:
    """C×H×W -> C×(H + 2·ph)×(W + 2·pw), zeros around."""
    c, h, w = x.shape
    out = np.zeros((c, h + 2 * ph, w + 2 * pw), x.dtype)
    out[:, ph : ph + h, pw : pw + w] = x
    return out


def _im2col(x: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """C×H×W (already padded) -> (C·kh·kw)×(H'·W'), in the order of a conv weight's columns."""
    (c, h, w), (sc, sh, sw) = x.shape, x.strides
    patches = as_strided(x, (c, kh, kw, h - kh + 1, w - kw + 1), (sc, sh, sw, sh, sw), writeable=False)  # a view
    return patches.reshape(c * kh * kw, -1)


class IntegerRowModel:
    """The integer network row by row, in numpy (context.RowModel): what coder 2 runs. Its steps
    are integer_model.IntegerNet's, and the tests hold it to that network's integers."""

    def __init__(self, cfg: IntegerConfig, layers: dict[str, Layer[np.ndarray]], tables: dict[str, np.ndarray]) -> None:
        wide = checked(cfg, layers, tables)
        self.cfg = cfg
        c, lut = cfg.context, cfg.lut_max
        self.tanh8 = tables["tanh8"].astype(np.float32)  # a matrix operand
        # the LSTM gates i, f, o read the sigmoid table, the candidate j the tanh table after it
        self.gates = np.concatenate((tables["sigmoid"], tables["tanh"])).astype(np.float64)
        self.gate_offsets = {n: np.repeat([0, 2 * lut + 1], [3 * n, n])[:, None] for n in (c.state, c.row)}
        self.prob = tables["prob"] * 2.0**-PROB_BITS  # P(1) itself
        self.layers: dict[str, _Affine] = {}
        for name, ((w, b, mult), offset, hi, is_wide) in steps(cfg, layers, wide).items():
            scale = mult.astype(np.float64) * 2.0**-cfg.shift
            self.layers[name] = _Affine(np.ascontiguousarray(w, np.float64 if is_wide else np.float32),
                                        (b * scale + (0.5 + offset))[..., None], scale[:, None], hi)

    @property
    def arch(self) -> ContextConfig:
        return self.cfg.context

    def running(self) -> AbstractContextManager:
        """One BLAS thread: a row's products are small, and waking BLAS threads for each of them
        costs more than it saves. Any thread count gives the same integers."""
        return _blas().limit(limits=1)

    # -- the steps ---------------------------------------------------------------------------
    def _affine(self, layer: _Affine, x: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
        """K×L inputs -> O×L, what `_index` needs (`bias` replaces the layer's: parts computed before)."""
        return (layer.weight @ x.astype(layer.weight.dtype, copy=False)) * layer.mult + (layer.bias if bias is None else bias)

    @staticmethod
    def _index(layer: _Affine, acc: np.ndarray) -> np.ndarray:
        """_affine's output -> table indices (or ReLU outputs), clamped."""
        return np.clip(np.floor(acc), 0, layer.hi).astype(np.intp)

    def _conv(self, layer: _Affine, x: np.ndarray, kernel: tuple[int, int]) -> np.ndarray:
        """tanh(conv(x)) as int8 values in units of 1/127, O×H'×W', of C×H×W (already padded)."""
        idx = self._index(layer, self._affine(layer, _im2col(x, *kernel)))
        return self.tanh8[idx].reshape(len(idx), x.shape[1] - kernel[0] + 1, x.shape[2] - kernel[1] + 1)

    def _cell(self, idx: np.ndarray, c: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """LSTM: c' = σ(f)·c + σ(i)·tanh(j), h' = σ(o)·tanh(c'), from 4H×L gate indices."""
        f_bits, lut = self.cfg.cell_frac, self.cfg.lut_max
        i, f, o, j = self.gates[idx + self.gate_offsets[len(idx) // 4]].reshape(4, -1, idx.shape[1])
        x = i * j if c is None else i * j + f * c
        c = np.clip(_shift_round(x, f_bits), -self.cfg.cell_max, self.cfg.cell_max)
        t = self.tanh8[np.clip(_shift_round(c, f_bits - self.cfg.lut_frac) + lut, 0, 2 * lut).astype(np.intp)]
        return _shift_round(o * t, f_bits).astype(np.float32), c

    # -- context.RowModel ---------------------------------------------------------------------
    def begin_iteration(self, prev: np.ndarray, state: tuple[np.ndarray, np.ndarray] | None,
                        t: int) -> tuple[_Iteration, tuple[np.ndarray, np.ndarray]]:
        _, h, w = prev.shape
        x = self._conv(self.layers["iter_in"], _pad(prev, 1, 1), (3, 3)).reshape(-1, h * w)
        lstm = self.layers["iter_lstm"]
        hc = np.zeros_like(x) if state is None else state[0]
        hc, cc = self._cell(self._index(lstm, self._affine(lstm, np.concatenate((x, hc)))), None if state is None else state[1])
        ctx = self._conv(self.layers["iter_out"], _pad(hc.reshape(-1, h, w), 1, 1), (3, 3))
        row = self._affine(self.layers["row_ctx"], _im2col(_pad(ctx, 0, 1), 1, 3)).reshape(-1, h, w)
        head = self._affine(self.layers["head_ctx"], ctx.reshape(len(ctx), -1)).reshape(-1, h, w)
        bias = self.layers["head2"].bias[min(t, self.cfg.context.iterations - 1)]
        return _Iteration(row.transpose(1, 0, 2).copy(), head.transpose(1, 0, 2).copy(), bias), (hc, cc)

    def row_probabilities(self, known: np.ndarray, it: _Iteration, y: int,
                          rows: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        c = self.cfg.context
        above = self._conv(self.layers["masked"], _pad(known, 0, c.kernel_w // 2), (c.rows_above, c.kernel_w))[:, 0]
        h = np.zeros((c.row, above.shape[1]), np.float32) if rows is None else rows[0]
        row, head = self.layers["row_known"], self.layers["head_known"]
        gates = self._affine(row, _im2col(_pad(np.concatenate((above, h))[:, None], 0, 1), 1, 3), it.row_lstm[y])
        h, cell = self._cell(self._index(row, gates), None if rows is None else rows[1])
        hidden = self._index(head, self._affine(head, np.concatenate((h, above)), it.head1[y]))
        out = self.layers["head2"]  # (hidden: ReLU outputs, 0…127)
        return self.prob[self._index(out, self._affine(out, hidden, it.bias))], (h, cell)


def build_row_model(stored: StoredWeights) -> IntegerRowModel:
    """Coder 2's model from stored weights; anything that does not fit is a ModelError."""
    return IntegerRowModel(*stored_layers(stored))


register_coder(CODER_ID, context_coder_spec(CODER_ID, KIND, build_row_model))
