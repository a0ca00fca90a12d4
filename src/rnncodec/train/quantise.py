"""`rnncodec quantise-entropy`: fit coder 2's integer context model to a float one.

1. Post-training quantisation: int8 weights with one scale per output channel (folded into the
   integer multipliers), tanh outputs in units of 1/127, the head's ReLU outputs in units
   calibrated per channel on training crops (a high quantile of what the float model outputs).
2. Quantisation-aware fine-tuning: the float weights are trained through the integer network
   itself (integer_model.IntegerNet) with straight-through rounding, so the loss is the exact
   code length the range coder will see, to the bit.

Like train-entropy, this is a fitting tool: it needs the training data code, and nothing at
run time imports it.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from ..entropy.arithmetic import build_context_model
from ..entropy.integer import ACT, KIND, WEIGHT_MAX, IntegerConfig, Layer, channels, layer_specs
from ..entropy.integer_model import IntegerNet, integer_tensors, make_tables
from ..entropy.range_coder import PROB_BITS
from ..errors import ModelError
from ..image import list_images
from ..models.context_model import ContextModel
from ..stored import load_weights, save_weights
from ..zoo import ImageModel, image_model_by_id, load_image_model
from .config import QuantiseConfig
from .data import PatchSource, is_validation
from .entropy import image_codes

INT32_MAX = (1 << 31) - 1


def _ste_round(x: Tensor) -> Tensor:
    """round(x) forward, identity backward."""
    return torch.round(x.detach()) + (x - x.detach())


class QuantisedLayer(nn.Module):
    """A float layer that rounds itself to the integer one: weight · in_scale / acc_scale and
    bias / acc_scale, rounded (straight-through). One accumulator unit is worth acc_scale[o] =
    mult[o] · out_scale[o] / 2^S, so the requantised index lands on out_scale's grid (a table's
    step, or a ReLU unit); mult is fixed here from the weights' largest magnitude per output
    channel, so that they fit int8. in_scale: what one integer step of each input is worth."""

    def __init__(self, weight: Tensor, bias: Tensor, in_scale: Tensor, out_scale: Tensor, shift: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().double().clone())
        self.bias = nn.Parameter(bias.detach().double().clone())
        self.register_buffer("in_scale", in_scale.double()[None, :, None, None])
        real = (self.weight * self.in_scale).detach().abs().flatten(1).amax(1)
        mult = torch.ceil(real / WEIGHT_MAX * 2.0**shift / out_scale.double()).clamp(min=1)
        if mult.max() > INT32_MAX:
            raise ModelError("a layer's requantisation multiplier does not fit 32 bits (raise lut_frac)")
        self.register_buffer("mult", mult)
        self.register_buffer("acc_scale", mult * out_scale.double() * 2.0**-shift)

    def integers(self) -> Layer:
        w = (self.weight * self.in_scale / self.acc_scale[:, None, None, None]).clamp(-WEIGHT_MAX, WEIGHT_MAX)
        return Layer(_ste_round(w), _ste_round(self.bias / self.acc_scale), self.mult)


class FakeQuantModel(nn.Module):
    """The integer network with float weights that training can move (see module docstring)."""

    def __init__(self, float_model: ContextModel, relu_scale: Tensor, cfg: IntegerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        fm, c = float_model, cfg.context
        lut = torch.tensor(2.0 ** -cfg.lut_frac)
        unit = {"bits": torch.ones(1), "head": relu_scale.double()}
        weights = {
            "masked": (fm.masked.weight, fm.masked.bias),
            "iter_in": (fm.iter_in.weight, fm.iter_in.bias),
            "iter_lstm": (torch.cat((fm.iter_lstm.conv_x.weight, fm.iter_lstm.conv_h.weight), 1), fm.iter_lstm.conv_x.bias),
            "iter_out": (fm.iter_out.weight, fm.iter_out.bias),
            "row_lstm": (torch.cat((fm.row_lstm.conv_x.weight, fm.row_lstm.conv_h.weight), 1), fm.row_lstm.conv_x.bias),
            "head1": (fm.head[0].weight, fm.head[0].bias),
            "head2": (fm.head[2].weight, fm.head[2].bias[None] + fm.iter_bias),
        }
        layers = {}
        for name, spec in layer_specs(c).items():
            in_scale = torch.cat([unit.get(g, torch.tensor(1.0 / ACT)).expand(channels(c, g)) for g in spec.inputs])
            out_scale = relu_scale if spec.act == "relu" else lut.expand(channels(c, spec.out))
            layers[name] = QuantisedLayer(*weights[name], in_scale, out_scale, cfg.shift)
        self.layers = nn.ModuleDict(layers)
        self.tables = make_tables(cfg)

    def net(self) -> IntegerNet:
        return IntegerNet(self.cfg, {k: layer.integers() for k, layer in self.layers.items()}, self.tables)

    def forward(self, bits: Tensor) -> Tensor:
        """k of P(1) = k / 2^16 for N×T×C×h×w ±1 bits; exact values, straight-through gradients."""
        return self.net().forward(bits)

    def export(self, path: Path, **metadata: str) -> bytes:
        with torch.no_grad():
            layers = {k: Layer(*(t.detach() for t in layer.integers())) for k, layer in self.layers.items()}
        if max(layer.bias.abs().max() for layer in layers.values()) > INT32_MAX:
            raise ModelError("a bias does not fit 32 bits")
        return save_weights(path, KIND, self.cfg.to_json(), integer_tensors(layers, self.tables), **metadata)


def code_length(k: Tensor, bits: Tensor) -> Tensor:
    """Bits per bit the range coder spends on ±1 bits with P(1) = k / 2^16."""
    p1 = k * 2.0**-PROB_BITS
    return -torch.where(bits > 0, p1, 1 - p1).log2().mean()


def relu_scales(model: ContextModel, codes: Tensor, quantile: float) -> Tensor:
    """Per channel, what one step of the int8 ReLU output is worth: the `quantile` of the float
    model's head ReLU outputs over the codes, / 127."""
    seen: list[Tensor] = []
    hook = model.head[1].register_forward_hook(lambda m, i, out: seen.append(out.transpose(0, 1).flatten(1)))
    with torch.no_grad():
        for b in codes.split(8):
            model(b.float())
    hook.remove()
    values = torch.cat(seen, 1)
    values = values[:, torch.randperm(values.shape[1], generator=torch.Generator().manual_seed(0))[: 1 << 20]]
    return torch.quantile(values.double(), quantile, dim=1).clamp(min=1e-3) / ACT


