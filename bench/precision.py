"""The image model in bf16 against fp32 on Kodak: quality per iteration, and time.

    .venv/bin/python bench/precision.py KODAK [--images N] [--threads T]

Each image is encoded at every iteration (one real file per precision, decoded in the same
precision, every prefix measured), and the fp32 file is also decoded in bf16 (a decoder on
another CPU). Times: encode and decode at 4 iterations, in process, per image (best of two).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from rnncodec import container
from rnncodec.codec import decode, encode
from rnncodec.image import list_images, read_image
from rnncodec.quality import ms_ssim_rgb, psnr_rgb

TIMED_ITERATIONS = 4


def prefix_scores(pixels: np.ndarray, data: bytes, precision: str) -> list[tuple[float, float]]:
    """(PSNR, MS-SSIM) of every prefix of a file, decoded in `precision`."""
    header, chunks = container.read(data)
    out = []
    for k in range(1, len(chunks) + 1):
        dec = decode(container.truncate(header, chunks, k), precision=precision).pixels
        out.append((psnr_rgb(pixels, dec), ms_ssim_rgb(pixels, dec)))
    return out


def best_time(fn, repeats: int = 2) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kodak", type=Path, help="folder of the Kodak PNGs")
    ap.add_argument("--images", type=int, default=0, help="first N images only (0 = all)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    scores: dict[str, list] = {"fp32": [], "bf16": [], "fp32 file, bf16 decoder": []}
    times: dict[str, list] = {"fp32": [], "bf16": []}
    for path in list_images(args.kodak, lossless=True)[: args.images or None]:
        pixels = read_image(path).pixels
        files = {p: encode(pixels, precision=p).data for p in ("fp32", "bf16")}
        scores["fp32"].append(prefix_scores(pixels, files["fp32"], "fp32"))
        scores["bf16"].append(prefix_scores(pixels, files["bf16"], "bf16"))
        scores["fp32 file, bf16 decoder"].append(prefix_scores(pixels, files["fp32"], "bf16"))
        for p in times:
            short = encode(pixels, iterations=TIMED_ITERATIONS, precision=p).data
            times[p].append((best_time(lambda p=p, px=pixels: encode(px, iterations=TIMED_ITERATIONS, precision=p)),
                             best_time(lambda p=p, short=short: decode(short, precision=p))))
        print(path.name, flush=True)
    mean = {k: np.mean(np.array(v), axis=0) for k, v in scores.items()}  # iterations × (PSNR, MS-SSIM)
    n = len(scores["fp32"])
    print(f"\nmean over {n} images; threads {args.threads}\n")
    print("| iterations | fp32 PSNR | bf16 PSNR | Δ | fp32 file, bf16 decoder Δ | fp32 MS-SSIM | bf16 MS-SSIM | Δ | "
          "fp32 file, bf16 decoder Δ |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for t in range(len(mean["fp32"])):
        f, b, x = mean["fp32"][t], mean["bf16"][t], mean["fp32 file, bf16 decoder"][t]
        print(f"| {t + 1} | {f[0]:.3f} | {b[0]:.3f} | {b[0] - f[0]:+.3f} | {x[0] - f[0]:+.3f} | {f[1]:.5f} | {b[1]:.5f} | "
              f"{b[1] - f[1]:+.5f} | {x[1] - f[1]:+.5f} |")
    enc32, dec32 = np.mean(times["fp32"], axis=0)
    enc16, dec16 = np.mean(times["bf16"], axis=0)
    print(f"\n| precision | encode s | decode s | ({TIMED_ITERATIONS} iterations, per image)\n|---|---:|---:|")
    print(f"| fp32 | {enc32:.3f} | {dec32:.3f} |\n| bf16 | {enc16:.3f} | {dec16:.3f} |")
    print(f"| bf16 / fp32 | {enc16 / enc32:.2f} | {dec16 / dec32:.2f} |")


if __name__ == "__main__":
    main()
