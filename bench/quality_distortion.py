"""Which block distortion should `--quality` stop blocks by? Every distortion and setting tried,
with BD-rate against whole iterations and against JPEG 4:2:0, on PSNR and on MS-SSIM dB.

Per image, one real file of every iteration gives whole iterations' curve (each prefix is the file
`--iterations k` writes) and every block's reconstruction after each count, as the encoder's first
pass sees them. Each distortion then chooses counts at a sweep of slopes λ (`rate.choose`, as
`--quality` does); an image is composed from those blocks, and its size estimated from the real
prefixes' bytes, each iteration's weighted by the share of blocks still coded (the encoder's own
estimate). `--real Q …` also writes and decodes real `--quality Q` files, which are what the
published figures use; the estimates only rank the distortions. Curves are means over the images
(MS-SSIM in dB of the mean, as `rnncodec eval` takes it); BD-rate as `rnncodec eval` takes it, over each curve's rising
points. Tune on training images; run Kodak only to confirm the choice, with `--distortions` none.
`--summarise JSON` prints the tables again from a run's points, measuring nothing.

    .venv/bin/python bench/quality_distortion.py DATASET [--skip N] [--limit N] [--distortions NAME …]
        [--real Q …] [--cache DIR] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

import rnncodec
from rnncodec import container, quality, rate
from rnncodec.codec import decode
from rnncodec.config import STRIDE
from rnncodec.eval.bd import bd_rate, rising
from rnncodec.eval.codecs import available
from rnncodec.eval.metrics import to_db
from rnncodec.eval.runner import dataset_images
from rnncodec.image import read_image
from rnncodec.quality import gaussian_window, ms_ssim_gradient, ms_ssim_rgb, psnr_rgb, ssim_map

EXPONENTS = np.arange(-2.0, -8.01, -0.5)  # the λ = 10^e each distortion is swept over
QUALITIES = (0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 80.0, 100.0)  # `rnncodec eval`'s rnncodec-quality sweep


class FirstPass:
    """An image's whole iterations, as real files: each prefix's bytes and reconstruction."""

    def __init__(self, pixels: np.ndarray, cache: Path | None, name: str) -> None:
        stored = cache and cache / f"{name}.npz"
        if stored and stored.exists():
            saved = np.load(stored)
            self.data, self.recons = saved["data"].tobytes(), saved["recons"]
        else:
            self.data = rnncodec.compress(pixels, iterations=16)
            self.recons = np.stack([np.full_like(pixels, 128)] + [decode(self.data, k).pixels for k in range(1, 17)])
            if stored:
                np.savez(stored, data=np.frombuffer(self.data, np.uint8), recons=self.recons)
        self.header, self.chunks = container.read(self.data)
        if self.header.tile < max(pixels.shape[:2]):
            raise SystemExit(f"{name}: several tiles; this bench composes one-tile images only")
        self.pixels, self.sizes = pixels, container.prefix_sizes(self.header, self.chunks)
        self.gradients: dict[int, np.ndarray] = {}  # MS-SSIM's, at whole iterations

    def compose(self, counts: np.ndarray) -> np.ndarray:
        index = np.kron(counts, np.ones((STRIDE, STRIDE), np.intp))[: self.pixels.shape[0], : self.pixels.shape[1]]
        return np.take_along_axis(self.recons, index[None, ..., None], 0)[0]

    def estimate(self, counts: np.ndarray) -> int:
        """The bytes of the file of these counts, as the encoder estimates them before coding."""
        segments = [container.split_segments(payload, 1) for payload, _ in self.chunks]
        return round(container.estimated_size(self.header, segments, [counts]))


def point(pixels: np.ndarray, size: int, recon: np.ndarray) -> dict:
    return {"bpp": size * 8 / pixels[..., 0].size, "psnr": psnr_rgb(pixels, recon), "ms_ssim": ms_ssim_rgb(pixels, recon)}


# -- the distortions: each maps (first pass, λ) to every block's d_b(c) for c = 0…16 ----------------
def luma_masked(flat: float):
    """`quality.masked_error`, what `--quality` ships, at C = flat."""
    return lambda fp, lam: quality.masked_error(fp.recons, fp.pixels, flat)


def rgb_masked(flat: float):
    """`quality.masked_error` with σ²_b the mean of the RGB channels' variances instead of luma's."""
    def table(fp: FirstPass, lam: float) -> np.ndarray:
        x = fp.pixels.astype(np.float32) / 255
        n = quality.block_sums(np.ones_like(x[..., 0]))
        var = np.mean([quality.block_sums(x[..., ch] ** 2) / n - (quality.block_sums(x[..., ch]) / n) ** 2 for ch in range(3)], 0)
        return quality.squared_error(fp.recons, fp.pixels) * (flat / (var + flat))
    return table


def ssim_loss(fp: FirstPass) -> np.ndarray:
    """Each block's mean of 1 − SSIM (7×7 Gaussian, the encoder's `ssim_map`) after c iterations."""
    if not hasattr(fp, "ssim"):
        x = torch.from_numpy(fp.pixels.copy()).permute(2, 0, 1)[None].float() / 255 - 0.5
        y = torch.from_numpy(fp.recons).permute(0, 3, 1, 2).float() / 255 - 0.5
        loss = 1 - ssim_map(x.expand_as(y), y, gaussian_window()).mean(1).numpy()
        fp.ssim = quality.block_sums(loss) / STRIDE**2
    return fp.ssim


def mixed_ssim(weight: float):
    """Squared error plus `weight` × the SSIM loss, scaled so that weight 1 values a dB of PSNR and
    a dB of SSIM alike, at whole iterations of the plain squared error's mean count at this λ."""
    def table(fp: FirstPass, lam: float) -> np.ndarray:
        mse, loss = quality.squared_error(fp.recons, fp.pixels), ssim_loss(fp)
        k = reference(mse, lam)
        return mse + weight * mse[k].mean() / loss[k].mean() * loss
    return table


