"""Rate control on images of several tiles: each goal's file against the whole iterations that meet
the same goal (the fewest reaching a target, the most within a budget: what a tiled image got
before one λ served all its tiles), with counts of its own per block (adaptive) and with a partial
last iteration alone (`adaptive=False`).

    .venv/bin/python bench/tiled_rate.py IMAGE_OR_FOLDER… [--images N] [--crop 2048] [--fit] [--tile 1024] \\
        [--psnr 28] [--ms-ssim 0.95] [--bpp 0.5]

Only the public encode() and decode() are used. Rates are real file sizes, header included.
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
from rnncodec.image import list_images, read_image, resized
from rnncodec.quality import ms_ssim_rgb, psnr_rgb
from rnncodec.tiles import plan_tiles


def crop(path: Path, side: int, fit: bool) -> np.ndarray:
    pixels = read_image(path).pixels
    if fit:  # a photo larger than the crop: its shorter side brought to the crop's, which blurs away a JPEG's blocks
        scale = side / min(pixels.shape[:2])
        pixels = resized(pixels, round(pixels.shape[1] * scale), round(pixels.shape[0] * scale))
    h, w = (min(side, s) for s in pixels.shape[:2])
    y, x = (pixels.shape[0] - h) // 2, (pixels.shape[1] - w) // 2
    return np.ascontiguousarray(pixels[y : y + h, x : x + w])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", type=Path, nargs="+", help="images, or folders of them")
    ap.add_argument("--images", dest="limit", type=int, default=0, help="first N images of a folder only (0 = all)")
    ap.add_argument("--crop", type=int, default=2048, help="the centre crop's side, at most the image's")
    ap.add_argument("--fit", action="store_true", help="first scale each image (Lanczos) so that its shorter side is the crop's")
    ap.add_argument("--tile", type=int, default=1024)
    ap.add_argument("--psnr", type=float, nargs="*", default=[28.0])
    ap.add_argument("--ms-ssim", type=float, nargs="*", default=[0.95])
    ap.add_argument("--bpp", type=float, nargs="*", default=[0.5])
    args = ap.parse_args()
    warnings.simplefilter("ignore", Note)  # targets out of reach: the whole iterations say so too
    paths = [p for root in args.images for p in (list_images(root, lossless=True) if root.is_dir() else [root])]
    paths = paths[: args.limit or None]
    goals = ([("target_psnr", v) for v in args.psnr] + [("target_ms_ssim", v) for v in args.ms_ssim]
             + [("bpp", v) for v in args.bpp])
    rows: dict[tuple[str, float, str], list[dict]] = {}
    for path in paths:
        pixels = crop(path, args.crop, args.fit)
        h, w = pixels.shape[:2]
        tiles = len(plan_tiles(h, w, args.tile, 16))
        full = encode(pixels, adaptive=False, tile=args.tile).data  # every iteration
        header, chunks = container.read(full)
        prefixes = [container.truncate(header, chunks, k) for k in range(1, len(chunks) + 1)]
        decoded = [decode(p).pixels for p in prefixes]
        for name, value in goals:
            if name == "bpp":
                fits = [k for k, p in enumerate(prefixes) if len(p) * 8 <= value * h * w]
                k = fits[-1] if fits else 0
            else:
                measure = psnr_rgb if name == "target_psnr" else ms_ssim_rgb
                k = next((k for k, d in enumerate(decoded) if measure(pixels, d) >= value), len(prefixes) - 1)
            rows.setdefault((name, value, "whole iterations"), []).append(
                {"bytes": len(prefixes[k]), "decoded": decoded[k], "blocks": False, "seconds": float("nan")})
            for adaptive in (True, False):
                start = time.perf_counter()
                data = encode(pixels, tile=args.tile, downscale=1, adaptive=adaptive, **{name: value}).data
                seconds = time.perf_counter() - start
                rows.setdefault((name, value, "adaptive" if adaptive else "partial last iteration"), []).append(
                    {"bytes": len(data), "decoded": decode(data).pixels, "seconds": seconds,
                     "blocks": container.read(data)[0].blocks is not None})
            whole = rows[(name, value, "whole iterations")][-1]["bytes"]
            for mode in ("whole iterations", "adaptive", "partial last iteration"):
                r = rows[(name, value, mode)][-1]
                r.update(bpp=r["bytes"] * 8 / (h * w), psnr=psnr_rgb(pixels, r["decoded"]),
                         ms_ssim=ms_ssim_rgb(pixels, r["decoded"]), ratio=r["bytes"] / whole)
                del r["decoded"]
        print(f"{path.name}: {w}×{h}, {tiles} tiles of {args.tile}", flush=True)
    print(f"\n{len(paths)} images\n\n| goal | mode | bpp | PSNR | MS-SSIM | bytes × whole iterations | files with block "
          "counts | encode s |\n|---|---|---:|---:|---:|---:|---:|---:|")
    for (name, value, mode), rs in rows.items():
        mean = {m: float(np.mean([r[m] for r in rs])) for m in ("bpp", "psnr", "ms_ssim", "ratio", "seconds")}
        print(f"| {name} {value:g} | {mode} | {mean['bpp']:.4f} | {mean['psnr']:.2f} | {mean['ms_ssim']:.4f} | "
              f"{mean['ratio']:.3f} | {sum(r['blocks'] for r in rs)}/{len(rs)} | {mean['seconds']:.1f} |")


if __name__ == "__main__":
    main()
