"""Is a late iteration limited by the encoder or by the decoder? (issue 11, item 1)

    .venv/bin/python tools/oracle_bits.py IMAGE [IMAGE …] [--crop 256] [--iterations 2 4 8 12 16] [--steps 150]

At each listed iteration t, with the decoder's state after t − 1 iterations fixed, the encoder's
bits are replaced by bits optimised for that iteration's own L1 (Adam on a real-valued code,
sign forward and identity backward, starting from the encoder's bits; the best hard bits seen
are kept). If no bits do much better than the encoder's, the decoder is what limits the
iteration. Training images only: Kodak is for evaluation.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from rnncodec.image import read_image
from rnncodec.models.rnn_codec import RNNCodec, Step
from rnncodec.zoo import load_image_model


def psnr(x: torch.Tensor, recon: torch.Tensor) -> float:
    """PSNR of the 8-bit image a decoder would write."""
    q = ((recon.clamp(-0.5, 0.5) + 0.5) * 255).round()
    return float(10 * torch.log10(255**2 / ((q - (x + 0.5) * 255) ** 2).mean()))


def optimised_bits(net: RNNCodec, x: torch.Tensor, at: Step, bits: torch.Tensor,
                   steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bits for iteration at.t + 1 that lower its L1 more than `bits` do, if any are found, and
    the reconstruction they give."""
    gain = net._gain(at.recon, at.t)

    def recon_of(b: torch.Tensor) -> torch.Tensor:
        return net._reconstruct(b, at.dec, at.recon, gain, at.t)[0]

    code = bits.clone().float().requires_grad_(True)
    opt = torch.optim.Adam([code], lr=0.05)
    with torch.no_grad():
        best, best_l1 = bits.clone(), float((x - recon_of(bits)).abs().mean())
    for _ in range(steps):
        hard = torch.where(code >= 0, 1.0, -1.0)
        loss = (x - recon_of(code + (hard - code).detach())).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            hard = torch.where(code >= 0, 1.0, -1.0)
            if (l1 := float((x - recon_of(hard)).abs().mean())) < best_l1:
                best, best_l1 = hard, l1
    with torch.no_grad():
        return best, recon_of(best)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="+")
    ap.add_argument("--crop", type=int, default=256, help="top-left crop side, a multiple of 16")
    ap.add_argument("--iterations", type=int, nargs="+", default=[2, 4, 8, 12, 16])
    ap.add_argument("--steps", type=int, default=150, help="Adam steps per iteration checked")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    net = load_image_model().net.float()
    for p in net.parameters():
        p.requires_grad_(False)
    rows = []
    for path in args.images:
        px = read_image(path).pixels[: args.crop, : args.crop]
        x = torch.from_numpy(px.copy()).permute(2, 0, 1)[None].float() / 255 - 0.5
        at = net.begin(x)
        for t in range(1, max(args.iterations) + 1):
            with torch.no_grad():
                bits, after = net.step(x, at)
            if t in args.iterations:
                best, recon = optimised_bits(net, x, at, bits, args.steps)
                before = psnr(x, at.recon)
                row = (t, psnr(x, after.recon) - before, psnr(x, recon) - before, float((best != bits).float().mean()))
                rows.append(row)
                print(f"{path}: iteration {t}, {before:.2f} dB before: encoder's bits {row[1]:+.3f} dB, "
                      f"optimised {row[2]:+.3f} dB ({row[3]:.1%} of the bits flipped)", flush=True)
            at = after
    r = np.array(rows)
    print("\n| iteration | PSNR gain, encoder's bits | PSNR gain, optimised bits | bits flipped |\n|---:|---:|---:|---:|")
    for t in args.iterations:
        m = r[r[:, 0] == t].mean(0)
        print(f"| {t} | {m[1]:+.3f} dB | {m[2]:+.3f} dB | {m[3]:.1%} |")


if __name__ == "__main__":
    main()
