"""The RNN codec of Toderici et al., "Full Resolution Image Compression with Recurrent Neural
Networks" (CVPR 2017), top to bottom.

    b_t  = B(E_t(g_t · r_{t-1}))               bits of iteration t
    x̂_t  = D_t(b_t) / g_t + γ · x̂_{t-1}         γ = 0 one-shot, 1 otherwise
    r_t  = x − x̂_t,  r_0 = x,  x̂_0 = 0          g_t = G(x̂_{t-1}) for residual scaling,
                                                 a learned scalar per iteration for iteration gain,
                                                 else 1

Pixels are in [−0.5, 0.5]; image sides must be multiples of 16 (the caller pads).
"""
from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import STRIDE, ModelConfig
from ..layers import Binarizer, Conv2d, make_cell


@dataclass(frozen=True)
class Step:
    """Where an encoding stands after t iterations: the encoder's and decoder's RNN states, and x̂_t
    (None after a step that skipped the decoder: an encoder's last, whose x̂ nobody needs)."""

    t: int
    enc: list
    dec: list
    recon: Tensor | None


ActiveBlocks = Callable[[int, Tensor], "Tensor | None"]  # (iteration, reconstruction so far) -> blocks still coded


def _autocast(bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast when asked; otherwise leave the caller's autocast alone (`autocast(enabled=False)`
    would switch off a trainer's `--bf16` around the whole model)."""
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


STRIP_PIXELS = 1 << 14  # a layer's output pixels above which inference runs it in strips of rows (the fastest here)


@dataclass(frozen=True)
class Strips:
    """A recurrent layer's state computed in strips: each strip's state tensors over its rows and
    the rows around them that its next output depends on, so that every strip's update reads
    whole, contiguous tensors (bf16 arithmetic on row slices of one tensor takes a slow path)."""

    parts: list[tuple[Tensor, ...]]


def _strip_plan(h: int, w: int, halo: int) -> list[tuple[int, int, int, int]]:
    """(first row, end, first row with halo, end with halo) of each strip of about STRIP_PIXELS;
    none shorter than its halo but the last, so that a neighbour holds every halo row whole."""
    rows = max(-(-h // -(-h * w // STRIP_PIXELS)), halo)
    return [(a, min(a + rows, h), max(a - halo, 0), min(a + rows + halo, h)) for a in range(0, h, rows)]


def _in_strips(cell: nn.Module, x: Tensor, state: tuple | Strips | None,
               after: Callable[[Tensor], Tensor]) -> tuple[Tensor, tuple | Strips]:
    """A recurrent layer, then `after` (which scales rows by a whole factor), in horizontal strips
    of its output at inference: the same numbers as one pass, but a large tile's gates and temporaries
    are alive one strip at a time, and all of a size, so the heap reuses them instead of growing
    (a large image's peak memory). Encoder and decoder both reconstruct through
    here, so they take one path. A strided layer's strips start on even input rows, so each
    strip's convolutions see the rows that the whole layer's would."""
    stride = cell.conv_x.stride[0]
    h, w = -(-x.shape[-2] // stride), -(-x.shape[-1] // stride)  # the output's
    if torch.is_grad_enabled() or torch.jit.is_tracing() or h * w <= STRIP_PIXELS:
        y, state = cell(x, state)
        return after(y), state
    halo = sum(m.kernel_size[0] // 2 for m in cell.modules() if isinstance(m, nn.Conv2d))  # a bound: convs in a chain
    plan = _strip_plan(h, w, halo)
    ys, parts = [], []
    for i, (a, b, lo, hi) in enumerate(plan):
        y, part = cell(x[..., lo * stride:hi * stride, :], None if state is None else state.parts[i])
        ys.append(after(y[..., a - lo:b - lo, :]))
        parts.append(part)
    for (_, b, lo, hi), (_, _, nlo, _), part, nxt in zip(plan, plan[1:], parts, parts[1:]):
        for mine, theirs in zip(part, nxt):  # the halo rows, from the neighbour that computed them whole
            theirs[..., :b - nlo, :] = mine[..., nlo - lo:b - lo, :]
            mine[..., b - lo:, :] = theirs[..., b - nlo:hi - nlo, :]
    return torch.cat(ys, dim=-2), Strips(parts)


def _through_cells(cells: nn.ModuleList, x: Tensor, states: list,
                   after: Callable[[int, Tensor], Tensor]) -> tuple[Tensor, list]:
    """x through each recurrent layer in turn, and `after(i, ·)` layer i, with its state: the
    output and the layers' new states."""
    new_states = []
    for i, (cell, state) in enumerate(zip(cells, states)):
        x, state = _in_strips(cell, x, state, lambda y, i=i: after(i, y))
        new_states.append(state)
    return x, new_states


class Encoder(nn.Module):
    """A strided conv and three strided conv-RNN layers: H×W×3 -> H/16×W/16×C."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d, cell = cfg.depth, cfg.encoder_cell
        self.conv = Conv2d(3, d(64), 3, 2, 1)
        self.rnns = nn.ModuleList(
            make_cell(cell, cin, cout, k_in=3, k_hidden=1, stride=2, copies=cfg.assoc_copies)
            for cin, cout in ((d(64), d(256)), (d(256), d(512)), (d(512), d(512)))
        )
        self.out_channels = d(512)

    def forward(self, x: Tensor, states: list) -> tuple[Tensor, list]:
        return _through_cells(self.rnns, self.conv(x), states, lambda i, y: y)


class Decoder(nn.Module):
    """A 1×1 conv and four conv-RNN layers, each followed by depth-to-space ×2: bits -> RGB."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d, cell = cfg.depth, cfg.decoder_cell
        self.conv = Conv2d(cfg.bits, d(512), 1)
        tail = cfg.depth(128, cfg.tail_width)
        layers = ((d(512), d(512), 1), (d(512) // 4, d(512), 1), (d(512) // 4, d(256), 3), (d(256) // 4, tail, 3))
        self.rnns = nn.ModuleList(make_cell(cell, cin, cout, k_in=3, k_hidden=kh, stride=1, copies=cfg.assoc_copies)
                                  for cin, cout, kh in layers)
        self.out = Conv2d(tail // 4, 3, 1)

    def forward(self, bits: Tensor, states: list) -> tuple[Tensor, list]:
        return _through_cells(self.rnns, self.conv(bits), states, self._after)

    def _after(self, i: int, x: Tensor) -> Tensor:
        """Depth-to-space after each layer; after the last, the output conv to RGB."""
        x = F.pixel_shuffle(x, 2)
        return torch.tanh(self.out(x)) / 2 if i == len(self.rnns) - 1 else x


class GainNet(nn.Module):
    """Residual-scaling gain G(x̂): one gain ≥ 1 per 16×16 block, from the previous reconstruction.

    Four strided 3×3 convs reach block resolution; nearest upsampling spreads the gain over the
    block. The decoder has x̂ too, so the gain costs no side information.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        chans = (3, width, width, width, width)
        convs: list[nn.Module] = []
        for cin, cout in zip(chans, chans[1:]):
            convs += [Conv2d(cin, cout, 3, 2, 1), nn.ReLU()]
        self.body = nn.Sequential(*convs, Conv2d(width, 1, 1))

    def forward(self, recon: Tensor) -> Tensor:
        gain = 1 + F.softplus(self.body(recon))
        return F.interpolate(gain, scale_factor=STRIDE, mode="nearest")


class RNNCodec(nn.Module):
    """Encoder, binarizer, decoder and the gain: a network (residual scaling) or one scalar per
    iteration (iteration gain)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.binarizer = Binarizer(self.encoder.out_channels, cfg.bits)
        self.decoder = Decoder(cfg)
        self.gain = GainNet(cfg.gain_width) if cfg.framework == "residual_scaling" else None
        # the residual shrinks over the iterations while the encoder's weights are shared: a gain
        # per iteration keeps its input, and so its bits' confidence, at one scale
        self.log_gain = nn.Parameter(torch.zeros(cfg.iterations)) if cfg.framework == "iteration_gain" else None

    def _gain(self, recon: Tensor, t: int) -> Tensor | None:
        if self.log_gain is not None:
            return self.log_gain[t].exp()
        return self.gain(recon) if self.gain is not None else None

    @torch.no_grad()
    def calibrate_gains(self, x: Tensor) -> list[float]:
        """Start the gains of a model trained without them at sqrt(E|r_0| / E|r_(t-1)|), measured
        on x. The full ratio would give every iteration's encoder input the scale of the first, but
        it also divides the trained decoder's corrections by that whole ratio at once; its square
        root costs a fine-tune far less to recover from and leaves the rest for the training to learn."""
        self.log_gain.zero_()
        _, recons = self.forward(x, self.cfg.iterations - 1)
        scale = x.abs().mean()
        ratios = [1.0] + [(scale / (x - r).abs().mean().clamp_min(1e-6)).item() for r in recons]
        self.log_gain.copy_(torch.tensor(ratios).log() / 2)
        return self.log_gain.exp().tolist()

    def _reconstruct(self, bits: Tensor, dec: list, recon: Tensor, gain: Tensor | None, t: int,
                     active: Tensor | None = None) -> tuple[Tensor, list]:
        """x̂_t from b_t: the one step the encoder and the decoder must compute identically.

        The bits are made contiguous first: the binarizer's output may be laid out channels-last,
        and a different layout can select a different convolution kernel, and so other roundings.
        Priming runs the decoder on the first bits a few extra times, so that its hidden states
        start out informed rather than at zero. `active` (N×1×h×w of 0/1, one per 16×16 block)
        keeps the reconstruction of stopped blocks as it was (spatially adaptive bit rates).
        """
        bits = bits.contiguous()
        for _ in range(self.cfg.priming if t == 0 else 0):
            _, dec = self.decoder(bits, dec)
        out, dec = self.decoder(bits, dec)
        if gain is not None:
            out = out / gain
        new = out if self.cfg.framework == "oneshot" else recon + out
        if active is not None:
            keep = F.interpolate(active, scale_factor=STRIDE, mode="nearest")
            new = keep * new + (1 - keep) * recon
        return new, dec

    def begin(self, x: Tensor) -> Step:
        """Where encoding x starts: no iteration done, x̂ = 0."""
        return Step(0, [None] * 3, [None] * 4, torch.zeros_like(x))

    def step(self, x: Tensor, at: Step, bf16: bool = False, mask: Tensor | None = None,
             decode: bool = True) -> tuple[Tensor, Step]:
        """One iteration from `at`: its bits and where it leaves the encoding. With `bf16`, the
        layers run in bf16 (CPU autocast) while the reconstruction accumulates in fp32. `mask`
        (N×1×h×w of 0/1, None for all) gives the blocks that get bits: a stopped block's bits are
        0, neither +1 nor −1, and its reconstruction stays. Without `decode`, the decoder is
        skipped: the bits only, for a last iteration, whose x̂ nobody needs. `at` is
        left as it was: a step returns a new state."""
        if at.recon is None:
            raise ValueError("no step after one that skipped the decoder")
        with _autocast(bf16):
            gain = self._gain(at.recon, at.t)
            residual = x - at.recon if gain is None else (x - at.recon) * gain
            code, enc = self.encoder(residual, at.enc)
            bits = self.binarizer(code)
            if mask is not None:
                bits = bits * mask.to(bits.dtype)
            if not decode:
                return bits, Step(at.t + 1, enc, at.dec, None)
            recon, dec = self._reconstruct(bits, at.dec, at.recon, gain, at.t, mask)
        return bits, Step(at.t + 1, enc, dec, recon)

    def steps(self, x: Tensor, bf16: bool = False, active: ActiveBlocks | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """Encode x one iteration at a time, yielding its bits and the reconstruction after it, so
        that an encoder can stop as soon as it has what it needs; `active(t, x̂_(t−1))` gives each
        iteration's mask (`step`). The caller's code between steps (an entropy coder) runs in its
        own precision."""
        at = self.begin(x)
        for t in range(self.cfg.iterations):
            bits, at = self.step(x, at, bf16, active(t, at.recon) if active is not None else None)
            yield bits, at.recon

    def forward(self, x: Tensor, iterations: int, active: ActiveBlocks | None = None) -> tuple[list[Tensor], list[Tensor]]:
        """Encode x for `iterations` steps: the bits and the reconstruction after each step."""
        bits_out, recons = [], []
        for bits, recon in itertools.islice(self.steps(x, active=active), iterations):
            bits_out.append(bits)
            recons.append(recon)
        return bits_out, recons

    def decode(self, bits: Iterable[Tensor], bf16: bool = False,
               active: Callable[[int], Tensor | None] | None = None) -> Iterator[Tensor]:
        """Replay the decoder over each iteration's bits, yielding x̂_1, x̂_2, … (`bf16`, and the
        blocks `active(t)` at iteration t, as in `steps`; stopped blocks' bits arrive as 0)."""
        dec: list = [None] * 4
        recon = None
        for t, b in enumerate(bits):  # the bits are drawn (entropy-decoded) outside the autocast
            if recon is None:
                recon = b.new_zeros(b.shape[0], 3, b.shape[2] * STRIDE, b.shape[3] * STRIDE, dtype=torch.float32)
            mask = active(t) if active is not None else None
            with _autocast(bf16):
                recon, dec = self.decode_step(b, dec, recon, t, mask)
            yield recon

    def decode_step(self, bits: Tensor, dec: list, recon: Tensor, t: int,
                    active: Tensor | None = None) -> tuple[Tensor, list]:
        """Decoding iteration t alone: x̂_t and the decoder's states, from b_t, x̂_(t−1) and the
        states before (`decode` runs these in turn; an exported decoder runs one)."""
        return self._reconstruct(bits, dec, recon, self._gain(recon, t), t, active)


class TorchBackend:
    """The module as a backend (backend.py): numpy in and out, in `precision` (fp32 or bf16), on
    the CPU, or decoding on the module's GPU. There cuDNN runs without TF32 and deterministically:
    TF32's 10-bit mantissas would move the pixels far more than the CPU's kernels do."""

    def __init__(self, net: RNNCodec, model_id: bytes, precision: str) -> None:
        self.net, self.model_id, self.cfg, self.precision = net, model_id, net.cfg, precision
        self.device = next(net.parameters()).device

    def begin(self, x: np.ndarray) -> tuple[Tensor, Step]:
        xt = torch.from_numpy(x)
        return xt, self.net.begin(xt)

    def step(self, state: tuple[Tensor, Step], decode: bool) -> tuple[np.ndarray, tuple[Tensor, Step]]:
        x, at = state
        with torch.inference_mode():
            bits, at = self.net.step(x, at, self.precision == "bf16", decode=decode)
        return (bits[0] > 0).to(torch.uint8).numpy(), (x, at)

    def decode_step(self, state: tuple[None, Step] | None, bits: np.ndarray,
                    mask: np.ndarray | None) -> tuple[None, Step]:
        b = torch.from_numpy(bits)[None].to(self.device)
        at = state[1] if state else Step(0, [None] * 3, [None] * 4, b.new_zeros(1, 3, *(s * STRIDE for s in b.shape[2:])))
        active = None if mask is None else torch.from_numpy(mask)[None, None].to(self.device, torch.float32)
        gpu = (torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False)
               if self.device.type == "cuda" else contextlib.nullcontext())
        with torch.inference_mode(), gpu, _autocast(self.precision == "bf16"):
            recon, dec = self.net.decode_step(b, at.dec, at.recon, at.t, active)
        return None, Step(at.t + 1, at.enc, dec, recon)

    def reconstruction(self, state: tuple[Tensor | None, Step]) -> np.ndarray:
        return state[1].recon.float().cpu().numpy()
