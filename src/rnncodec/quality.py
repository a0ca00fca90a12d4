"""Image quality as the codec measures it, for quality targets and for evaluation: PSNR and
MS-SSIM of an 8-bit reconstruction against its original (H×W×3 uint8 arrays)."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim, ssim
from torch import Tensor

MS_SSIM_MIN_SIDE = 161  # five scales of an 11-tap window: 10 · 2^4 + 1


def psnr_rgb(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR over all three channels (one MSE), 255 peak; identical images give inf."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def ms_ssim_rgb(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM (Wang 2003: 5 scales, 11×11 σ=1.5 Gaussian, range 255) per RGB channel, then the mean.

    pytorch_msssim averages its per-channel values over channels, which is exactly this. float32,
    as in CompressAI: within 1e-6 of float64 and twice as fast. Five scales need sides of at least
    161 px; a smaller image is scored by single-scale SSIM, and one under 11 px (no window fits)
    by 1 − MSE / 255², so that quality targets work on any image.
    """
    x, y = (torch.tensor(v, dtype=torch.float32).permute(2, 0, 1)[None] for v in (a, b))
    return float(_ms_ssim(x, y))


def _ms_ssim(x: Tensor, y: Tensor) -> Tensor:
    """`ms_ssim_rgb` of 1×3×H×W tensors in [0, 255], differentiable."""
    side = min(x.shape[-2:])
    if side < 11:
        return 1 - (x.double() - y.double()).square().mean() / 255.0**2
    if side < MS_SSIM_MIN_SIDE:
        return ssim(x, y, data_range=255, size_average=True)
    return ms_ssim(x, y, data_range=255, size_average=True)


def ms_ssim_gradient(original: np.ndarray, recon: Tensor) -> Tensor:
    """How `ms_ssim_rgb` of `recon`'s 8-bit rounding moves with each of its values: the gradient
    (straight through the rounding) for 1×3×H×W `recon` in [−0.5, 0.5], at least the original's
    size (0 beyond it). What the adaptive encoder prices each block's next iteration by."""
    h, w = original.shape[:2]
    with torch.inference_mode(False), torch.enable_grad():
        y = recon.float().clone().requires_grad_(True)  # a clone outside inference mode can carry a gradient
        q = ((y[..., :h, :w] + 0.5) * 255).clamp(0, 255)
        x = torch.tensor(original, dtype=torch.float32).permute(2, 0, 1)[None]
        _ms_ssim(x, q + (q.round() - q).detach()).backward()
    return y.grad


def gaussian_window(size: int = 7, sigma: float = 1.5) -> Tensor:
    """A normalised Gaussian, 3×1×size×size: one per RGB channel, for a grouped convolution."""
    g = torch.exp(-((torch.arange(size) - size // 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(3, 1, size, size).contiguous()


def ssim_map(x: Tensor, y: Tensor, window: Tensor) -> Tensor:
    """Per-pixel SSIM of N×3×H×W images in [−0.5, 0.5] (data range 1), same size as the input: the
    local quality that training weights its loss by and the adaptive encoder stops blocks by."""
    pad = window.shape[-1] // 2
    blur = lambda t: F.conv2d(F.pad(t, (pad,) * 4, mode="replicate"), window, groups=3)  # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
