"""`rnncodec eval`: rnncodec and the classical codecs over a folder of images, resumably.

One job is one image under one codec: every rate point of it, cached as one JSON file under
OUT/cache/<codec>/, so that an interrupted run picks up where it stopped. rnncodec runs in the
engine `compress` runs by default. It is encoded once at its most iterations into a real .rnc file
(OUT/streams/); each prefix of that file, cut at a chunk boundary, is exactly the file `rnncodec
compress --iterations K` writes, and is decoded and measured as such. `rnncodec-ms-ssim` and
`rnncodec-quality` are the same model coded the way `compress --target-ms-ssim T` and `compress
--quality Q` code it: one file per setting, its bit rate spatially adaptive (RNNCODEC_MODES).
"""
from __future__ import annotations

import csv
import hashlib
import json
import multiprocessing as mp
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from tqdm import tqdm

from .. import container
from ..backend import DEFAULT_ENGINE, Backend, load_backend
from ..codec import decode, encode
from ..errors import Note
from ..fileio import atomic_write
from ..image import list_images, read_image
from ..onnx_codec import OnnxImageModel
from ..rate import Rate
from ..zoo import default_coder
from .codecs import Codec, available
from .curves import METRICS
from .metrics import all_metrics, bpp, to_db

RNNCODEC = "rnncodec"
# rnncodec as a user's rate option codes it, one file per setting: not among the default codecs (each
# file is a search or a first pass of every iteration). Name: (the `Rate` option, the sweep, its meaning).
RNNCODEC_MODES = {
    "rnncodec-ms-ssim": ("target_ms_ssim", (0.90, 0.92, 0.94, 0.95, 0.96, 0.97, 0.975, 0.98, 0.985),
                         "MS-SSIM target, spatially adaptive bit rates (compress --target-ms-ssim)"),
    "rnncodec-quality": ("quality", (0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 80.0, 100.0),
                         "quality 0–100: every block stopped at one rate–distortion slope (compress --quality)"),
}
CACHE_VERSION = 1
T, R = TypeVar("T"), TypeVar("R")


@dataclass(frozen=True)
class Job:
    image: Path
    codec: str
    out: Path
    model: str | None  # rnncodec weights; None: the packaged model


def rnncodec_model(model: str | None) -> Backend:
    """The image model `model` names (None: the packaged one) in the engine `rnncodec compress` runs by
    default: what eval and the comparison page measure is what users get."""
    return load_backend(DEFAULT_ENGINE, model, "auto")


def prefixes(data: bytes, model: Backend) -> Iterator[tuple[int, bytes, np.ndarray]]:
    """(K, the file cut after chunk K, its decoded pixels) for every K: each cut is exactly the file
    `rnncodec compress --iterations K` writes, so its size is rnncodec's real rate at K."""
    header, chunks = container.read(data)
    for k in range(1, len(chunks) + 1):
        prefix = container.truncate(header, chunks, k)
        yield k, prefix, decode(prefix, model_lookup=lambda _: model).pixels  # CRCs catch a model not the file's


def _rnncodec_rows(job: Job, pixels: np.ndarray) -> list[dict]:
    """Encode once into OUT/streams/, then decode and measure every chunk prefix of that file."""
    model = rnncodec_model(job.model)
    stream = job.out / "streams" / f"{job.image.stem}.rnc"
    stream.parent.mkdir(parents=True, exist_ok=True)
    enc = encode(pixels, iterations=model.cfg.iterations, model=model)
    atomic_write(stream, lambda f: f.write(enc.data), force=True)
    return [{"quality": k, "bytes": len(prefix), **all_metrics(pixels, decoded)}
            for k, prefix, decoded in prefixes(stream.read_bytes(), model)]


def _mode_rows(job: Job, pixels: np.ndarray) -> list[dict]:
    """One file per setting of an RNNCODEC_MODES option, as `compress` writes it. A target beyond
    the image's reach stops at the model's most iterations (encode's Note, silenced here): its row
    scores what that file reaches, so the curve flattens instead of claiming the target."""
    model = rnncodec_model(job.model)
    keyword, sweep, _ = RNNCODEC_MODES[job.codec]
    rows = []
    for t in sweep:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Note)
            data = encode(pixels, Rate(**{keyword: t}), model=model).data
        decoded = decode(data, model_lookup=lambda _: model).pixels
        rows.append({"quality": t, "bytes": len(data), **all_metrics(pixels, decoded)})
    return rows


def _classical_rows(codec: Codec, pixels: np.ndarray) -> list[dict]:
    rows = []
    for q in codec.qualities:
        data = codec.encode(pixels, q)
        rows.append({"quality": q, "bytes": len(data), **all_metrics(pixels, codec.decode(data))})
    return rows


def _cache_key(job: Job, digest: str) -> dict:
    """What the cached rows depend on: a changed model, library or sweep recomputes them."""
    if job.codec == RNNCODEC or job.codec in RNNCODEC_MODES:
        model = rnncodec_model(job.model)
        coder = default_coder(model.model_id)
        setup = {"model": model.model_id.hex(), "precision": model.precision, "coder": coder.coder_id,
                 "entropy_model": coder.model_id.hex()}
        if job.codec in RNNCODEC_MODES:
            setup["qualities"] = list(RNNCODEC_MODES[job.codec][1])
    else:
        codec = available()[job.codec]
        setup = {"description": codec.description, "qualities": list(codec.qualities)}
    return {"version": CACHE_VERSION, "image_sha256": digest, "codec": job.codec, **setup}


