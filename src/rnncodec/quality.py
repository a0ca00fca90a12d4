"""Image quality as the codec measures it, for quality targets and for evaluation: PSNR and
MS-SSIM of an 8-bit reconstruction against its original (H×W×3 uint8 arrays), in numpy, so that
quality targets need no torch. `MsSsim` keeps an original's terms for the many reconstructions a
target scores, and gives MS-SSIM's gradient, which the adaptive encoder prices blocks by, written
out by hand (the adjoint of each step).

Then the distortions d_b(c) of each 16×16 block after c iterations, which rate control chooses
block counts by (rate.py). Below them, training's torch helpers (the SSIM map): they import torch
when called, so importing this module does not.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .config import STRIDE

if TYPE_CHECKING:
    from torch import Tensor

MS_SSIM_MIN_SIDE = 161  # five scales of an 11-tap window: 10 · 2^4 + 1
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, finest scale first
_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2  # SSIM's stabilisers for a data range of 255
_WINDOW = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
_WINDOW /= _WINDOW.sum()  # the 11-tap Gaussian of σ = 1.5, one axis of the separable window
_BAND = 65536  # values in a band of rows that `_blur` filters at a time: its intermediate fits in a core's cache


def psnr_rgb(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR over all three channels (one MSE), 255 peak; identical images give inf."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def ms_ssim_rgb(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM (Wang 2003: 5 scales, 11×11 σ=1.5 Gaussian, range 255) per RGB channel, then the mean.

    The definition pytorch_msssim (and so CompressAI) computes: valid filtering, 2×2 average
    pooling with zero padding of odd sides, negative terms clipped to 0. Here in float64 with the
    window normalised in float64 (pytorch_msssim rounds it to float32 first), so the values are
    that definition's to within float64 rounding. Five scales need sides of at least 161 px; a
    smaller image is scored by single-scale SSIM, and one under 11 px (no window fits) by
    1 − MSE / 255², so that quality targets work on any image.
    """
    return MsSsim(a)(b)


class MsSsim:
    """`ms_ssim_rgb` against one original, which scores many reconstructions of it, as a quality
    target does: the original's scales and windowed moments are computed once, three maps per
    channel and scale, and each score computes the reconstruction's alone. In `dtype`: float64
    gives the definition to within its rounding; a target scores in float32, as pytorch_msssim
    does float32 images, within 1e-5 of it (tests/test_metrics.py) at half the memory traffic."""

    def __init__(self, original: np.ndarray, dtype: type = np.float64) -> None:
        self.dtype = dtype
        self.channels = [_Reference(original[..., c].astype(dtype)) for c in range(3)]

    def __call__(self, recon: np.ndarray) -> float:
        return float(np.mean([ref.score(recon[..., c].astype(self.dtype)) for c, ref in enumerate(self.channels)]))

    def gradient(self, recon: np.ndarray) -> np.ndarray:
        """How the score of `recon` (H×W×3 uint8) moves with each of its values: H×W×3 float32,
        per 8-bit unit, through every step of the score (product of the scales' terms, the 2×2
        means, the windows' sums). What the adaptive encoder prices each block's next iteration by."""
        grad = np.empty(recon.shape, np.float32)
        for c, ref in enumerate(self.channels):
            grad[..., c] = ref.gradient(recon[..., c].astype(self.dtype)) / 3
        return grad


