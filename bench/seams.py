"""Are tile seams visible? PSNR in the bands along tile seams against the tile interiors.

    .venv/bin/python bench/seams.py --images 6 --tile 256 --iterations 4

Kodak images are coded with small tiles so that they have seams, once with the default overlap
and once with none. A band is the pixels within 4 px of a seam line; the interior is the rest.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from rnncodec.codec import decode, encode
from rnncodec.tiles import plan_tiles


def seam_mask(h: int, w: int, tile: int, width: int = 4) -> np.ndarray:
    """True within `width` px of any seam between tiles."""
    mask = np.zeros((h, w), bool)
    boxes = plan_tiles(h, w, tile, 0)
    for y in {b.y0 for b in boxes} - {0}:
        mask[max(0, y - width) : y + width] = True
    for x in {b.x0 for b in boxes} - {0}:
        mask[:, max(0, x - width) : x + width] = True
    return mask


def psnr(se: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / se.mean()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kodak", type=Path, help="folder of the Kodak PNGs")
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--iterations", type=int, default=4)
    args = ap.parse_args()
    print(f"tile {args.tile}, {args.iterations} iterations, {args.images} Kodak images\n")
    print("| overlap | bpp | PSNR seam bands | PSNR interiors | difference dB |\n|---|---|---|---|---|")
    for overlap in (0, 16):
        seam_se, inner_se, bits, pixels = [], [], 0, 0
        for path in sorted(args.kodak.glob("*.png"))[: args.images]:
            img = np.asarray(Image.open(path).convert("RGB"))
            data = encode(img, iterations=args.iterations, tile=args.tile, overlap=overlap).data
            se = ((decode(data).pixels.astype(np.float64) - img) ** 2).mean(axis=2)
            mask = seam_mask(*img.shape[:2], args.tile)
            seam_se.append(se[mask])
            inner_se.append(se[~mask])
            bits += len(data) * 8
            pixels += img.shape[0] * img.shape[1]
        s, i = psnr(np.concatenate(seam_se)), psnr(np.concatenate(inner_se))
        print(f"| {overlap} | {bits / pixels:.3f} | {s:.2f} | {i:.2f} | {s - i:+.2f} |", flush=True)


if __name__ == "__main__":
    main()
