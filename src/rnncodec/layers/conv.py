"""A Conv2d whose fp32 CPU inference gives the same numbers at every thread count.

PyTorch picks a convolution's kernel by thread count and input size: oneDNN for some, its own
GEMM or im2col paths for others (1×1 convolutions at one thread, 3×3 ones on small inputs). The
paths round differently, so a file decoded at 1 thread came out a few pixel values away from the
same file at 2. oneDNN alone gives the same numbers at every thread count, so fp32 convolutions on
the CPU go to oneDNN whenever oneDNN is on. bf16 autocast, other devices, and builds without oneDNN
or with it switched off keep PyTorch's own choice.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class Conv2d(nn.Conv2d):
    def _conv_forward(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if (self.padding_mode == "zeros" and x.device.type == "cpu"
                and x.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
                and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
            return torch.mkldnn_convolution(x, weight, bias, self.padding, self.stride,
                                            self.dilation, self.groups)
        return super()._conv_forward(x, weight, bias)