def reference(mse: np.ndarray, lam: float) -> int:
    counts = rate.choose([rate.window(mse, 1, len(mse))], lam)[0]
    return int(np.clip(np.rint(counts.mean()), 1, len(mse) - 2))


def mixed_ms_ssim(weight: float):
    """Squared error plus `weight` × `quality.ms_ssim_change` (linearised at whole iterations of the
    plain squared error's mean count at this λ), weight 1 valuing a dB of each alike."""
    def table(fp: FirstPass, lam: float) -> np.ndarray:
        mse = quality.squared_error(fp.recons, fp.pixels)
        k = reference(mse, lam)
        if k not in fp.gradients:
            fp.gradients[k] = ms_ssim_gradient(fp.pixels, fp.recons[k])
        change = quality.ms_ssim_change(fp.recons, k, {k: fp.gradients[k]})
        scale = mse[k].sum() / (1 - ms_ssim_rgb(fp.pixels, fp.recons[k]))
        return mse + weight * scale * change
    return table


DISTORTIONS = {
    "mse": lambda fp, lam: quality.squared_error(fp.recons, fp.pixels),
    **{f"masked luma C={c:g}": luma_masked(c) for c in (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)},
    **{f"masked rgb C={c:g}": rgb_masked(c) for c in (3e-3, 1e-2, 3e-2)},
    **{f"mse + {w:g}×ssim": mixed_ssim(w) for w in (0.5, 1.0, 2.0)},
    "ssim": lambda fp, lam: ssim_loss(fp),
    **{f"mse + {w:g}×ms-ssim change": mixed_ms_ssim(w) for w in (0.5, 1.0, 2.0)},
}


def jpeg_points(pixels: np.ndarray) -> list[dict]:
    jpeg = available()["jpeg"]
    return [point(pixels, len(data), jpeg.decode(data)) for data in (jpeg.encode(pixels, q) for q in jpeg.qualities)]


