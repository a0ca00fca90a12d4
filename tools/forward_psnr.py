"""PSNR after each iteration of image models' forward pass (no file, no entropy coder).

    .venv/bin/python tools/forward_psnr.py runs/a.safetensors runs/b.safetensors --images ../shared/data/kodak/kodim23.png

A quick way to compare weights on whole images before a full `rnncodec eval`.
"""
from __future__ import annotations

import argparse

import torch

from rnncodec.image import pad_to_multiple, read_image
from rnncodec.zoo import load_image_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("weights", nargs="+")
    ap.add_argument("--images", nargs="+", required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pixels = [read_image(p).pixels for p in args.images]
    for weights in args.weights:
        model = load_image_model(weights)
        for path, px in zip(args.images, pixels):
            h, w = px.shape[:2]
            x = torch.from_numpy(pad_to_multiple(px, 16).copy()).permute(2, 0, 1)[None].float() / 255 - 0.5
            with torch.no_grad():
                _, recons = model.net(x, model.cfg.iterations)
            x = x[..., :h, :w]  # edge padding up to the model's stride is not scored
            psnr = [float(-10 * torch.log10(((r[..., :h, :w].clamp(-0.5, 0.5) - x) ** 2).mean())) for r in recons]
            print(f"{weights} {path}: " + " ".join(f"{p:.2f}" for p in psnr))


if __name__ == "__main__":
    main()
