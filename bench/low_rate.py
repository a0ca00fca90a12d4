"""Rates below one full-size iteration: `--bpp` budgets that the codec meets by coding the image
at 1/2 or 1/4 size (docs/FORMAT.md, "Coded at reduced size"), against classical codecs given
the same budget.

    .venv/bin/python bench/low_rate.py KODAK [--bpp 0.02 0.03 0.05 0.08 0.12] [--threads 1]

Every file is real (header included) and decoded. rnncodec gets `bpp=B`; each classical codec
the highest quality whose file fits B (a bisection over its quality scale; none if its smallest
file is larger). For each budget and codec: how many images it fits, and over those the mean
real bpp, PSNR and MS-SSIM, beside rnncodec's over the same images; rnncodec's rows also count
the files coded at reduced size. The full-size single iteration, the smallest file rnncodec
could write before, is the first row.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from rnncodec import container
from rnncodec.codec import decode, encode
from rnncodec.eval.codecs import Codec, available
from rnncodec.image import list_images, read_image
from rnncodec.quality import ms_ssim_rgb, psnr_rgb


def fitting(codec: Codec, pixels: np.ndarray, budget: float) -> bytes | None:
    """The file of the highest integer quality (0–100) that fits `budget` bpp, or None. Not
    `eval.compare.match_rate`: its grid starts at 1, and WebP's quality 0, far smaller, fits
    budgets 1 does not (at 0.08 bpp, 9 Kodak images against 2)."""
    n = pixels.shape[0] * pixels.shape[1]
    lo, hi, best = 0, 100, None
    while lo <= hi:
        mid = (lo + hi) // 2
        data = codec.encode(pixels, mid)
        if len(data) * 8 / n <= budget:
            best, lo = data, mid + 1
        else:
            hi = mid - 1
    return best


def score(pixels: np.ndarray, data: bytes, decoded: np.ndarray) -> tuple[float, float, float]:
    return len(data) * 8 / (pixels.shape[0] * pixels.shape[1]), psnr_rgb(pixels, decoded), ms_ssim_rgb(pixels, decoded)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kodak", type=Path, help="folder of the Kodak PNGs")
    ap.add_argument("--bpp", type=float, nargs="+", default=[0.02, 0.03, 0.05, 0.08, 0.12])
    ap.add_argument("--images", type=int, default=0, help="first N images only (0 = all)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    classical = {name: c for name, c in available().items() if name in ("jpeg", "webp", "avif")}
    rows: dict[tuple[str, str], dict[int, tuple[float, float, float]]] = {}
    reduced: dict[str, int] = {}
    paths = list_images(args.kodak, lossless=True)[: args.images or None]
    for i, path in enumerate(paths):
        pixels = read_image(path).pixels
        one = encode(pixels, iterations=1, downscale=1).data
        rows.setdefault(("one full-size iteration", "rnncodec"), {})[i] = score(pixels, one, decode(one).pixels)
        for budget in args.bpp:
            key = f"{budget:g} bpp"
            data = encode(pixels, bpp=budget).data
            rows.setdefault((key, "rnncodec"), {})[i] = score(pixels, data, decode(data).pixels)
            reduced[key] = reduced.get(key, 0) + (container.read(data)[0].display is not None)
            for name, codec in classical.items():
                found = fitting(codec, pixels, budget)
                if found is not None:
                    rows.setdefault((key, name), {})[i] = score(pixels, found, codec.decode(found))
        print(path.name, flush=True)
    print(f"\n{len(paths)} images; classical: {', '.join(c.description for c in classical.values())}\n")
    print("| budget | codec | images that fit | bpp | PSNR | MS-SSIM | rnncodec on those images: bpp, PSNR, MS-SSIM | "
          "coded at reduced size |\n|---|---|---:|---:|---:|---:|---|---:|")
    for budget in ["one full-size iteration"] + [f"{b:g} bpp" for b in args.bpp]:
        ours = rows.get((budget, "rnncodec"), {})
        for name in ["rnncodec"] if budget.startswith("one") else ["rnncodec", *classical]:
            points = rows.get((budget, name), {})
            if not points:
                print(f"| {budget} | {name} | 0 | | | | | |")
                continue
            b, p, s = np.mean(list(points.values()), axis=0)
            rb, rp, rs = np.mean([ours[i] for i in points], axis=0)
            same = f"{rb:.4f}, {rp:.2f}, {rs:.4f}" if name != "rnncodec" else ""
            extra = str(reduced.get(budget, 0)) if name == "rnncodec" and not budget.startswith("one") else ""
            print(f"| {budget} | {name} | {len(points)} | {b:.4f} | {p:.2f} | {s:.4f} | {same} | {extra} |")


if __name__ == "__main__":
    main()