def mean_curve(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per setting (in the rows' order), the mean bpp, PSNR and MS-SSIM (in dB) over the images."""
    settings = list(dict.fromkeys(r[key] for r in rows))
    mean = lambda s, f: float(np.mean([f(r) for r in rows if r[key] == s]))  # noqa: E731
    return (np.array([mean(s, lambda r: r["bpp"]) for s in settings]), np.array([mean(s, lambda r: r["psnr"]) for s in settings]),
            np.array([to_db(mean(s, lambda r: r["ms_ssim"])) for s in settings]))


def bd(anchor: tuple, test: tuple, metric: int) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return bd_rate(*rising(anchor[0], anchor[metric]), *rising(test[0], test[metric]))
        except ValueError:
            return float("nan")


def measure(path: Path, distortions: list[str], qualities: list[float], cache: Path | None) -> list[dict]:
    """An image's points: whole iterations, JPEG, each distortion at each λ, and real `--quality` files."""
    pixels = read_image(path).pixels
    fp = FirstPass(pixels, cache, path.stem)
    rows = [{"kind": "whole iterations", "setting": k, **point(pixels, fp.sizes[k - 1], fp.recons[k])} for k in range(1, 17)]
    rows += [{"kind": "jpeg", "setting": i, **pt} for i, pt in enumerate(jpeg_points(pixels))]
    for name in distortions:
        for e in EXPONENTS:
            table = DISTORTIONS[name](fp, 10.0**e)
            counts = rate.choose([rate.window(table, 1, len(table))], 10.0**e)[0]
            rows.append({"kind": name, "setting": float(e), **point(pixels, fp.estimate(counts), fp.compose(counts))})
    for q in qualities:
        data = rnncodec.compress(pixels, quality=q)
        rows.append({"kind": "--quality (real files)", "setting": q, **point(pixels, len(data), decode(data).pixels)})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("--skip", type=int, default=0, help="leave out the first N images")
    p.add_argument("--limit", type=int, help="then take N")
    p.add_argument("--distortions", nargs="*", default=list(DISTORTIONS), help=f"of: {', '.join(DISTORTIONS)}")
    p.add_argument("--real", type=float, nargs="*", default=[], metavar="Q", help="also real --quality Q files")
    p.add_argument("--cache", type=Path, help="keep each image's first pass here")
    p.add_argument("--json", type=Path, help="write every point here")
    p.add_argument("--summarise", type=Path, metavar="JSON", help="a run's points: print its tables, measure nothing")
    args = p.parse_args()
    if args.cache:
        args.cache.mkdir(parents=True, exist_ok=True)
    rows = json.loads(args.summarise.read_text()) if args.summarise else []
    for path in [] if args.summarise else dataset_images(args.dataset)[args.skip :][: args.limit]:
        rows += [{"image": path.name, **row} for row in measure(path, args.distortions, args.real, args.cache)]
        print(f"{path.name}: done", file=sys.stderr, flush=True)
        if args.json:  # after each image: a long run's points survive it
            args.json.write_text(json.dumps(rows, indent=0))
    kinds = dict.fromkeys(r["kind"] for r in rows)
    curves = {kind: mean_curve([r for r in rows if r["kind"] == kind], "setting") for kind in kinds}
    print(f"{len({r['image'] for r in rows})} images from {args.dataset}\n")
    print("| distortion | BD-rate vs whole iterations, PSNR / MS-SSIM dB | vs JPEG, PSNR / MS-SSIM dB | bpp at each setting |")
    print("|---|---|---|---|")
    for kind, curve in curves.items():
        if kind != "jpeg":
            cells = [f"{bd(curves[anchor], curve, 1):+.1f} % / {bd(curves[anchor], curve, 2):+.1f} %"
                     for anchor in ("whole iterations", "jpeg")]
            settings = list(dict.fromkeys(r["setting"] for r in rows if r["kind"] == kind))
            rates = " ".join(f"{s:g}:{b:.3f}" for s, b in zip(settings, curve[0]))
            print(f"| {kind} | {cells[0]} | {cells[1]} | {rates} |")
    real = [r for r in rows if r["kind"] == "--quality (real files)"]
    if real:
        settings = list(dict.fromkeys(r["setting"] for r in real))
        mean = {k: [np.mean([r[k] for r in real if r["setting"] == s]) for s in settings] for k in ("bpp", "psnr", "ms_ssim")}
        print("\n| quality | " + " | ".join(f"{s:g}" for s in settings) + " |\n|---|" + "---:|" * len(settings))
        for key, name, digits in (("bpp", "bpp", 4), ("psnr", "PSNR", 2), ("ms_ssim", "MS-SSIM", 4)):
            print(f"| {name} | " + " | ".join(f"{v:.{digits}f}" for v in mean[key]) + " |")


if __name__ == "__main__":
    main()
