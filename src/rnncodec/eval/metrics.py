"""Image quality metrics as learned-codec papers report them (Toderici et al. 2017, §5).

All take H×W×3 uint8 arrays: the original and the 8-bit reconstruction a decoder really outputs.
"""
from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import torch
from pytorch_msssim import ms_ssim

with contextlib.redirect_stdout(io.StringIO()):  # psnr_hvsm prints a note about its optional torch backend
    import psnr_hvsm

_HVS = psnr_hvsm.BACKENDS.get("cpp", psnr_hvsm.BACKENDS["numpy"])["psnr_hvs_hvsm"]


def psnr_rgb(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR over all three channels (one MSE), 255 peak; identical images give inf."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def ms_ssim_rgb(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM (Wang 2003: 5 scales, 11×11 σ=1.5 Gaussian, range 255) per RGB channel, then the mean.

    pytorch_msssim averages its per-channel values over channels, which is exactly this. float32,
    as in CompressAI: within 1e-6 of float64 and twice as fast. Sides must exceed 160 px, the
    reach of five scales of an 11-tap window.
    """
    x, y = (torch.tensor(v, dtype=torch.float32).permute(2, 0, 1)[None] for v in (a, b))
    return float(ms_ssim(x, y, data_range=255, size_average=True))


def to_db(ms_ssim_value: float) -> float:
    """MS-SSIM in dB, −10·log10(1 − x): spreads out the values near 1 where codecs differ."""
    return math.inf if ms_ssim_value >= 1 else -10 * math.log10(1 - ms_ssim_value)


def psnr_hvs(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(PSNR-HVS, PSNR-HVS-M) on BT.601 luma, in dB; identical images give 100, the package's cap.

    psnr_hvsm wants luma normalised to [0, 1]; its bt601ycbcr takes 8-bit RGB *codes* (0–255) and
    divides by 255 itself. Feeding it [0, 1] RGB is the classic pitfall: luma then collapses to
    about 16/255 and every image scores near 60 dB. Sides are cropped to multiples of 8, as the
    reference implementation skips partial 8×8 blocks.
    """
    h, w = (a.shape[0] // 8) * 8, (a.shape[1] // 8) * 8
    ya, yb = (psnr_hvsm.bt601ycbcr_np(v[:h, :w])[0] for v in (a, b))
    hvs, hvsm = _HVS(ya, yb)
    return float(hvs), float(hvsm)


def bpp(num_bytes: int, height: int, width: int) -> float:
    """Bits per pixel of a file of `num_bytes`, over the original image's pixel count."""
    return num_bytes * 8 / (height * width)


def all_metrics(original: np.ndarray, reconstruction: np.ndarray) -> dict[str, float]:
    """Every metric the results files carry, keyed as in CompressAI's JSON."""
    msssim = ms_ssim_rgb(original, reconstruction)
    hvs, hvsm = psnr_hvs(original, reconstruction)
    return {"psnr-rgb": psnr_rgb(original, reconstruction), "ms-ssim-rgb": msssim,
            "ms-ssim-rgb-db": to_db(msssim), "psnr-hvs": hvs, "psnr-hvs-m": hvsm}
