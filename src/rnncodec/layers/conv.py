"""A Conv2d whose fp32 CPU inference gives the same numbers at every thread count.

PyTorch picks a 1×1 convolution's kernel by thread count: oneDNN when several threads run, its
own GEMM path at one thread ("THNN is faster when single-threaded"). The two round differently,
so a file decoded at 1 thread came out a few pixel values away from the same file at 2 (issue 10).
Each path alone is thread-count independent, so fp32 1×1 convolutions on the CPU go to oneDNN
whenever oneDNN is on: the result is then what 2 threads always gave, and no slower (oneDNN matched
or beat the GEMM path at one thread here, training included). bf16 autocast, other devices, and
builds without oneDNN or with it switched off keep PyTorch's own choice.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class Conv2d(nn.Conv2d):
    def _conv_forward(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if (self.kernel_size == (1, 1) and self.padding_mode == "zeros" and x.device.type == "cpu"
                and x.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
                and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
            return torch.mkldnn_convolution(x, weight, bias, self.padding, self.stride,
                                            self.dilation, self.groups)
        return super()._conv_forward(x, weight, bias)
