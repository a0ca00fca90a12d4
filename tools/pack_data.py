"""Pack training folders into small JPEG 4:4:4 copies (q90 unless --quality), for a machine that takes limited uploads.

    .venv/bin/python tools/pack_data.py ../shared/data/train/cid22:1 ../shared/data/train/bsds500:2 \
        ../shared/data/train/sun_hays80:2 -o .traindata

Each FOLDER:F is written to OUT/<folder name>/ with every image box-downscaled by F first (F = 2
for JPEG sources, as `train --jpeg-downscale 2` does), so train on the copies with
`--jpeg-downscale 1`. q90 4:4:4 errors (≈ 40 dB), q85's (≈ 38 dB) and lower, which gpu_train.sh
--prepare falls back to when the upload is full, sit far below what the codec reproduces.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from rnncodec.image import list_images


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folders", nargs="+", metavar="FOLDER:F")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--quality", type=int, default=90)
    args = ap.parse_args()
    for spec in args.folders:
        folder, _, factor = spec.rpartition(":")
        dest = Path(args.out) / Path(folder).name
        dest.mkdir(parents=True, exist_ok=True)
        for path in list_images(folder):
            with Image.open(path) as im:
                im = im.convert("RGB")
                if int(factor) > 1:
                    im = im.reduce(int(factor))
                im.save(dest / f"{path.stem}.jpg", quality=args.quality, subsampling=0)


if __name__ == "__main__":
    main()
