"""`rnncodec compare` and `eval --html`: a static web page that shows rnncodec beside the classical
codecs at the same real rate, so that a reader judges the pictures, not only the curves.

For each of rnncodec's rates (an iteration count) every classical codec is coded at the largest
quality whose file is no larger than rnncodec's (`match_rate`): no codec gets more bits than
rnncodec, unless even its lowest quality is larger. Each picture is decoded from a real file kept
beside the page, whose size gives the bpp shown, and saved as PNG for the browser. The page is
compare.html with its data as one JSON blob: no network, no server, relative links only.
"""
from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from ..codec import encode
from ..errors import OptionError, OutputError
from ..fileio import atomic_write
from ..image import read_image
from .codecs import Codec, available
from .curves import Curve
from .metrics import all_metrics, bpp
from .plot import plot_metric
from .runner import RNNCODEC, Job, pool_map, prefixes, rnncodec_model, run_jobs, summarize

TEMPLATE = Path(__file__).parent / "compare.html"
PAGE_METRICS = ("ms-ssim-rgb-db", "psnr-rgb")  # one RD plot each
SUFFIXES = {RNNCODEC: "rnc", "jpeg": "jpg", "jpeg2000": "jp2"}  # the others' files are named by the codec


def quality_grid(codec: Codec) -> np.ndarray:
    """The qualities `match_rate` searches, in rising rate: JPEG 2000's quality is its target bpp
    (fine steps up to 8 bpp), the others' a quality from 1 to 100."""
    return np.geomspace(0.02, 8.0, 128) if codec.name == "jpeg2000" else np.arange(1.0, 101.0)


def match_rate(codec: Codec, pixels: np.ndarray, target_bpp: float) -> tuple[float, bytes]:
    """(quality, file) at the largest quality of `quality_grid` whose real file is no larger than
    `target_bpp`, or the lowest quality if none is. A bisection: file sizes rise with quality."""
    h, w = pixels.shape[:2]
    grid = quality_grid(codec)
    best = (float(grid[0]), codec.encode(pixels, grid[0]))
    lo, hi = 0, len(grid) - 1  # grid[lo] fits, as far as the search knows
    if bpp(len(best[1]), h, w) > target_bpp:
        return best
    while lo < hi:
        mid = (lo + hi + 1) // 2
        data = codec.encode(pixels, grid[mid])
        if bpp(len(data), h, w) <= target_bpp:
            lo, best = mid, (float(grid[mid]), data)
        else:
            hi = mid - 1
    return best


def _picture(folder: Path, codec: str, k: int, data: bytes, decoded: np.ndarray, original: np.ndarray,
             quality: float) -> dict:
    """Keep a codec's real file and its decoded PNG in `folder`; their page entry, paths relative to the page."""
    stem = f"{codec}-{k}"
    coded = folder / f"{stem}.{SUFFIXES.get(codec, codec)}"
    coded.write_bytes(data)
    Image.fromarray(decoded).save(folder / f"{stem}.png")
    h, w = original.shape[:2]
    metrics = {m: v if math.isfinite(v) else None for m, v in all_metrics(original, decoded).items()}  # JSON has no inf
    return {"src": f"{folder.name}/{stem}.png", "file": f"{folder.name}/{coded.name}", "bytes": len(data),
            "bpp": bpp(len(data), h, w), "quality": quality, "metrics": metrics}


def picture_set(image: Path, out: Path, iterations: list[int], codecs: list[str], model: str | None) -> dict:
    """One image's page data: its original and, at each of rnncodec's `iterations`, every codec's
    picture at that real rate, with the files under out/<image stem>/. `codecs`: rnncodec first."""
    pixels = read_image(image).pixels
    h, w = pixels.shape[:2]
    folder = out / image.stem
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(folder / "original.png")
    net = rnncodec_model(model)
    classical = available()
    rates = []
    for k, prefix, decoded in prefixes(encode(pixels, iterations=max(iterations), model=net).data, net):
        if k not in iterations:
            continue
        target = bpp(len(prefix), h, w)
        pictures = {RNNCODEC: _picture(folder, RNNCODEC, k, prefix, decoded, pixels, k)}
        for name in codecs[1:]:
            quality, data = match_rate(classical[name], pixels, target)
            pictures[name] = _picture(folder, name, k, data, classical[name].decode(data), pixels, quality)
        rates.append({"iterations": k, "bpp": target, "pictures": pictures})
    return {"name": image.stem, "width": w, "height": h, "original": f"{folder.name}/original.png", "rates": rates}


