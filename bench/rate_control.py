"""Rate control on Kodak: fixed iterations, a quality target alone, and a target with spatially
adaptive bit rates (`--adaptive`).

    .venv/bin/python bench/rate_control.py KODAK [--images N] [--ms-ssim 0.90 0.93 …] [--psnr 24 26 …]
    .venv/bin/python bench/rate_control.py KODAK --skip 12 --save B.json …   # part of a run, in another process
    .venv/bin/python bench/rate_control.py --merge A.json B.json …           # the report of the parts together

Every file is real (header included) and decoded by `decode`. For each mode: the RD points
(mean bpp, MS-SSIM and PSNR over the images, per iteration count or per target), the BD-rate of
one mode against another on MS-SSIM dB, how close each file lands to its target (the images whose
16 iterations reach it count; the others stop at 16 and say so; apart, those whose one-iteration
full-size file already passes it by more than the tolerance, which only a file coded at reduced
size can land on; and how many files were), the encode time (and its ratio to a fixed-iteration
encode of the fewest whole iterations at least as large), and, for the adaptive files, whether
block edges show: the squared error in the 2-px bands along edges between blocks with different
iteration counts, against the error of those blocks as a whole.
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from rnncodec import container
from rnncodec.codec import decode, encode
from rnncodec.errors import Note
from rnncodec.eval.bd import bd_rate, rising
from rnncodec.eval.metrics import to_db
from rnncodec.image import list_images, read_image
from rnncodec.models.rnn_codec import STRIDE
from rnncodec.quality import ms_ssim_rgb, psnr_rgb
from rnncodec.tiles import plan_tiles


def scores(pixels: np.ndarray, data: bytes) -> dict:
    dec = decode(data).pixels
    return {"bpp": len(data) * 8 / (pixels.shape[0] * pixels.shape[1]), "ms_ssim": ms_ssim_rgb(pixels, dec),
            "psnr": psnr_rgb(pixels, dec), "decoded": dec}


def edge_excess(pixels: np.ndarray, data: bytes, decoded: np.ndarray) -> tuple[float, float]:
    """(squared error in 2-px bands along edges between blocks of different counts, squared error
    of the blocks on either side of them); (nan, nan) when every block got the same count."""
    header, _ = container.read(data)
    if header.blocks is None:  # the target alone's file, of whole iterations, was the smaller
        return float("nan"), float("nan")
    box = plan_tiles(header.height, header.width, header.tile, header.overlap)[0]  # Kodak: one tile
    counts = container.block_counts(header, [tuple(-(-s // STRIDE) for s in box.shape)])[0]
    counts = np.minimum(counts, header.iterations)
    block = STRIDE * round(header.display_size[0] / header.width)  # a block's side as shown: larger when downscaled
    full = np.kron(counts, np.ones((block, block), int))[: pixels.shape[0], : pixels.shape[1]]
    se = ((decoded.astype(float) - pixels) ** 2).mean(axis=2)
    band, near = np.zeros(full.shape, bool), np.zeros(full.shape, bool)
    for axis in (0, 1):
        step = np.diff(full, axis=axis) != 0  # an edge between this pixel and the next
        edge = np.zeros(full.shape, bool)
        (edge[:-1] if axis == 0 else edge[:, :-1])[...] |= step
        for d in (-1, 0, 1, 2):  # two pixels each side
            band |= np.roll(edge, d, axis=axis)
        for d in range(-STRIDE + 1, STRIDE + 1):
            near |= np.roll(edge, d, axis=axis)
    if not band.any():
        return float("nan"), float("nan")
    return float(se[band].mean()), float(se[near].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kodak", type=Path, nargs="?", help="folder of the Kodak PNGs")
    ap.add_argument("--images", type=int, default=0, help="first N images only (0 = all)")
    ap.add_argument("--skip", type=int, default=0, help="leave out the first N images (before --images)")
    ap.add_argument("--save", type=Path, help="write every image's records here as JSON, after each image")
    ap.add_argument("--merge", type=Path, nargs="+", help="no coding: the report of these --save files together")
    ap.add_argument("--ms-ssim", type=float, nargs="+", default=[0.90, 0.93, 0.95, 0.96, 0.97])
    ap.add_argument("--psnr", type=float, nargs="+", default=[24.0, 25.0, 26.0, 27.0, 28.0])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--report-each", action="store_true", help="the report after every image, not only the last")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", Note)  # targets out of an image's reach are counted below
    # bjontegaard warns for each pair of curves that overlap little, as one image's few target points do
    warnings.filterwarnings("ignore", "Insufficient curve overlap")
    fixed: list[list[dict]] = []
    runs: dict[tuple[str, str, float], list[dict]] = {}
    if args.merge:  # the parts' targets must be the command's
        for part in map(json.loads, (p.read_text() for p in args.merge)):
            fixed += part["fixed"]
            for metric, mode, target, rows in part["runs"]:
                runs.setdefault((metric, mode, target), []).extend(rows)
        return report(args, fixed, runs, len(fixed))
    paths = list_images(args.kodak, lossless=True)[args.skip :][: args.images or None]
    for path in paths:
        pixels = read_image(path).pixels
        full = encode(pixels, adaptive=False).data  # every iteration, every block
        header, chunks = container.read(full)
        fixed.append([scores(pixels, container.truncate(header, chunks, k)) for k in range(1, len(chunks) + 1)])
        for r in fixed[-1]:
            del r["decoded"]
        best = {"ms_ssim": fixed[-1][-1]["ms_ssim"], "psnr": fixed[-1][-1]["psnr"]}
        least = {"ms_ssim": fixed[-1][0]["ms_ssim"], "psnr": fixed[-1][0]["psnr"]}  # a file's poorest: 1 iteration
        for metric, targets in (("ms_ssim", args.ms_ssim), ("psnr", args.psnr)):
            for target in targets:
                for mode in ("target", "adaptive"):
                    start = time.perf_counter()
                    data = encode(pixels, adaptive=mode == "adaptive", **{f"target_{metric}": target}).data
                    seconds = time.perf_counter() - start
                    r = scores(pixels, data)
                    header, chunks = container.read(data)
                    k = next((k for k, f in enumerate(fixed[-1], 1) if f["bpp"] >= r["bpp"]), len(fixed[-1]))
                    start = time.perf_counter()
                    encode(pixels, iterations=k)  # whole iterations, a file at least as large
                    r.update(fixed_seconds=time.perf_counter() - start)
                    r.update(seconds=seconds, reachable=best[metric] >= target, floor=least[metric] - target,
                             miss=r[metric] - target, iterations=len(chunks), reduced=header.display is not None)
                    if mode == "adaptive":
                        r["band"], r["near"] = edge_excess(pixels, data, r["decoded"])
                    del r["decoded"]
                    runs.setdefault((metric, mode, target), []).append(r)
        print(path.name, flush=True)
        if args.save:
            saved = {"fixed": fixed, "runs": [[*key, rows] for key, rows in runs.items()]}
            args.save.write_text(json.dumps(saved, default=float))
        if args.report_each and len(fixed) < len(paths):
            report(args, fixed, runs, len(fixed))
    report(args, fixed, runs, len(paths))


def report(args: argparse.Namespace, fixed: list[list[dict]], runs: dict, n: int) -> None:
    print(f"\n{n} images\n")
    curves = {"fixed iterations": [tuple(float(np.mean([img[k][m] for img in fixed])) for m in ("bpp", "ms_ssim", "psnr"))
                                   for k in range(len(fixed[0]))]}
    for metric, targets in (("ms_ssim", args.ms_ssim), ("psnr", args.psnr)):
        for mode in ("target", "adaptive"):
            curves[f"{metric} {mode}"] = [tuple(float(np.mean([r[m] for r in runs[(metric, mode, t)]]))
                                                for m in ("bpp", "ms_ssim", "psnr")) for t in targets]
    print("| mode | point | bpp | MS-SSIM | PSNR |\n|---|---|---:|---:|---:|")
    for name, points in curves.items():
        labels = ([f"{k + 1} it." for k in range(len(points))] if name.startswith("fixed") else
                  [f"{t:g}" for t in (args.ms_ssim if name.startswith("ms_ssim") else args.psnr)])
        for label, (b, s, p) in zip(labels, points):
            print(f"| {name} | {label} | {b:.4f} | {s:.4f} | {p:.2f} |")

    def bd_of(pa: list[tuple], pb: list[tuple], dist: str) -> float:
        """BD-rate of points pb against pa, (bpp, MS-SSIM, PSNR) each, over their rising points;
        nan with fewer than 3 of either."""
        col, conv = (1, to_db) if dist == "ms_ssim" else (2, float)
        (xa, ya), (xb, yb) = (rising(np.array([q[0] for q in pts]), np.array([conv(q[col]) for q in pts]))
                              for pts in (pa, pb))
        return bd_rate(xa, ya, xb, yb) if min(len(xa), len(xb)) >= 3 else float("nan")

    def bd(a: str, b: str, dist: str) -> float:
        return bd_of(curves[a], curves[b], dist)

    def image_points(name: str, i: int) -> list[tuple[float, float, float]]:
        if name.startswith("fixed"):
            return [(r["bpp"], r["ms_ssim"], r["psnr"]) for r in fixed[i]]
        metric, mode = name.split()
        targets = args.ms_ssim if metric == "ms_ssim" else args.psnr
        return [(r["bpp"], r["ms_ssim"], r["psnr"]) for r in (runs[(metric, mode, t)][i] for t in targets)]

    def per_image(a: str, b: str, dist: str) -> str:
        """The mean of each image's own BD-rate: what spatial allocation does within an image,
        without the mean curves' mixing of images coded at different iteration counts."""
        values = [v for v in (bd_of(image_points(a, i), image_points(b, i), dist) for i in range(n)) if np.isfinite(v)]
        return f"{np.mean(values):+.1f} % ({len(values)})" if values else "n/a"

    print("\n| BD-rate (test against anchor) | on MS-SSIM dB | on PSNR | per image, MS-SSIM dB | per image, PSNR |"
          "\n|---|---:|---:|---:|---:|")
    for anchor, test in (("fixed iterations", "ms_ssim target"), ("fixed iterations", "ms_ssim adaptive"),
                         ("ms_ssim target", "ms_ssim adaptive"), ("fixed iterations", "psnr target"),
                         ("fixed iterations", "psnr adaptive"), ("psnr target", "psnr adaptive")):
        print(f"| {test} against {anchor} | {bd(anchor, test, 'ms_ssim'):+.1f} % | {bd(anchor, test, 'psnr'):+.1f} % | "
              f"{per_image(anchor, test, 'ms_ssim')} | {per_image(anchor, test, 'psnr')} |")

    # reachable: 16 iterations reach the target; of those, some already pass it by more than the
    # tolerance at one iteration, the poorest file there is, and cannot land on it from above
    print("\n| target | mode | reachable images | within tolerance | one iteration already above | within, of the rest |"
          " mean miss | worst miss | iterations | coded at reduced size | encode s | × fixed iterations as large |"
          "\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (metric, mode, target), rows in runs.items():
        tol = 0.005 if metric == "ms_ssim" else 0.3
        reach = [r for r in rows if r["reachable"]]
        within = sum(abs(r["miss"]) <= tol for r in reach)
        landable = [r for r in reach if r["floor"] <= tol]
        landed = sum(abs(r["miss"]) <= tol for r in landable)
        misses = [r["miss"] for r in reach] or [float("nan")]
        print(f"| {metric} {target:g} | {mode} | {len(reach)} | {within} ({within / max(1, len(reach)):.0%}) | "
              f"{len(reach) - len(landable)} | {landed} ({landed / max(1, len(landable)):.0%}) | "
              f"{np.mean(misses):+.4f} | {max(misses, key=abs):+.4f} | {np.mean([r['iterations'] for r in rows]):.1f} | "
              f"{sum(r['reduced'] for r in rows)} | {np.mean([r['seconds'] for r in rows]):.2f} | "
              f"{np.mean([r['seconds'] / r['fixed_seconds'] for r in rows]):.1f} |")

    bands = [(r["band"], r["near"]) for (_, mode, _), rows in runs.items() if mode == "adaptive" for r in rows
             if not np.isnan(r["band"])]
    if bands:
        band, near = np.mean(bands, axis=0)
        print(f"\nAdaptive files, block edges: squared error {band:.2f} in the 2-px bands along edges between blocks "
              f"of different counts, {near:.2f} over those blocks ({10 * np.log10(band / near):+.2f} dB; "
              f"{len(bands)} files with such edges)")


if __name__ == "__main__":
    main()
