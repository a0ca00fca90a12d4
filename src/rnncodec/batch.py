"""Compressing many images in parallel: one bad file is reported, the others go on.

The work runs on any `concurrent.futures.Executor`: local processes by default, or a Dask
cluster's (`client.get_executor(pure=False)`, README "On a Dask cluster"). Each worker process
loads the model once (`worker_backend`) and writes each output atomically.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from contextlib import ExitStack, contextmanager
from functools import lru_cache
from multiprocessing import active_children, get_context, resource_tracker
from pathlib import Path

from PIL import Image

from .backend import DEFAULT_ENGINE, Backend, import_torch, load_backend
from .errors import Note, RNNCodecError, Stopped
from .fileio import atomic_write, output_name, signals_held
from .image import list_images, pillow_opens, read_image

# What a worker's threads share: the model cache (the first thread loads, the others wait) and
# the warnings machinery, which catch_warnings changes for the whole process.
_SHARED = threading.Lock()


_busy = False  # a worker process is inside a task (its output may be half written)


def _stop_worker(signum: int, _frame: object) -> None:
    """A worker told to stop: mid-task, unwind so the task's temporary output is removed (then
    `_compress_one` exits); idle, exit at once. Never a traceback."""
    if _busy:
        raise Stopped(signum)
    os._exit(128 + signum)


def _init_worker(max_pixels: int | None, engine: str) -> None:
    if engine == "torch":  # N processes × 1 thread each: no oversubscription
        import_torch().set_num_threads(1)
    else:
        from .onnx_codec import OnnxImageModel

        OnnxImageModel.threads = 1
    if max_pixels is not None:  # this process is the application's: Pillow's cap as the parent's --max-pixels
        Image.MAX_IMAGE_PIXELS = max_pixels
    # ^C and a closed terminal signal the whole process group: the parent alone decides (_spawning),
    # and stops its workers with SIGTERM; a worker whose parent died (even by SIGKILL) gets SIGTERM too
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_worker)
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass


def _stop_workers(executor: ProcessPoolExecutor) -> None:
    """Stop at once (a signal, or an error in the caller): queued files are cancelled, and the
    workers are sent SIGTERM, so that each removes the output it was writing and exits."""
    with signals_held():
        executor.shutdown(wait=False, cancel_futures=True)
        workers = active_children()
        for p in workers:
            p.terminate()
        for p in workers:
            p.join(10)
            if p.is_alive():
                p.kill()


worker_backend = lru_cache(maxsize=2)(load_backend)  # the model, once per worker process


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

    global _busy
    caught: list[warnings.WarningMessage] = []
    _busy = True
    try:
        with _SHARED, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Note)
            model: Backend = worker_backend(engine, model_path, options.get("precision", "auto"))
            bit_coder = make_coder(coder, model.model_id)
            image = read_image(src, **reading)  # where notes arise (16-bit, animated)
        enc = encode(image, model=model, coder=bit_coder, **options)
        dst.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(dst, lambda f: f.write(enc.data), force)
        error = None
    except (RNNCodecError, ValueError, OSError, MemoryError) as exc:
        exc = exc if not isinstance(exc, MemoryError) else "out of memory"
        error = f"{src}: {exc}" if str(src) not in str(exc) else str(exc)
    except Stopped as exc:  # its output removed on the way here (atomic_write): now leave
        os._exit(128 + exc.signum)
    finally:
        _busy = False
    return error, [str(w.message) for w in caught if issubclass(w.category, Note)]


@contextmanager
def _spawning() -> Iterator[None]:
    """Worker processes start ignoring SIGINT and SIGHUP (ignored dispositions pass across exec),
    which a terminal sends to the whole group while a worker still imports torch: the parent alone
    decides. SIGTERM keeps its default action until _init_worker sets its handler, so a worker
    stopped while it starts, with no output yet, dies at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {signum: signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGINT, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)


def _start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (a process in our group, which the executor's
    queues need) with SIGHUP ignored and its warnings off, before the executor would start it.
    It ignores SIGINT and SIGTERM itself, but a closed terminal's SIGHUP would kill it, and its
    relaunch prints tracebacks; and on a stop its notes about the semaphores it then frees are
    no news to a user who stopped the run. Both settings pass to it across its exec."""
    if threading.current_thread() is not threading.main_thread():
        resource_tracker.ensure_running()
        return
    old, options = signal.signal(signal.SIGHUP, signal.SIG_IGN), list(sys.warnoptions)
    sys.warnoptions.append("ignore::UserWarning:multiprocessing.resource_tracker")
    try:
        resource_tracker.ensure_running()
    finally:
        signal.signal(signal.SIGHUP, old)
        sys.warnoptions[:] = options


def _stopper(executor: ProcessPoolExecutor):
    """An exit callback: leaving early (a signal, an error, the caller closing the generator)
    stops the workers at once rather than waiting for the files they are on."""

    def stop(kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            _stop_workers(executor)

    return stop


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
            _start_resource_tracker()
            executor = ProcessPoolExecutor(max_workers=max(1, processes), mp_context=get_context("spawn"),
                                           initializer=_init_worker, initargs=(reading.get("max_pixels"), engine))
            stack.callback(executor.shutdown)
            stack.push(_stopper(executor))
        with _spawning():  # the workers start at submit
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
