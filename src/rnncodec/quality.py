"""Image quality as the codec measures it, for quality targets and for evaluation: PSNR and
MS-SSIM of an 8-bit reconstruction against its original (H×W×3 uint8 arrays)."""
from __future__ import annotations

import math

import numpy as np
import torch
from pytorch_msssim import ms_ssim, ssim

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
    side = min(a.shape[:2])
    if side < 11:
        return 1 - float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)) / 255.0**2
    x, y = (torch.tensor(v, dtype=torch.float32).permute(2, 0, 1)[None] for v in (a, b))
    if side < MS_SSIM_MIN_SIDE:
        return float(ssim(x, y, data_range=255, size_average=True))
    return float(ms_ssim(x, y, data_range=255, size_average=True))
