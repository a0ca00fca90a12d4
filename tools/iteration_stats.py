"""What an image model does per iteration on one image crop: the binarizer's mean |tanh|, the size
of each update mean |x̂_t − x̂_(t−1)|, and the residual mean |x − x̂_t| (model forward, fp32).

    .venv/bin/python tools/iteration_stats.py IMAGE W1.safetensors [W2 …] [--crop 256]
"""
from __future__ import annotations

import argparse

import torch

from rnncodec.image import read_image
from rnncodec.zoo import load_image_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("image")
    ap.add_argument("weights", nargs="+")
    ap.add_argument("--crop", type=int, default=256, help="top-left square, a multiple of 16")
    args = ap.parse_args()
    torch.set_num_threads(1)
    pixels = read_image(args.image).pixels[: args.crop, : args.crop]
    x = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255 - 0.5
    for weights in args.weights:
        net = load_image_model(weights).net
        activations: list[float] = []
        hook = net.binarizer.conv.register_forward_hook(
            lambda m, i, out, seen=activations: seen.append(out.tanh().abs().mean().item()))
        with torch.no_grad():
            _, recons = net(x, net.cfg.iterations)
        hook.remove()
        updates = [recons[0].abs().mean().item()] + [(b - a).abs().mean().item() for a, b in zip(recons, recons[1:])]
        residuals = [(x - r).abs().mean().item() for r in recons]
        print(weights)
        for name, values in (("|tanh|", activations), ("update", updates), ("residual", residuals)):
            print(f"  {name:9s}" + " ".join(f"{v:.4f}" for v in values))


if __name__ == "__main__":
    main()
