"""Convolutional recurrent cells (Toderici et al. 2017, §2): every product W·x and U·h is a convolution.

Each cell maps (x, state) -> (output, state). A state of None means "all zeros", so callers never
need to know a cell's state layout or the spatial size after the input stride.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .conv import Conv2d

State = tuple[Tensor, ...]
Kernel = int | tuple[int, int]  # square, or (height, width)


def _same(k: Kernel) -> Kernel:
    """The padding that keeps a stride-1 conv's output the size of its input."""
    return k // 2 if isinstance(k, int) else (k[0] // 2, k[1] // 2)


class ConvRNNCell(nn.Module):
    """Shared plumbing: an input conv (may be strided) and a hidden conv, both producing `gates`·C maps."""

    in_gates: float = 4  # channels of each conv = gates × hidden
    hidden_gates: float = 4

    def __init__(self, in_ch: int, hidden: int, k_in: Kernel, k_hidden: Kernel, stride: int = 1) -> None:
        super().__init__()
        self.hidden = hidden
        self.conv_x = Conv2d(in_ch, int(self.in_gates * hidden), k_in, stride, _same(k_in))
        self.conv_h = Conv2d(hidden, int(self.hidden_gates * hidden), k_hidden, 1, _same(k_hidden), bias=False)

    def zeros(self, like: Tensor, channels: int) -> Tensor:
        return like.new_zeros(like.shape[0], channels, like.shape[2], like.shape[3])


class ConvLSTM(ConvRNNCell):
    """LSTM: c' = f⊙c + i⊙tanh(j), h' = o⊙tanh(c')."""

    def forward(self, x: Tensor, state: State | None) -> tuple[Tensor, State]:
        gx = self.conv_x(x)
        if state is None:  # h = c = 0: U·h and f⊙c vanish, exactly, so the first step skips them
            i, _, o, j = gx.chunk(4, dim=1)
            c = torch.sigmoid(i) * torch.tanh(j)
        else:
            h, c = state
            i, f, o, j = (gx + self.conv_h(h)).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(j)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


class ConvGRU(ConvRNNCell):
    """GRU: h' = (1−z)⊙h + z⊙tanh(W·x + U·(r⊙h))."""

    in_gates, hidden_gates = 3, 2

    def __init__(self, in_ch: int, hidden: int, k_in: int, k_hidden: int, stride: int = 1) -> None:
        super().__init__(in_ch, hidden, k_in, k_hidden, stride)
        self.conv_rh = Conv2d(hidden, hidden, k_hidden, 1, k_hidden // 2, bias=False)

    def forward(self, x: Tensor, state: State | None) -> tuple[Tensor, State]:
        gx = self.conv_x(x)
        xz, xr, xn = gx.chunk(3, dim=1)
        if state is None:  # h = 0: every U·h and (1−z)⊙h vanish, exactly, so the first step skips them
            h = torch.sigmoid(xz) * torch.tanh(xn)
        else:
            h = state[0]
            hz, hr = self.conv_h(h).chunk(2, dim=1)
            z, r = torch.sigmoid(xz + hz), torch.sigmoid(xr + hr)
            h = (1 - z) * h + z * torch.tanh(xn + self.conv_rh(r * h))
        return h, (h,)


class ResidualGRU(ConvGRU):
    """GRU with a ResNet-style skip: output = h' + P·x, P a 1×1 conv with the input's stride.

    The state stays the plain GRU state h'; only what the next layer sees gets the skip, so the
    recurrence stays bounded while gradients reach the layer below directly.
    """

    def __init__(self, in_ch: int, hidden: int, k_in: int, k_hidden: int, stride: int = 1) -> None:
        super().__init__(in_ch, hidden, k_in, k_hidden, stride)
        self.skip = Conv2d(in_ch, hidden, 1, stride, bias=False)

    def forward(self, x: Tensor, state: State | None) -> tuple[Tensor, State]:
        h, new_state = super().forward(x, state)
        return h + self.skip(x), new_state


def _cmul(a: Tensor, b: Tensor) -> Tensor:
    """Complex product of tensors holding (real, imag) halves along the channel dim (-3)."""
    ar, ai = a.chunk(2, dim=-3)
    br, bi = b.chunk(2, dim=-3)
    return torch.cat((ar * br - ai * bi, ar * bi + ai * br), dim=-3)


def _bound(z: Tensor) -> Tensor:
    """Danihelka et al.'s bound: scale each complex number to modulus at most 1."""
    re, im = z.chunk(2, dim=-3)
    modulus = torch.sqrt(re * re + im * im + 1e-12).clamp(min=1.0)
    return z / torch.cat((modulus, modulus), dim=-3)


class AssociativeLSTM(ConvRNNCell):
    """Associative LSTM (Danihelka et al. 2016): holographic complex memory with redundant copies.

    The hidden state has C real channels = C/2 complex units. Gates f, i, o are real (C/2 each);
    the candidate u and the keys r_in, r_out are complex (C real channels each). Each of the
    `copies` memory traces sees the keys under a fixed channel permutation, which decorrelates
    the retrieval noise; reading averages the copies.
    """

    in_gates = hidden_gates = 4.5  # real gates f, i, o (C/2 each), complex u, r_in, r_out (C each)

    def __init__(self, in_ch: int, hidden: int, k_in: int, k_hidden: int, stride: int = 1, copies: int = 4) -> None:
        if hidden % 2:
            raise ValueError("associative LSTM needs an even hidden depth")
        super().__init__(in_ch, hidden, k_in, k_hidden, stride)
        self.copies = copies
        gen = torch.Generator().manual_seed(0)
        half = hidden // 2
        perms = [torch.arange(half)] + [torch.randperm(half, generator=gen) for _ in range(copies - 1)]
        # index over the real||imag layout: the same permutation for both halves
        self.register_buffer("perm", torch.stack([torch.cat((p, p + half)) for p in perms]), persistent=False)

    def _keys(self, r: Tensor) -> Tensor:
        """(B, C, H, W) key -> (B, copies, C, H, W), one permuted copy per memory trace."""
        return r[:, self.perm]

    def forward(self, x: Tensor, state: State | None) -> tuple[Tensor, State]:
        gx = self.conv_x(x)
        if state is None:
            h = self.zeros(gx, self.hidden)
            c = h.new_zeros(h.shape[0], self.copies, *h.shape[1:])
        else:
            h, c = state
        g = gx + self.conv_h(h)
        half = self.hidden // 2
        gates, u, r_in, r_out = torch.split(g, [3 * half, self.hidden, self.hidden, self.hidden], dim=1)
        f, i, o = (torch.sigmoid(t).repeat(1, 2, 1, 1) for t in gates.chunk(3, dim=1))
        u, r_in, r_out = _bound(u), _bound(r_in), _bound(r_out)
        c = f.unsqueeze(1) * c + _cmul(self._keys(r_in), (i * u).unsqueeze(1))
        h = o * _bound(_cmul(self._keys(r_out), c).mean(dim=1))
        return h, (h, c)


_CELLS = {"lstm": ConvLSTM, "gru": ConvGRU, "residual_gru": ResidualGRU, "assoc_lstm": AssociativeLSTM}


def make_cell(kind: str, in_ch: int, hidden: int, k_in: int, k_hidden: int, stride: int = 1, copies: int = 4) -> nn.Module:
    """Build a cell by its config name."""
    if kind == "assoc_lstm":
        return AssociativeLSTM(in_ch, hidden, k_in, k_hidden, stride, copies)
    return _CELLS[kind](in_ch, hidden, k_in, k_hidden, stride)
