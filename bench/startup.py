"""Install and start-up: the whole `rnncodec` process, as a user runs it, in several environments.

    python bench/startup.py IMAGE --env NAME 'PYTHON…' 'EXTRA FLAGS' [--env …] [--repeats 5]
        [--iterations 4] [--quality 50] [--large 6000x4000] [--large-iterations 8]

Each environment is an interpreter command that runs `-m rnncodec.cli` (e.g. the light install's
venv, or `env PYTHONPATH=… python` for another checkout) and the flags its commands add (e.g.
`--engine torch`). For each, in turn: `compress -i N` and `compress --quality Q` of IMAGE, and
`decompress` of each file to PNG, each a fresh process, timed best of --repeats (wall seconds), with
each output's bytes and its peak RSS (the process's own ru_maxrss); with --large, IMAGE upscaled
(Lanczos) to that size, compressed at --large-iterations and decompressed, once. It prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import tempfile
import time
from pathlib import Path

from PIL import Image


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed: {proc.stderr.read().decode()}")
    return wall, usage.ru_maxrss / 1024


def best(cmd: list[str], repeats: int) -> dict:
    runs = [timed(cmd) for _ in range(repeats)]
    return {"seconds": min(r[0] for r in runs), "peak_mib": max(r[1] for r in runs), "command": shlex.join(cmd)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", type=Path)
    ap.add_argument("--env", nargs=3, action="append", required=True, metavar=("NAME", "PYTHON", "FLAGS"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=4)
    ap.add_argument("--quality", type=float, default=50)
    ap.add_argument("--large", help="WxH: also the image upscaled to this size")
    ap.add_argument("--large-iterations", type=int, default=8)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp())
    large = None
    if args.large:
        w, h = map(int, args.large.split("x"))
        large = work / "large.png"
        Image.open(args.image).convert("RGB").resize((w, h), Image.Resampling.LANCZOS).save(large, compress_level=1)
    results = {}
    for name, python, flags in args.env:
        cli = [*shlex.split(python), "-m", "rnncodec.cli"]
        extra = shlex.split(flags)
        rows = {}
        for case, rate in ((f"i{args.iterations}", ["-i", str(args.iterations)]),
                           (f"quality{args.quality:g}", ["--quality", str(args.quality)])):
            rnc = work / f"{name}-{case}.rnc"
            rows[f"compress {case}"] = best([*cli, "compress", str(args.image), "-o", str(rnc), "-f", "-q", *rate, *extra],
                                            args.repeats)
            rows[f"compress {case}"]["bytes"] = rnc.stat().st_size
            png = work / f"{name}-{case}.png"
            rows[f"decompress {case}"] = best([*cli, "decompress", str(rnc), "-o", str(png), "-f", "-q", *extra], args.repeats)
            rows[f"decompress {case}"]["bytes"] = png.stat().st_size
        if large:
            rnc = work / f"{name}-large.rnc"
            rows["compress large"] = best([*cli, "compress", str(large), "-o", str(rnc), "-f", "-q", "-i",
                                           str(args.large_iterations), *extra], 1)
            rows["decompress large"] = best([*cli, "decompress", str(rnc), "-o", str(work / f"{name}-large.png"), "-f",
                                             "-q", *extra], 1)
        results[name] = rows
    print(json.dumps({"image": str(args.image), "repeats": args.repeats, "large": args.large, "results": results}, indent=1))


if __name__ == "__main__":
    main()
