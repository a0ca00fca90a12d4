"""What an alpha plane costs: each image coded with its transparency kept and flattened.

    .venv/bin/python bench/alpha.py IMAGE … [--iterations 8]

For each image: the file with `alpha="drop"` (flattened onto white, no alpha section), with
`alpha="keep"`, the alpha section alone, and for comparison the plane saved by Pillow as an
optimised 8-bit PNG. Sizes in bytes, bpp over the image's pixels.
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

from PIL import Image

from rnncodec import container
from rnncodec.codec import compress
from rnncodec.image import read_image


def _rate(n: int, pixels: int) -> str:
    return f"{n} ({n * 8 / pixels:.3f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="+", type=Path)
    ap.add_argument("--iterations", type=int, default=8)
    args = ap.parse_args()
    print("| image | size | alpha levels | drop: bytes (bpp) | keep: bytes (bpp) | alpha section (bpp) | overhead "
          "| plane as PNG |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for path in args.images:
        rgba = read_image(path)
        if rgba.alpha is None:
            print(f"| {path.name} | opaque: no alpha section |")
            continue
        pixels = rgba.alpha.size
        keep = compress(rgba, iterations=args.iterations)
        drop = compress(read_image(path, alpha="drop"), iterations=args.iterations)
        section = len(container.read(keep)[0].alpha)
        png = io.BytesIO()
        Image.fromarray(rgba.alpha).save(png, "PNG", optimize=True)
        h, w = rgba.alpha.shape
        levels = len(set(rgba.alpha.ravel().tolist()))
        overhead = 100 * (len(keep) - len(drop)) / len(drop)
        print(f"| {path.name} | {w}×{h} | {levels} | {_rate(len(drop), pixels)} | {_rate(len(keep), pixels)} | "
              f"{_rate(section, pixels)} | {overhead:.1f} % | {len(png.getvalue())} |")

if __name__ == "__main__":
    main()
