"""Throughput of the Dask recipe (README.md, "On a Dask cluster") with 1, 2, … workers.

    .venv/bin/python bench/dask_scaleout.py IMAGE … [--workers 1 2] [--iterations 8] [--rounds 2]

Each worker is a process with one thread (Dask's nanny sets OMP_NUM_THREADS=1). The model is
loaded on every worker before the clock starts, as a long job pays that once per worker; then
the images are compressed `rounds` times over (into a fresh folder each time) through
`rnncodec.batch.compress_files` on the cluster's executor, exactly as the recipe does.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from dask.distributed import Client, LocalCluster
from PIL import Image

from rnncodec.batch import compress_files
from rnncodec.zoo import load_image_model


def _warm() -> int:
    """Runs on a worker: load the packaged model, say how many torch threads it has."""
    load_image_model()
    return torch.get_num_threads()


def _pixels(path: Path) -> int:
    with Image.open(path) as im:
        return im.width * im.height


def measure(images: list[Path], workers: int, iterations: int, rounds: int) -> dict:
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client, tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        threads = client.run(_warm)
        load_s = time.perf_counter() - start
        tasks = [(p, Path(tmp) / str(r) / f"{p.name}.rnc") for r in range(rounds) for p in images]
        cpu = sum(client.run(time.process_time).values())
        start = time.perf_counter()
        errors = [error for _, error in compress_files(tasks, options={"iterations": iterations},
                                                        executor=client.get_executor(pure=False)) if error]
        seconds = time.perf_counter() - start
        cpu = sum(client.run(time.process_time).values()) - cpu
        out_bytes = sum(dst.stat().st_size for _, dst in tasks if dst.exists())
    if errors:
        raise SystemExit("\n".join(errors))
    pixels = sum(_pixels(p) for p in images) * rounds
    return {"workers": workers, "torch_threads": sorted(set(threads.values())), "load_s": load_s, "files": len(tasks),
            "seconds": seconds, "images_per_s": len(tasks) / seconds, "mp_per_s": pixels / 1e6 / seconds,
            "cpu_per_image": cpu / len(tasks), "cores": cpu / seconds,
            "bpp": out_bytes * 8 / pixels, "load_average": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="+", type=Path)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--iterations", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2, help="times each image is compressed per measurement")
    args = ap.parse_args()
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {len(args.images)} images × "
          f"{args.rounds} at {args.iterations} iterations")
    print(f"{os.cpu_count()} cores. Workers' CPU s per image, and the cores they got (their CPU s over wall s); the "
          "load average (1 min) after each run: above the worker count, other processes shared the cores")
    print("| workers | torch threads each | model load s | files | wall s | images/s | MP/s | CPU s/image | cores got | bpp "
          "| load average |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.workers:
        r = measure(args.images, n, args.iterations, args.rounds)
        print(f"| {r['workers']} | {','.join(map(str, r['torch_threads']))} | {r['load_s']:.2f} | {r['files']} | "
              f"{r['seconds']:.1f} | {r['images_per_s']:.3f} | {r['mp_per_s']:.3f} | {r['cpu_per_image']:.2f} | "
              f"{r['cores']:.2f} | {r['bpp']:.3f} | {r['load_average']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
