"""Metrics against known values, and the psnr_hvsm input-range pitfall."""
from __future__ import annotations

import io
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import smooth_image
from PIL import Image
from pytorch_msssim import ms_ssim

from rnncodec.eval.metrics import all_metrics, bpp, ms_ssim_rgb, psnr_hvs, psnr_rgb, to_db

KODIM03 = Path(__file__).resolve().parents[2] / "shared/data/kodak/kodim03.png"


def _jpeg(pixels: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def test_identical_images():
    a = smooth_image(192, 176)
    m = all_metrics(a, a)
    assert m["psnr-rgb"] == math.inf
    assert m["ms-ssim-rgb"] == pytest.approx(1.0, abs=1e-6)
    assert m["ms-ssim-rgb-db"] > 50 or m["ms-ssim-rgb-db"] == math.inf
    assert m["psnr-hvs"] == m["psnr-hvs-m"] == 100.0  # the package's convention for zero error


def test_psnr_by_hand():
    a = np.zeros((8, 8, 3), np.uint8)
    b = a.copy()
    b[..., 0] = 30  # MSE = 30² / 3 = 300
    assert psnr_rgb(a, b) == pytest.approx(10 * math.log10(255**2 / 300))


def test_ms_ssim_is_the_mean_of_per_channel_values():
    a = smooth_image(192, 176, seed=1)
    b = _jpeg(a, 20)
    per_channel = [float(ms_ssim(torch.tensor(a[..., c], dtype=torch.float64)[None, None],
                                 torch.tensor(b[..., c], dtype=torch.float64)[None, None], data_range=255))
                   for c in range(3)]
    assert ms_ssim_rgb(a, b) == pytest.approx(np.mean(per_channel), abs=1e-5)
    assert 0.8 < ms_ssim_rgb(a, b) < 1


@pytest.mark.parametrize("shape", [(200, 333), (161, 170), (64, 48), (12, 11)])
def test_ms_ssim_is_pytorch_msssims_definition(shape):
    """Five scales, one (under 161 px) or none: the numpy score is the reference implementation's,
    run in float64 with the same, exactly normalised, Gaussian window."""
    from pytorch_msssim import ssim

    g = np.exp(-((np.arange(11) - 5) ** 2) / 4.5)
    win = torch.tensor(g / g.sum()).repeat(3, 1, 1)[:, None]  # 3×1×11, as pytorch_msssim lays it out
    for seed, noise in enumerate((5, 20, 60)):
        rng = np.random.default_rng(seed)
        a = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        b = np.clip(a + rng.normal(0, noise, a.shape), 0, 255).astype(np.uint8)
        x, y = (torch.tensor(v, dtype=torch.float64).permute(2, 0, 1)[None] for v in (a, b))
        reference = (ms_ssim if min(shape) >= 161 else ssim)(x, y, data_range=255, win=win)
        assert ms_ssim_rgb(a, b) == pytest.approx(float(reference), abs=1e-12)


@pytest.mark.parametrize("shape", [(200, 333), (64, 48), (8, 9)])
def test_one_original_scores_many_reconstructions_as_each_alone(shape):
    """A quality target scores tens of reconstructions against one original (MsSsim): each score,
    in any order, is the one ms_ssim_rgb gives that pair alone."""
    from rnncodec.quality import MsSsim

    rng = np.random.default_rng(7)
    a = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    recons = [np.clip(a + rng.normal(0, noise, a.shape), 0, 255).astype(np.uint8) for noise in (40, 3, 15, 3)]
    alone = [ms_ssim_rgb(a, r) for r in recons]
    score = MsSsim(a)
    assert [score(r) for r in recons] == alone
    assert alone[1] != alone[3] and alone[1] > alone[2] > alone[0]


@pytest.mark.parametrize("shape", [(200, 333), (64, 48), (8, 9)])
def test_a_float32_score_is_the_definitions_within_1e_5(shape):
    """A quality target scores in float32 (its scorer): each score within 1e-5 of the float64
    definition, and each gradient within 1e-3 of its largest value."""
    from rnncodec.quality import MsSsim
    from rnncodec.rate import Rate

    a = smooth_image(*shape, seed=4)
    rng = np.random.default_rng(4)
    exact, target = MsSsim(a), Rate(target_ms_ssim=0.95).scorer(a)
    for noise in (2, 8, 30):
        b = np.clip(a + rng.normal(0, noise, a.shape), 0, 255).astype(np.uint8)
        assert target(b) == pytest.approx(exact(b), abs=1e-5) and target(b) != exact(b)
        g = exact.gradient(b)
        np.testing.assert_allclose(target.gradient(b), g, atol=1e-3 * np.abs(g).max())


@pytest.mark.parametrize("shape", [(170, 181), (64, 48), (9, 12)])
def test_ms_ssim_gradient_is_the_scores_slope(shape):
    """The gradient the adaptive encoder prices blocks by (five scales, one, or none), written out
    by hand: each value's central difference of the score, and torch autograd's of the reference."""
    from pytorch_msssim import ssim

    from rnncodec.quality import ms_ssim_gradient

    rng = np.random.default_rng(3)
    a = np.clip(np.cumsum(rng.normal(0, 6, (*shape, 3)), 0) + 128, 0, 255).astype(np.uint8)
    b = np.clip(a + rng.normal(0, 12, a.shape), 0, 255).astype(np.uint8)
    grad = ms_ssim_gradient(a, b)
    for i in rng.integers(0, a.size, 6):
        at = np.unravel_index(i, a.shape)
        up, down = b.astype(np.float64), b.astype(np.float64)
        up[at] += 0.5
        down[at] -= 0.5
        assert grad[at] == pytest.approx(ms_ssim_rgb(a, up) - ms_ssim_rgb(a, down), rel=1e-3, abs=1e-12)
    if min(shape) >= 11:
        x = torch.tensor(a, dtype=torch.float64).permute(2, 0, 1)[None]
        y = torch.tensor(b, dtype=torch.float64).permute(2, 0, 1)[None].requires_grad_(True)
        (ms_ssim if min(shape) >= 161 else ssim)(x, y, data_range=255).backward()
        np.testing.assert_allclose(grad, y.grad[0].permute(1, 2, 0).numpy(), atol=1e-9)


def test_quality_scores_without_torch():
    """Quality targets score images in the codec, which must not pay for torch's import."""
    code = ("import sys, numpy as np; from rnncodec.quality import ms_ssim_rgb, psnr_rgb; "
            "a = np.random.default_rng(0).integers(0, 256, (170, 180, 3), dtype=np.uint8); "
            "print(ms_ssim_rgb(a, a[::-1].copy()), psnr_rgb(a, a[::-1].copy()), 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    score, psnr, torch_loaded = r.stdout.split()
    a = np.random.default_rng(0).integers(0, 256, (170, 180, 3), dtype=np.uint8)
    assert torch_loaded == "False"
    assert float(score) == ms_ssim_rgb(a, a[::-1].copy()) and float(psnr) == psnr_rgb(a, a[::-1].copy())


def test_db_and_bpp():
    assert to_db(0.9) == pytest.approx(10.0)
    assert to_db(0.99) == pytest.approx(20.0)
    assert to_db(1.0) == math.inf
    assert bpp(1000, 100, 80) == 1.0


def test_psnr_hvs_of_jpeg_is_sane():
    a = smooth_image(256, 256, seed=2)
    hvs, hvsm = psnr_hvs(a, _jpeg(a, 50))
    assert 30 < hvs < 50 and hvsm >= hvs
    assert psnr_hvs(a, _jpeg(a, 90))[0] > hvs


def test_psnr_hvs_crops_to_whole_blocks():
    a = smooth_image(100, 90, seed=3)  # not multiples of 8
    assert 25 < psnr_hvs(a, _jpeg(a, 50))[0] < 60


@pytest.mark.skipif(not KODIM03.exists(), reason="Kodak not on this machine")
def test_psnr_hvs_kodak_jpeg_q50_in_the_high_30s():
    a = np.asarray(Image.open(KODIM03).convert("RGB"))
    hvs, _ = psnr_hvs(a, _jpeg(a, 50))
    assert 36 < hvs < 41  # 38.3 dB; a [0, 1] input range would give ~60


def test_ms_ssim_scores_images_of_any_size():
    from rnncodec.quality import ms_ssim_rgb as score

    rng = np.random.default_rng(0)
    for side in (4, 64, 200):
        a = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        noisy = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
        assert score(a, a) == pytest.approx(1.0) and 0 < score(a, noisy) < 1


@pytest.mark.parametrize("side", [8, 64, 200])
def test_ms_ssim_gradient_predicts_the_change_of_the_score(side):
    """What the adaptive encoder prices blocks by: the first-order change of the score, for an
    image of any size."""
    from rnncodec.quality import ms_ssim_gradient
    from rnncodec.quality import ms_ssim_rgb as score

    rng = np.random.default_rng(1)
    a = rng.integers(30, 226, (side, side, 3), dtype=np.uint8)
    recon = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    slope = ms_ssim_gradient(a, recon)
    assert slope.shape == a.shape
    moved = np.round((a.astype(np.float64) + recon) / 2)  # halfway back to the original
    predicted = float((slope * (moved - recon)).sum())
    actual = score(a, moved) - score(a, recon)
    assert actual > 0 and predicted == pytest.approx(actual, rel=0.5)


@pytest.mark.parametrize("side", [8, 64, 200])
def test_ms_ssim_change_with_both_ends_gradients_is_near_exact(side):
    """The blocks' distortions an MS-SSIM target chooses counts by: with the gradients at both
    reconstructions (the trapezoid rule), the change of the score to within a few percent, where
    the first order, from one end, overrates it."""
    from rnncodec.quality import ms_ssim_change, ms_ssim_gradient
    from rnncodec.quality import ms_ssim_rgb as score

    rng = np.random.default_rng(1)
    a = rng.integers(30, 226, (side, side, 3), dtype=np.uint8)
    recon = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    moved = np.round((a.astype(np.float64) + recon) / 2).astype(np.uint8)
    recons, slopes = np.stack([recon, moved]), {0: ms_ssim_gradient(a, recon), 1: ms_ssim_gradient(a, moved)}
    actual = score(a, moved) - score(a, recon)
    both, first = (-ms_ssim_change(recons, 0, g)[1].sum() for g in (slopes, {0: slopes[0]}))
    assert ms_ssim_change(recons, 0, slopes)[0].max() == 0  # the reference's own blocks do not change
    assert both == pytest.approx(actual, rel=0.03) and first > 1.2 * actual
