"""Which rate option should `rnncodec compress photo.png` use when the user gives none?

For each candidate setting and each image, the file rnncodec writes is set against JPEG 4:2:0 at
the same real size (JPEG's PSNR and MS-SSIM interpolated on its own quality sweep of that image,
at rnncodec's bpp, header included). A setting "wins" an image when it is at or above JPEG on
both metrics there. Run it on training images to choose; on Kodak only to confirm the choice.

    .venv/bin/python bench/default_rate.py DATASET [--limit N] [--settings quality=40,iterations=4 …] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import rnncodec
from rnncodec.eval.codecs import available
from rnncodec.eval.metrics import to_db
from rnncodec.eval.runner import dataset_images
from rnncodec.image import read_image
from rnncodec.quality import ms_ssim_rgb, psnr_rgb

DEFAULT_SETTINGS = ("quality=20", "quality=22", "quality=23", "quality=24", "quality=25")


def parse_setting(text: str) -> dict:
    key, value = text.split("=")
    return {key: int(value) if key == "iterations" else float(value)}


def jpeg_curve(pixels: np.ndarray) -> np.ndarray:
    """Rows of (bpp, PSNR, MS-SSIM) over JPEG's quality sweep, from quality 1 so that its smallest
    files are in it too, sorted by bpp."""
    jpeg, rows = available()["jpeg"], []
    for q in (1, 2, 3, 4, *jpeg.qualities):
        data = jpeg.encode(pixels, q)
        recon = jpeg.decode(data)
        rows.append((len(data) * 8 / (pixels.shape[0] * pixels.shape[1]), psnr_rgb(pixels, recon), ms_ssim_rgb(pixels, recon)))
    return np.array(sorted(rows))


def measure(pixels: np.ndarray, setting: dict) -> dict:
    start = time.perf_counter()
    data = rnncodec.compress(pixels, **setting)
    recon = np.asarray(rnncodec.decompress(data).convert("RGB"))
    return {"bpp": len(data) * 8 / (pixels.shape[0] * pixels.shape[1]), "psnr": psnr_rgb(pixels, recon),
            "ms_ssim": ms_ssim_rgb(pixels, recon), "seconds": time.perf_counter() - start}


def against_jpeg(point: dict, curve: np.ndarray) -> dict:
    """rnncodec's lead over JPEG at its size (None outside JPEG's sweep)."""
    if not curve[0, 0] <= point["bpp"] <= curve[-1, 0]:
        return {"psnr_gain": None, "ms_ssim_db_gain": None, "wins": None}
    psnr = float(np.interp(point["bpp"], curve[:, 0], curve[:, 1]))
    ms_ssim = float(np.interp(point["bpp"], curve[:, 0], curve[:, 2]))
    return {"psnr_gain": point["psnr"] - psnr, "ms_ssim_db_gain": to_db(point["ms_ssim"]) - to_db(ms_ssim),
            "wins": point["psnr"] >= psnr and point["ms_ssim"] >= ms_ssim}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("--limit", type=int)
    p.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS))
    p.add_argument("--json", help="write every point here")
    args = p.parse_args()
    settings = {s: parse_setting(s) for s in args.settings}
    rows = []
    for path in dataset_images(args.dataset, args.limit):
        pixels = read_image(path).pixels
        curve = jpeg_curve(pixels)
        for name, setting in settings.items():
            point = measure(pixels, setting)
            rows.append({"image": path.name, "setting": name, **point, **against_jpeg(point, curve)})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    print("| setting | mean bpp | wins on both (of images in JPEG's range) | mean PSNR lead, dB | mean MS-SSIM lead, dB | "
          "encode + decode, s |")
    print("|---|---|---|---|---|---|")
    for name in settings:
        mine = [r for r in rows if r["setting"] == name]
        ranged = [r for r in mine if r["wins"] is not None]
        psnr, ms_ssim = (np.mean([r[k] for r in ranged]) if ranged else float("nan") for k in ("psnr_gain", "ms_ssim_db_gain"))
        print(f"| {name} | {np.mean([r['bpp'] for r in mine]):.3f} | {sum(r['wins'] for r in ranged)}/{len(ranged)} | "
              f"{psnr:+.2f} | {ms_ssim:+.2f} | {np.mean([r['seconds'] for r in mine]):.1f} |")


if __name__ == "__main__":
    main()
