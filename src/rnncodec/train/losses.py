"""Training losses: L1 on the residual at every iteration, optionally SSIM-weighted (Johnston 2018)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _gaussian_window(size: int = 7, sigma: float = 1.5) -> Tensor:
    g = torch.exp(-((torch.arange(size) - size // 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(3, 1, size, size).contiguous()


def ssim_map(x: Tensor, y: Tensor, window: Tensor) -> Tensor:
    """Per-pixel SSIM of images in [−0.5, 0.5] (data range 1), same size as the input."""
    pad = window.shape[-1] // 2
    blur = lambda t: F.conv2d(F.pad(t, (pad,) * 4, mode="replicate"), window, groups=3)  # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


class ResidualL1:
    """Mean over iterations of the mean |x − x̂_t|.

    With `ssim_weight` = α > 0, each pixel's L1 is weighted by 1 + α·(1 − SSIM(x, x̂_t)), the
    weights detached and normalised to mean 1 per patch: pixels whose structure is still wrong
    count more, which is Johnston et al.'s idea in a form that keeps the loss scale of plain L1.
    """

    def __init__(self, ssim_weight: float = 0.0) -> None:
        self.ssim_weight = ssim_weight
        self.window = _gaussian_window()

    def per_iteration(self, x: Tensor, recons: list[Tensor]) -> Tensor:
        losses = []
        for recon in recons:
            err = (x - recon).abs()
            if self.ssim_weight:
                with torch.no_grad():
                    w = 1 + self.ssim_weight * (1 - ssim_map(x.float(), recon.float(), self.window)).clamp(0, 2)
                    w = w / w.mean(dim=(1, 2, 3), keepdim=True)
                err = err * w
            losses.append(err.mean())
        return torch.stack(losses)

    def __call__(self, x: Tensor, recons: list[Tensor]) -> Tensor:
        return self.per_iteration(x, recons).mean()
