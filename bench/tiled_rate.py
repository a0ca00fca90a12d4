"""Rate control on an image of several tiles: each goal's file, its real rate and quality, its encode
time, and whether its blocks got counts of their own (partial iterations) or whole iterations.

    .venv/bin/python bench/tiled_rate.py IMAGE [--crop 2048] [--tile 1024] [--psnr 28] [--ms-ssim 0.95] [--bpp 0.5]

Only the public encode() and decode() are used, so that the same script measures any version.
"""
from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

from rnncodec import container
from rnncodec.codec import decode, encode
from rnncodec.errors import Note
from rnncodec.image import read_image
from rnncodec.quality import ms_ssim_rgb, psnr_rgb
from rnncodec.tiles import plan_tiles


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", type=Path)
    ap.add_argument("--crop", type=int, default=2048, help="the centre crop's side, at most the image's")
    ap.add_argument("--tile", type=int, default=1024)
    ap.add_argument("--psnr", type=float, nargs="*", default=[28.0])
    ap.add_argument("--ms-ssim", type=float, nargs="*", default=[0.95])
    ap.add_argument("--bpp", type=float, nargs="*", default=[0.5])
    ap.add_argument("--iterations", type=int, nargs="*", default=[4, 8])
    args = ap.parse_args()
    pixels = read_image(args.image).pixels
    h, w = (min(args.crop, s) for s in pixels.shape[:2])
    y, x = (pixels.shape[0] - h) // 2, (pixels.shape[1] - w) // 2
    pixels = np.ascontiguousarray(pixels[y : y + h, x : x + w])
    print(f"{args.image.name}: {w}×{h} crop, {len(plan_tiles(h, w, args.tile, 16))} tiles of {args.tile}\n")
    print("| goal | bpp | PSNR | MS-SSIM | iterations | counts | encode s |\n|---|---:|---:|---:|---:|---|---:|")
    goals = ([("iterations", v) for v in args.iterations] + [("target_psnr", v) for v in args.psnr]
             + [("target_ms_ssim", v) for v in args.ms_ssim] + [("bpp", v) for v in args.bpp])
    for name, value in goals:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Note)
            data = encode(pixels, tile=args.tile, **{name: value}).data
        seconds = time.perf_counter() - start
        header, chunks = container.read(data)
        decoded = decode(data).pixels
        counts = "per block" if header.blocks is not None else "whole iterations"
        print(f"| {name} {value:g} | {len(data) * 8 / (h * w):.4f} | {psnr_rgb(pixels, decoded):.2f} | "
              f"{ms_ssim_rgb(pixels, decoded):.4f} | {len(chunks)} | {counts} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
