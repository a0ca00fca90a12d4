"""Per-block iteration counts for an MS-SSIM target: which distortion proxy allocates best? (issue 13)

    .venv/bin/python tools/sabr_proxies.py IMAGE [IMAGE …] [--targets 0.93 0.95 0.97] [--rounds 3]

A prototype of the block-count choice (`rate.choose`), without coding: each image's top-left crop (at most
512×768) is encoded for 16 iterations (bf16), each block's cost after c iterations counted as the
integer context model's code length of its bits (per block-bit, so uniform c whole iterations
cost about c), and for each target the counts minimise proxy + λ·cost, λ bisected until the
composed reconstruction reaches the target. Proxies: the 4×4-averaged squared error (what the
codec uses), the same with costs in coded bits, a multi-scale error normalised by the local
variance (each scale's squared error over 2σ² + C₂, weighted as MS-SSIM weighs its scales), and
MS-SSIM linearised around the current counts (`--rounds` relinearisations from uniform). Uniform
is whole iterations interpolated to the target. Training images only: Kodak is for evaluation.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pytorch_msssim import ms_ssim

from rnncodec.entropy.integer import KIND
from rnncodec.entropy.integer_model import build_integer_net
from rnncodec.stored import load_weights
from rnncodec.zoo import DEFAULT_WEIGHTS, load_image_model

ctx = build_integer_net(load_weights(DEFAULT_WEIGHTS[KIND]))  # every row at once: the torch graph
net = load_image_model().net.eval()
S = 16


W = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # MS-SSIM's weights of its five scales
C2 = 0.03**2  # SSIM's contrast constant, pixels in [-0.5, 0.5]


def msssim_t(y: torch.Tensor, x255: torch.Tensor) -> torch.Tensor:
    """MS-SSIM of y (in [-0.5, 0.5]) rounded as a decoder's 8 bits would be, differentiable."""
    q = ((y + 0.5) * 255).clamp(0, 255)
    return ms_ssim(q + (q.round() - q).detach(), x255, data_range=255, size_average=True)


def compose(recons: torch.Tensor, counts: np.ndarray) -> torch.Tensor:
    """Each block's reconstruction after its count of iterations."""
    idx = torch.from_numpy(np.kron(counts, np.ones((S, S), np.uint8))).long()
    return torch.gather(recons, 0, idx[None, None].expand(1, 3, *idx.shape))


def bisect(d: np.ndarray, cost: np.ndarray, meas: Callable[[np.ndarray], float], aim: float) -> np.ndarray:
    """Counts minimising d + λ·cost for the largest λ whose composition reaches `aim`."""
    def counts(log_lam: float) -> np.ndarray:
        return np.argmin(d + 10.0**log_lam * cost, axis=0).astype(np.uint8)

    lo, hi = -12.0, 2.0
    for _ in range(14):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if meas(counts(mid)) >= aim else (lo, mid)
    return counts(lo)


