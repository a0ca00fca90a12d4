"""Compressing many images in parallel: one bad file is reported, the others go on.

The work runs on any `concurrent.futures.Executor`: local processes by default, or a Dask
cluster's (`client.get_executor(pure=False)`, README "On a Dask cluster"). Each worker process
loads the model once (`load_backend` is cached per process) and writes each output atomically.
"""
from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from contextlib import ExitStack
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path

from .backend import DEFAULT_ENGINE, Backend, import_torch, load_backend
from .errors import Note, RNNCodecError
from .fileio import atomic_write, output_name
from .image import list_images, pillow_opens, read_image

# What a worker's threads share: the model cache (the first thread loads, the others wait) and
# the warnings machinery, which catch_warnings changes for the whole process.
_SHARED = threading.Lock()


def _init_worker(engine: str) -> None:
    """N processes × 1 thread each: no oversubscription."""
    if engine == "torch":
        import_torch().set_num_threads(1)
    else:
        from .onnx_codec import OnnxImageModel

        OnnxImageModel.threads = 1


_backend = lru_cache(maxsize=2)(load_backend)  # the model, once per worker process


def plan_folder(src_dir: Path, out_dir: Path) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """(source, output) pairs for every image file below `src_dir` (an extension Pillow opens, or
    content Pillow recognises), at the same relative path below `out_dir`; and the other files,
    which are skipped."""
    named = set(list_images(src_dir))
    files = sorted(p for p in Path(src_dir).rglob("*") if p.is_file())
    images = [p for p in files if p in named or pillow_opens(p)]
    skipped = sorted(set(files) - set(images))
    return [(p, out_dir / output_name(p.relative_to(src_dir))) for p in images], skipped


def _compress_one(src: Path, dst: Path, force: bool, model_path: str | None, coder: str | None, reading: dict,
                  options: dict, engine: str = DEFAULT_ENGINE) -> tuple[str | None, list[str]]:
    """Compress one file: None or a one-line error, and the notes raised on the way (a worker's
    notes go back to the parent, which shows them as its own)."""
    from .codec import encode
    from .zoo import make_coder

    caught: list[warnings.WarningMessage] = []
    try:
        with _SHARED, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Note)
            model: Backend = _backend(engine, model_path, options.get("precision", "auto"))
            bit_coder = make_coder(coder, model.model_id)
            image = read_image(src, **reading)  # where notes arise (16-bit, animated)
        enc = encode(image, model=model, coder=bit_coder, **options)
        dst.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(dst, lambda f: f.write(enc.data), force)
        error = None
    except (RNNCodecError, ValueError, OSError) as exc:
        error = f"{src}: {exc}" if str(src) not in str(exc) else str(exc)
    return error, [str(w.message) for w in caught if issubclass(w.category, Note)]


def compress_files(tasks: list[tuple[Path, Path]], *, force: bool = False, model_path: str | None = None,
                   coder: str | None = None, reading: dict | None = None, options: dict | None = None, processes: int = 1,
                   executor: Executor | None = None, engine: str = DEFAULT_ENGINE) -> Iterator[tuple[Path, str | None]]:
    """Compress each (source, output) pair; yields each source with None or its one-line error, in
    the order they finish. `reading` holds read_image's options (max_pixels, alpha, background),
    `options` encode's (rate, tile, overlap, precision); `engine` names the model's runtime. Without
    an `executor`, `processes` local processes do the work."""
    reading, options = reading or {}, options or {}
    with ExitStack() as stack:
        if executor is None:
            executor = ProcessPoolExecutor(max_workers=max(1, processes), mp_context=get_context("spawn"),
                                           initializer=_init_worker, initargs=(engine,))
            stack.callback(executor.shutdown, cancel_futures=True)  # stopped early (^C): no file waits its turn
        futures: dict[Future, Path] = {
            executor.submit(_compress_one, src, dst, force, model_path, coder, reading, options, engine): src
            for src, dst in tasks}
        for future in as_completed(futures):
            src = futures[future]
            try:
                error, notes = future.result()
            except Exception as exc:  # the worker died or a bug: still this file's error, and the others go on
                error, notes = f"{src}: {type(exc).__name__}: {exc}", []
            for note in notes:
                warnings.warn(f"{src}: {note}", Note, stacklevel=2)
            yield src, error