def run_job(job: Job) -> list[dict]:
    """One image under one codec: its rows from the cache, or measured and then cached."""
    raw = job.image.read_bytes()
    key = _cache_key(job, hashlib.sha256(raw).hexdigest())
    cache = job.out / "cache" / job.codec / f"{job.image.stem}.json"
    if cache.exists():
        doc = json.loads(cache.read_text())
        if doc.get("key") == key:
            return doc["rows"]
    pixels = read_image(job.image).pixels
    h, w = pixels.shape[:2]
    if job.codec == RNNCODEC:
        rows = _rnncodec_rows(job, pixels)
    elif job.codec in RNNCODEC_MODES:
        rows = _mode_rows(job, pixels)
    else:
        rows = _classical_rows(available()[job.codec], pixels)
    rows = [{"image": job.image.stem, "codec": job.codec, "bpp": bpp(r["bytes"], h, w), **r} for r in rows]
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(cache, lambda f: f.write(json.dumps({"key": key, "rows": rows}, indent=1).encode()), force=True)
    return rows


def _init_worker() -> None:  # one process per core, one thread each (the model's and the metrics'): more would only contend
    torch.set_num_threads(1)
    OnnxImageModel.threads = 1


def pool_map(work: Callable[[T], R], items: list[T], workers: int, desc: str) -> list[R]:
    """`work` over the items in order, on `workers` processes (one thread each), with a
    progress bar on a terminal."""
    bar = tqdm(total=len(items), desc=desc, unit="job", disable=None)  # None: only on a terminal
    results: list[R] = []
    if workers <= 1 or len(items) <= 1:
        for item in items:
            results.append(work(item))
            bar.update()
    else:
        with mp.get_context("spawn").Pool(min(workers, len(items)), initializer=_init_worker) as pool:
            for result in pool.imap(work, items):
                results.append(result)
                bar.update()
            pool.close()  # let the workers exit, not terminate(): killed ones leave leaked-semaphore warnings
            pool.join()
    bar.close()
    return results


def run_jobs(jobs: list[Job], workers: int) -> list[dict]:
    """All jobs' rows, over `workers` processes."""
    return [row for rows in pool_map(run_job, jobs, workers, "eval") for row in rows]


def summarize(rows: list[dict], codec: str, description: str) -> dict:
    """One codec's rows averaged over images per rate point, in CompressAI's JSON schema.

    `ms-ssim-rgb-db` is the dB value of the mean MS-SSIM, as the anchors' curves are read.
    """
    mine = [r for r in rows if r["codec"] == codec]
    qualities = sorted({r["quality"] for r in mine})
    results: dict[str, list[float]] = {"quality": qualities, "bpp": []}
    results.update({m: [] for m in METRICS})
    for q in qualities:
        at_q = [r for r in mine if r["quality"] == q]
        results["bpp"].append(float(np.mean([r["bpp"] for r in at_q])))
        for m in METRICS:
            results[m].append(float(np.mean([r[m] for r in at_q])))
        results["ms-ssim-rgb-db"][-1] = to_db(results["ms-ssim-rgb"][-1])
    n = len({r["image"] for r in mine})
    return {"name": codec, "description": f"{description}; mean over {n} images", "results": results}


def describe(codec: str, model: str | None) -> str:
    """The results file's description: the codec's setup and library versions."""
    if codec != RNNCODEC and codec not in RNNCODEC_MODES:
        return available()[codec].description
    m = rnncodec_model(model)
    c = m.cfg
    tail = f", last decoder layer {c.tail_width}" if c.tail_width else ""
    quality = "quality = " + ("iterations" if codec == RNNCODEC else RNNCODEC_MODES[codec][2])
    return (f"rnncodec {c.encoder_cell}/{c.framework}, width {c.width}{tail}, model {m.model_id.hex()}, "
            f"coder {default_coder(m.model_id).coder_id}, {m.precision}; {quality}")


def dataset_images(dataset: str | Path, limit: int | None = None) -> list[Path]:
    """The lossless images below `dataset` that `eval` measures (the first `limit`)."""
    images = list_images(dataset, lossless=True)[:limit]
    if not images:
        raise ValueError(f"{dataset}: no lossless images (PNG, PPM, BMP, TIFF)")
    return images


def evaluate(dataset: str | Path, out: str | Path, codecs: list[str], model: str | None = None,
             workers: int = 1, limit: int | None = None) -> dict[str, dict]:
    """Run every codec over the dataset; write OUT/<codec>.json and OUT/per_image.csv."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images = dataset_images(dataset, limit)
    jobs = [Job(img, c, out, model) for c in codecs for img in images]  # rnncodec first: the longest jobs
    rows = run_jobs(jobs, workers)
    summaries = {c: summarize(rows, c, describe(c, model)) for c in codecs}
    for c, doc in summaries.items():
        (out / f"{c}.json").write_text(json.dumps(doc, indent=2) + "\n")
    rows.sort(key=lambda r: (codecs.index(r["codec"]), r["image"], r["quality"]))
    with (out / "per_image.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, ["codec", "image", "quality", "bytes", "bpp", *METRICS])
        writer.writeheader()
        writer.writerows(rows)
    return summaries


def default_codecs() -> list[str]:
    """rnncodec and every classical codec this installation can write."""
    return [RNNCODEC, *available()]


def known_codecs() -> list[str]:
    """What `--codecs` may name: the defaults, and rnncodec as its rate options code it."""
    return [*default_codecs(), *RNNCODEC_MODES]