class _Reference:
    """One channel of an original (H×W): at each scale its pixels, windowed mean and variance."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x if min(x.shape) < len(_WINDOW) else None  # too small for a window: scored by its MSE
        self.scales = [] if self.x is not None else [x]
        while len(self.scales) < len(MS_SSIM_WEIGHTS) and min(x.shape) >= MS_SSIM_MIN_SIDE:
            self.scales.append(_halve(self.scales[-1]))
        self.moments = []
        for scale in self.scales:
            mx = _blur(scale)
            self.moments.append((mx, _blur(scale * scale) - mx * mx))

    def score(self, y: np.ndarray) -> float:
        """`ms_ssim_rgb`'s value for this channel of a reconstruction, H×W float64."""
        if self.x is not None:
            return float(1 - np.mean((self.x - y) ** 2) / 255.0**2)
        terms = [term for term, _, _ in self._terms(y, False)]
        if len(terms) == 1:  # single-scale SSIM: not clipped
            return terms[0]
        return float(np.prod(np.maximum(terms, 0.0) ** np.array(MS_SSIM_WEIGHTS)))

    def gradient(self, y: np.ndarray) -> np.ndarray:
        """The gradient of `score(y)` with respect to y."""
        if self.x is not None:
            return -2 * (y - self.x) / (255.0**2 * y.size)
        parts = self._terms(y, True)
        if len(parts) == 1:
            return parts[0][1]
        terms = [max(term, 0.0) for term, _, _ in parts]
        score = float(np.prod(np.array(terms) ** np.array(MS_SSIM_WEIGHTS)))
        if score == 0:
            return np.zeros_like(y)
        grads = [grad if term > 0 else 0.0 for term, grad, _ in parts]  # a clipped term passes no gradient
        g = score * MS_SSIM_WEIGHTS[-1] / terms[-1] * grads[-1]  # d score = score · Σ w_i d t_i / t_i
        for i in reversed(range(len(parts) - 1)):
            g = _halve_adjoint(g, parts[i][2].shape) + score * MS_SSIM_WEIGHTS[i] / terms[i] * grads[i]
        return g

    def _terms(self, y: np.ndarray, gradient: bool) -> list[tuple[float, np.ndarray | None, np.ndarray]]:
        """Each scale's term (contrast-structure; SSIM at the last), its gradient with `gradient`,
        and y at that scale."""
        parts = []
        for i in range(len(self.scales)):
            last = i + 1 == len(self.scales)
            parts.append((*self._ssim(i, y, last, gradient), y))
            y = y if last else _halve(y)
        return parts

    def _ssim(self, i: int, y: np.ndarray, full: bool, gradient: bool = False) -> tuple[float, np.ndarray | None]:
        """At scale i, the mean of SSIM's map (`full`) or of its contrast-structure term, and
        with `gradient` its gradient with respect to y: the map's derivatives by the windowed
        means of y, y² and xy, carried back through the window."""
        x, (mx, vx), my = self.scales[i], self.moments[i], _blur(y)
        a2 = 2 * (_blur(x * y) - mx * my) + _C2
        b2 = vx + _blur(y * y) - my * my + _C2
        cs = a2 / b2
        a1, b1 = (2 * mx * my + _C1, mx * mx + my * my + _C1) if full else (None, None)
        f = a1 / b1 * cs if full else cs
        if not gradient:
            return float(np.mean(f, dtype=np.float64)), None
        if full:
            d_my = 2 * mx * (a2 - a1) / (b1 * b2) - f * 2 * my / b1 + f * 2 * my / b2
            d_yy, d_xy = -f / b2, 2 * a1 / (b1 * b2)
        else:
            d_my, d_yy, d_xy = 2 * (my * cs - mx) / b2, -cs / b2, 2 / b2
        grad = _blur_adjoint(d_my) + 2 * y * _blur_adjoint(d_yy) + x * _blur_adjoint(d_xy)
        return float(np.mean(f, dtype=np.float64)), grad / f.size


def _blur(x: np.ndarray) -> np.ndarray:
    """The Gaussian window over H×W, separably, where it fits whole ('valid'), a band of rows at a
    time, whose intermediate stays in the CPU's cache, as a whole photo's does not."""
    n, rows = len(_WINDOW), max(1, _BAND // x.shape[1])
    out = np.empty((x.shape[0] - n + 1, x.shape[1] - n + 1), x.dtype)
    for r in range(0, len(out), rows):
        columns = _taps(x[r : r + rows + n - 1], 0)
        out[r : r + len(columns)] = _taps(columns, 1)
    return out


def _taps(a: np.ndarray, axis: int) -> np.ndarray:
    """The window along one axis (0 or 1) of a 2-D array, where it fits whole: a sum of shifted
    copies, each pair of taps the window's symmetry makes equal taken with one product."""
    n, half = len(_WINDOW), len(_WINDOW) // 2
    m = a.shape[axis] - n + 1
    part = (lambda i: a[i : i + m]) if axis == 0 else (lambda i: a[:, i : i + m])
    window = _WINDOW.astype(a.dtype)
    out = window[half] * part(half)
    for i in range(half):
        out += window[i] * (part(i) + part(n - 1 - i))
    return out


def _halve(x: np.ndarray) -> np.ndarray:
    """2×2 means of H×W; an odd side first gets a zero row (column) on each side, as the average
    pooling of the reference implementation does, and the zero counts in the mean."""
    h, w = x.shape
    x = np.pad(x, ((h % 2, h % 2), (w % 2, w % 2)))[: h + h % 2, : w + w % 2]
    return (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2]) / 4


