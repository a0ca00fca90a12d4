"""Portability of decoding: one file decoded under caps that stand in for other machines.

    .venv/bin/python bench/portability.py ../shared/data/kodak/kodim23.png --iterations 4 [--precision fp32] [--caps cuda]

The image is compressed here (default coder: coder 2), then decoded by `rnncodec decompress` in
child processes, each under one cap: other instruction sets for ATen's and oneDNN's kernels, no
oneDNN, 1 or 2 threads. A decode that succeeds has every chunk's bits CRC intact, so the range
decoder stayed in step: its bits are the encoder's. The pixels come from the float image model
and may differ: the table gives how many 8-bit values differ from this process's own decode (at
torch's default thread count), and by how much at most, in the image model's `--precision`. The
`cuda` row decodes in this process with the image model on the GPU (fp32), where there is one.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rnncodec.codec import decode, encode
from rnncodec.image import read_image
from rnncodec.precision import PRECISIONS, resolve

# VARIABLE=value for the child's environment; ONEDNN=0 is this script's own: oneDNN switched off.
CAPS = ["ATEN_CPU_CAPABILITY=default", "ATEN_CPU_CAPABILITY=avx2", "DNNL_MAX_CPU_ISA=SSE41", "DNNL_MAX_CPU_ISA=AVX2",
        "OPENBLAS_CORETYPE=Prescott", "OPENBLAS_CORETYPE=Haswell", "ONEDNN=0", "OMP_NUM_THREADS=1", "OMP_NUM_THREADS=2", "cuda"]
_CHILD = """
import sys, torch
torch.backends.mkldnn.enabled = False
from rnncodec.cli import main
sys.exit(main(sys.argv[1:]))
"""


def decode_under(cap: str, rnc: Path, png: Path, precision: str) -> subprocess.CompletedProcess:
    """`rnncodec decompress` in a child process under one cap."""
    name, value = cap.split("=")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if name == "ONEDNN":
        cmd = [sys.executable, "-c", _CHILD]
    else:
        env[name] = value
        cmd = [sys.executable, "-m", "rnncodec.cli"]
    return subprocess.run([*cmd, "decompress", str(rnc), "-o", str(png), "-f", "-q", "--precision", precision], env=env,
                          capture_output=True, text=True, timeout=600)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", type=Path)
    ap.add_argument("--iterations", type=int, default=4)
    ap.add_argument("--precision", choices=PRECISIONS, default="auto")
    ap.add_argument("--caps", nargs="+", choices=CAPS, default=CAPS, help="the rows to run (default: all)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp())
    rnc = work / "file.rnc"
    rnc.write_bytes(encode(read_image(args.image), iterations=args.iterations).data)
    here = decode(rnc.read_bytes(), precision=args.precision).pixels.astype(int)
    print(f"{args.image.name}, {args.iterations} iterations, {rnc.stat().st_size} bytes; image model in "
          f"{resolve(args.precision)}, this process at {torch.get_num_threads()} threads\n")
    print("| cap | decodes (bits identical) | 8-bit values that differ | max abs difference |\n|---|---|---:|---:|")
    for cap in args.caps:
        if cap == "cuda":
            if not torch.cuda.is_available():
                print("| cuda | not run: no CUDA GPU here | – | – |")
                continue
            diff = np.abs(decode(rnc.read_bytes(), device="cuda").pixels.astype(int) - here)  # FormatError if bits differ
            print(f"| cuda ({torch.cuda.get_device_name()}) | yes | {int((diff > 0).sum())} of {diff.size} "
                  f"({(diff > 0).mean():.4%}) | {int(diff.max())} |")
            continue
        png = work / "out.png"
        done = decode_under(cap, rnc, png, args.precision)
        if done.returncode:
            print(f"| {cap} | no: {done.stderr.strip()} | – | – |")
            continue
        diff = np.abs(np.asarray(Image.open(png)).astype(int) - here)
        print(f"| {cap} | yes | {int((diff > 0).sum())} of {diff.size} ({(diff > 0).mean():.4%}) | {int(diff.max())} |")


if __name__ == "__main__":
    main()
