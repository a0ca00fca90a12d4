"""Training losses: L1 on the residual at every iteration, optionally SSIM-weighted (Johnston 2018)."""
from __future__ import annotations

import torch
from torch import Tensor

from ..quality import gaussian_window, ssim_map


class ResidualL1:
    """Mean over iterations of the mean |x − x̂_t|.

    With `ssim_weight` = α > 0, each pixel's L1 is weighted by 1 + α·(1 − SSIM(x, x̂_t)), the
    weights detached and normalised to mean 1 per patch: pixels whose structure is still wrong
    count more, which is Johnston et al.'s idea in a form that keeps the loss scale of plain L1.
    """

    def __init__(self, ssim_weight: float = 0.0) -> None:
        self.ssim_weight = ssim_weight
        self.window = gaussian_window()

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