def ms_ssim_gradient(original: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """How `ms_ssim_rgb(original, recon)` moves with each of `recon`'s values (`MsSsim.gradient`)."""
    return MsSsim(original).gradient(recon)


def _blur_adjoint(g: np.ndarray) -> np.ndarray:
    """The transpose of `_blur`: each output's window spread back over the pixels it read, which
    for a symmetric window is the window over `g` padded with zeros ('full')."""
    return _blur(np.pad(g, len(_WINDOW) - 1))


def _halve_adjoint(g: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The transpose of `_halve` for an H×W input: each mean's gradient back over its four pixels,
    less the zero padding of odd sides."""
    h, w = shape
    up = np.repeat(np.repeat(g, 2, 0), 2, 1) / 4
    return up[h % 2 : h % 2 + h, w % 2 : w % 2 + w]


# -- per block: rate control's distortions ----------------------------------------------
# masked_error's variance at which a block's error counts half: a block's contrast masking.
FLAT = 1e-2


def block_sums(values: np.ndarray) -> np.ndarray:
    """Sums over 16×16 blocks of (…, H, W) values (zero beyond the edges): (…, ⌈H/16⌉, ⌈W/16⌉)."""
    v = np.pad(values, [(0, 0)] * (values.ndim - 2) + [(0, -n % STRIDE) for n in values.shape[-2:]])
    return v.reshape(*v.shape[:-2], v.shape[-2] // STRIDE, STRIDE, v.shape[-1] // STRIDE, STRIDE).sum(axis=(-3, -1))


def squared_error(recons: np.ndarray, original: np.ndarray) -> np.ndarray:
    """d_b(c): each block's mean squared error (pixels in [−0.5, 0.5]) after c iterations, from a
    tile's (T+1)×H×W×3 8-bit reconstructions after 0…T."""
    error = ((recons.astype(np.float32) - original.astype(np.float32)) ** 2).sum(-1)
    return block_sums(error) / (255.0**2 * 3 * STRIDE**2)


def masked_error(recons: np.ndarray, original: np.ndarray, flat: float = FLAT) -> np.ndarray:
    """d_b(c): `squared_error` weighted by flat / (σ²_b + flat), σ²_b the variance of the original
    block's luma (in [0, 1]): an error shows less in a busy block, as SSIM's local variance says."""
    luma = original.astype(np.float32) @ np.float32([0.299, 0.587, 0.114]) / 255.0
    pixels = block_sums(np.ones_like(luma))
    variance = block_sums(luma**2) / pixels - (block_sums(luma) / pixels) ** 2
    return squared_error(recons, original) * (flat / (variance + flat))


def ms_ssim_change(recons: np.ndarray, reference: int, gradients: dict[int, np.ndarray]) -> np.ndarray:
    """d_b(c): minus each block's change in the image's MS-SSIM from the reconstruction after
    `reference` iterations to the one after c (`gradients[c]`: the score's gradient after c
    iterations, H×W×3, per 8-bit unit; `reference`'s at least). Where c has its own, by the
    trapezoid rule along the straight path between them, exact where the score is quadratic, as
    near its peak, where the first order rates every other count too high; else to first order."""
    before, slope = recons[reference].astype(np.float32), gradients[reference]
    change = [((r.astype(np.float32) - before) * (slope if c not in gradients else (slope + gradients[c]) / 2)).sum(-1)
              for c, r in enumerate(recons)]
    return -block_sums(np.stack(change))


# -- torch helpers: training's ------------------------------------------------------------
def gaussian_window(size: int = 7, sigma: float = 1.5) -> Tensor:
    """A normalised Gaussian, 3×1×size×size: one per RGB channel, for a grouped convolution."""
    import torch

    g = torch.exp(-((torch.arange(size) - size // 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(3, 1, size, size).contiguous()


def ssim_map(x: Tensor, y: Tensor, window: Tensor) -> Tensor:
    """Per-pixel SSIM of N×3×H×W images in [−0.5, 0.5] (data range 1), same size as the input: the
    local quality that training weights its loss by and the adaptive encoder stops blocks by."""
    import torch.nn.functional as F

    pad = window.shape[-1] // 2
    blur = lambda t: F.conv2d(F.pad(t, (pad,) * 4, mode="replicate"), window, groups=3)  # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