def evaluate(model: nn.Module, codes: Tensor, batch: int = 8) -> float:
    """Mean bits per bit over the codes; `model` maps ±1 bits to k."""
    with torch.no_grad():
        total = sum(float(code_length(model(b), b)) * len(b) for b in codes.split(batch))
    return total / len(codes)


class _FloatProbabilities(nn.Module):
    """The float model as evaluate() wants it: the k that coder 1 would use."""

    def __init__(self, model: ContextModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, bits: Tensor) -> Tensor:
        scale = 1 << PROB_BITS
        return torch.round(torch.sigmoid(self.model(bits.float())).double() * scale).clamp(1, scale - 1)


@dataclass
class QuantiseReport:
    model_id: bytes
    float_bits_per_bit: float  # coder 1's probabilities, on the held-out crops
    ptq_bits_per_bit: float
    bits_per_bit: float  # the exported model
    seconds: float


def quantise(float_path: Path, qc: QuantiseConfig, progress: bool = True) -> QuantiseReport:
    """PTQ, then QAT of the float context model in `float_path`; writes the best (held-out) model."""
    start = time.monotonic()
    if qc.threads:
        torch.set_num_threads(qc.threads)
    torch.manual_seed(qc.seed)
    rng = np.random.default_rng(qc.seed)
    stored = load_weights(float_path)
    float_model = build_context_model(stored)
    image: ImageModel = load_image_model(Path(qc.image_model)) if qc.image_model else \
        image_model_by_id(bytes.fromhex(stored.metadata.get("image_model", "")))
    if stored.metadata.get("image_model") != image.model_id.hex():
        raise ModelError(f"{float_path} was not fitted to image model {image.model_id.hex()}")
    paths = list_images(*qc.calib)
    crops = {}
    for name, held_out, n, seed in (("train", False, qc.crops, rng), ("val", True, qc.val_crops, np.random.default_rng(12345))):
        src = PatchSource([p for p in paths if is_validation(p, qc.val_fraction) == held_out], qc.jpeg_downscale,
                          progress=False, patch=qc.crop)
        crops[name] = image_codes(image, src.batch(n, seed), progress)
    train_codes, val_codes = crops["train"], crops["val"]

    model = FakeQuantModel(float_model, relu_scales(float_model, train_codes[:64], qc.relu_quantile),
                           IntegerConfig(context=float_model.cfg))
    float_bpb = evaluate(_FloatProbabilities(float_model), val_codes)
    ptq_bpb = best = evaluate(model, val_codes)
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.Adam(model.parameters(), lr=qc.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * s / max(1, qc.steps))))
    bar = tqdm(range(1, qc.steps + 1), desc="quantise-entropy", disable=not progress)
    bar.set_postfix(float=f"{float_bpb:.5f}", held_out=f"{ptq_bpb:.5f}")
    for step in bar:
        bits = train_codes[rng.integers(0, len(train_codes), qc.batch)]
        loss = code_length(model(bits), bits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % qc.val_every == 0 or step == qc.steps:
            val_bpb = evaluate(model, val_codes)
            bar.set_postfix(float=f"{float_bpb:.5f}", held_out=f"{val_bpb:.5f}", best=f"{min(best, val_bpb):.5f}")
            if val_bpb < best:
                best, best_state = val_bpb, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    settings = json.dumps({k: v for k, v in asdict(qc).items() if k != "output"})
    model_id = model.export(Path(qc.output), image_model=image.model_id.hex(), float_model=stored.model_id.hex(),
                            quantise_config=settings, val_bits_per_bit=f"{best:.5f}",
                            float_val_bits_per_bit=f"{float_bpb:.5f}", ptq_val_bits_per_bit=f"{ptq_bpb:.5f}")
    return QuantiseReport(model_id, float_bpb, ptq_bpb, best, time.monotonic() - start)
