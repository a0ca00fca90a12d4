"""Binarizer (Toderici et al. 2016, 2017): 1×1 conv, tanh, then ±1 bits."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .conv import Conv2d


class Binarizer(nn.Module):
    """Stochastic ±1 with a straight-through gradient while training; sign() at inference (and,
    with `stochastic` off, in training too).

    In training, b = +1 with probability (1 + x)/2, so E[b] = x and the gradient of x passes
    straight through. At inference 0 maps to +1 so that every output is a valid bit.
    """

    def __init__(self, in_ch: int, bits: int) -> None:
        super().__init__()
        self.conv = Conv2d(in_ch, bits, 1, bias=False)
        self.stochastic = True  # False: train on sign() bits too, the bits the codec writes

    def forward(self, x: Tensor) -> Tensor:
        x = torch.tanh(self.conv(x))
        if self.training and self.stochastic:
            # drawn and compared in float32: under bf16 autocast the threshold's rounding (8 bits
            # of mantissa) would bias E[b], most where small late-iteration activations sit
            p = (1 + x.float()) / 2
            bits = torch.where(torch.rand_like(p) <= p, 1.0, -1.0).to(x.dtype)
        else:
            bits = torch.where(x >= 0, 1.0, -1.0).to(x.dtype)
        return bits + (x - x.detach()) if self.training else bits  # exactly ±1 forward, identity gradient backward
