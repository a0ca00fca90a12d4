"""Compressing a folder of images in parallel: one bad file is reported, the others go on."""
from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import torch
from tqdm import tqdm

from .errors import RNNCodecError
from .fileio import atomic_write
from .image import list_images, read_image


def _init_worker() -> None:
    torch.set_num_threads(1)  # N processes × 1 thread each: no oversubscription


def _compress_one(src: Path, dst: Path, force: bool, model_path: str | None, coder: str | None, reading: dict,
                  options: dict) -> str | None:
    """Returns None on success, else a one-line error."""
    from .codec import encode, make_coder
    from .models.store import load_image_model

    try:
        model = load_image_model(model_path)
        enc = encode(read_image(src, **reading), model=model, coder=make_coder(coder, model), **options)
        dst.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(dst, lambda f: f.write(enc.data), force)
    except (RNNCodecError, ValueError, OSError) as exc:
        return f"{src}: {exc}" if str(src) not in str(exc) else str(exc)
    return None


def compress_folder(src_dir: Path, out_dir: Path, jobs: int, force: bool, model_path: str | None, coder: str | None,
                    reading: dict, **options) -> int:
    """Compress every image under src_dir into out_dir (same relative paths, .rnc); returns failures.
    `reading` holds read_image's options (max_pixels, alpha, background), `options` encode's."""
    files = list_images(src_dir)
    failures = 0
    with ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=get_context("spawn"), initializer=_init_worker) as pool:
        futures = [pool.submit(_compress_one, f, out_dir / f.relative_to(src_dir).with_suffix(".rnc"), force,
                               model_path, coder, reading, options) for f in files]
        for fut in tqdm(as_completed(futures), total=len(futures), desc="compressing", unit="image", delay=1.0,
                        disable=None):  # None: only on a terminal
            error = fut.result()
            if error:
                failures += 1
                tqdm.write(f"rnncodec: error: {error}", file=sys.stderr)
    return failures