def _curves(rows: list[dict], codecs: list[str]) -> list[Curve]:
    """Each codec's rate points averaged over the images in `rows` (as `eval` summarises them)."""
    curves = []
    for c in codecs:
        res = summarize(rows, c, "")["results"]
        curves.append(Curve(c, np.asarray(res["bpp"]), {m: np.asarray(res[m]) for m in PAGE_METRICS},
                            quality=res["quality"]))
    return curves


def _plots(curves: list[Curve], out: Path, folder: Path, title: str, top_iterations: int) -> list[dict]:
    """The RD plots of `curves` as PNGs in `folder`, over rates up to 1.5× rnncodec's highest on the page."""
    ours = curves[0]
    max_bpp = 1.5 * float(ours.bpp[ours.quality.index(top_iterations)])
    plots = []
    for metric in PAGE_METRICS:
        path = folder / f"rd-{metric}.png"
        plot_metric(curves, metric, path, max_bpp=max_bpp, title=title)
        plots.append({"src": path.relative_to(out).as_posix(), "alt": f"{title}: {metric} against bpp"})
    return plots


def write_page(path: Path, data: dict, force: bool = False) -> None:
    """The template with `data` as its one JSON blob; `</` is escaped so that no string ends the script."""
    blob = json.dumps(data, allow_nan=False, separators=(",", ":")).replace("</", "<\\/")
    html = TEMPLATE.read_text(encoding="utf-8").replace("__PAGE_DATA__", blob)
    atomic_write(path, lambda f: f.write(html.encode()), force)


def check_iterations(iterations: list[int], model: str | None) -> list[int]:
    """The page's rates, sorted, once they are known to be iteration counts the model can code."""
    most = rnncodec_model(model).cfg.iterations
    if not iterations or not all(1 <= k <= most for k in iterations):
        raise OptionError(f"iterations must be between 1 and {most} for this model")
    return sorted(set(iterations))


def build_page(images: list[Path], out: Path, title: str, iterations: list[int], codecs: list[str],
               model: str | None, workers: int, cache: Path, force: bool = False) -> Path:
    """The comparison page of `images` in out/index.html; returns its path.

    `codecs` are `eval`'s names (rnncodec is always shown: its rates are the page's). The RD plots
    come from `eval`'s per-image results under `cache` (its OUT folder, so that `eval --html` reuses
    them); a page of several images also gets their mean curves.
    """
    index = out / "index.html"
    if index.exists() and not force:
        raise OutputError(f"{index} exists (use --force to overwrite)")
    iterations = check_iterations(iterations, model)
    codecs = [RNNCODEC, *(c for c in codecs if c != RNNCODEC)]
    entries = pool_map(partial(picture_set, out=out, iterations=iterations, codecs=codecs, model=model), images, workers,
                       "pictures")
    rows = run_jobs([Job(image, c, cache, model) for c in codecs for image in images], workers)
    for image, entry in zip(images, entries):
        curves = _curves([r for r in rows if r["image"] == image.stem], codecs)
        entry["plots"] = _plots(curves, out, out / entry["name"], entry["name"], iterations[-1])
    plots = _plots(_curves(rows, codecs), out, out, f"{title} (mean of {len(images)})", iterations[-1]) if len(images) > 1 else []
    write_page(index, {"title": title, "codecs": codecs, "images": entries, "plots": plots}, force)
    return index
