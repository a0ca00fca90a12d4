"""Image quality metrics as learned-codec papers report them (Toderici et al. 2017, §5).

All take H×W×3 uint8 arrays: the original and the 8-bit reconstruction a decoder really outputs.
"""
from __future__ import annotations

import contextlib
import io
import math

import numpy as np

from ..quality import ms_ssim_rgb, psnr_rgb  # the runtime's own; eval reports them too

with contextlib.redirect_stdout(io.StringIO()):  # psnr_hvsm prints a note about its optional torch backend
    import psnr_hvsm

_HVS = psnr_hvsm.BACKENDS.get("cpp", psnr_hvsm.BACKENDS["numpy"])["psnr_hvs_hvsm"]


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