def gauss(v: torch.Tensor) -> torch.Tensor:
    """SSIM's 11-tap σ = 1.5 Gaussian window, per channel, edges replicated."""
    g = torch.exp(-((torch.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    g = (g / g.sum()).float()
    c = v.shape[1]
    v = F.conv2d(F.pad(v, (5, 5, 0, 0), mode="replicate"), g.view(1, 1, 1, 11).expand(c, 1, 1, 11).contiguous(), groups=c)
    return F.conv2d(F.pad(v, (0, 0, 5, 5), mode="replicate"), g.view(1, 1, 11, 1).expand(c, 1, 11, 1).contiguous(), groups=c)


def variance_normalised(x: torch.Tensor, recons: torch.Tensor) -> np.ndarray:
    """Per count and block: Σ_s w_s · mean over the block of e_s² / (2σ_x,s² + C₂)."""
    out = 0
    xs, es = x, x - recons
    for s, w in enumerate(W):
        if s:
            xs, es = F.avg_pool2d(xs, 2), F.avg_pool2d(es, 2)
        var = (gauss(xs * xs) - gauss(xs) ** 2).clamp_min(0)
        out = out + w * F.avg_pool2d((gauss(es * es) / (2 * var + C2)).mean(1, keepdim=True), S >> s)[:, 0]
    return out.numpy()


def limited(d: np.ndarray, reached: int) -> np.ndarray:
    """The codec's floor (2 iterations once two whole ones fall short) and a ceiling of reached + 4."""
    d[: 2 if reached > 2 else 1] = np.inf
    d[reached + 5 :] = np.inf
    return d


def run(path: str, targets: list[float], rounds: int) -> list[tuple[float, ...]]:
    im = np.asarray(Image.open(path).convert("RGB"))
    h, w = (min(im.shape[0], 512) // S) * S, (min(im.shape[1], 768) // S) * S
    im = np.ascontiguousarray(im[:h, :w])
    x = torch.from_numpy(im).permute(2, 0, 1)[None].float() / 255 - 0.5
    x255 = torch.from_numpy(im).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        at, recons, bits = net.begin(x), [torch.zeros_like(x)], []
        for _ in range(16):
            b, at = net.step(x, at, True)
            recons.append(at.recon.float().clamp(-0.5, 0.5))
            bits.append(b.float())
        b = torch.stack(bits, 1)  # 1×T×C×h×w
        p1 = ctx.forward(b.sign()).double() * 2.0**-16
        coded = -torch.where(b > 0, p1, 1 - p1).log2().sum(2)[0].numpy()  # T×h×w bits per block-iteration
        bitcost = np.concatenate([np.zeros((1,) + coded.shape[1:]), np.cumsum(coded, 0)]) / 32
    recons = torch.cat(recons)
    q = [float(msssim_t(recons[t : t + 1], x255)) for t in range(17)]
    cost = np.arange(17)[:, None, None]

    def meas(counts: np.ndarray) -> float:
        return float(msssim_t(compose(recons, counts), x255))

    def bits_of(counts: np.ndarray) -> float:
        return float(np.take_along_axis(bitcost, counts[None].astype(int), 0).sum()) / counts.size

    out = []
    for target in targets:
        ts = next((t for t in range(1, 17) if q[t] >= target), None)
        if ts is None or ts + 4 > 16:
            continue
        shape = (h // S, w // S)
        frac = (target - q[ts - 1]) / (q[ts] - q[ts - 1])
        uniform = (1 - frac) * bits_of(np.full(shape, ts - 1, np.uint8)) + frac * bits_of(np.full(shape, ts, np.uint8))
        d4 = limited(torch.stack([F.avg_pool2d(F.avg_pool2d(x - r[None], 4).square().mean(1, keepdim=True), 4)[0, 0]
                                  for r in recons]).numpy(), ts)
        c4, c4b = bisect(d4, cost, meas, target), bisect(d4, bitcost, meas, target)
        cm = bisect(limited(variance_normalised(x, recons), ts), cost, meas, target)
        cg = np.full(shape, ts, np.uint8)
        for _ in range(rounds):  # MS-SSIM's gradient at the current counts times each count's change
            y = compose(recons, cg).requires_grad_(True)
            msssim_t(y, x255).backward()
            dq = torch.stack([F.avg_pool2d((y.grad * (r[None] - y.detach())).sum(1, keepdim=True), S)[0, 0] * S * S
                              for r in recons]).numpy()
            cg = bisect(limited(-dq, ts), cost, meas, target)
        row = (target, ts, uniform, bits_of(c4), bits_of(c4b), bits_of(cm), bits_of(cg))
        out.append(row)
        print(f"{path}: target {target}, {ts} whole iterations; bits per block-bit: uniform {uniform:.2f}, "
              f"4×4 error {row[3]:.2f}, by bits {row[4]:.2f}, variance-normalised {row[5]:.2f}, "
              f"linearised {row[6]:.2f}", flush=True)
    return out

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="+")
    ap.add_argument("--targets", type=float, nargs="+", default=[0.93, 0.95, 0.97])
    ap.add_argument("--rounds", type=int, default=3, help="relinearisations of MS-SSIM")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    res = []
    for path in args.images:
        res += run(path, args.targets, args.rounds)
    r = np.array([o[2:] for o in res])
    print("\n| proxy | mean bits per block-bit | against uniform (mean ratio) |\n|---|---:|---:|")
    for i, name in enumerate(("uniform", "4×4-averaged error", "4×4-averaged error, costs in bits",
                              "variance-normalised multi-scale error", "linearised MS-SSIM")):
        print(f"| {name} | {r[:, i].mean():.3f} | {(r[:, i] / r[:, 0]).mean():.3f} |")


if __name__ == "__main__":
    main()
