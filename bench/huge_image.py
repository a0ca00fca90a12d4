"""Peak memory of compressing and decompressing a 6000×4000 photo through the CLI.

    .venv/bin/python bench/huge_image.py [--iterations 4] [--tile 1024]

The photo is Kodak kodim23 upscaled (Lanczos) to 6000×4000, so it has photo statistics. Each
command runs in its own process; peak RSS is that child's ru_maxrss.
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def run_child(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one CLI run in a fresh process."""
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", "import resource, sys; from rnncodec.cli import main; rc = main(sys.argv[1:]);"
                        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(rc)", *args],
                       capture_output=True, text=True)
    wall = time.perf_counter() - start
    if r.returncode:
        raise SystemExit(r.stderr)
    return wall, int(r.stderr.strip().splitlines()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=4)
    ap.add_argument("--tile", type=int, default=1024)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src, rnc, out = Path(tmp) / "big.png", Path(tmp) / "big.rnc", Path(tmp) / "out.png"
        Image.open(KODAK / "kodim23.png").convert("RGB").resize((6000, 4000), Image.LANCZOS).save(src)
        enc_s, enc_mb = run_child(["compress", str(src), "-o", str(rnc), "--iterations", str(args.iterations),
                                   "--tile", str(args.tile)])
        dec_s, dec_mb = run_child(["decompress", str(rnc), "-o", str(out)])
        bpp = rnc.stat().st_size * 8 / (6000 * 4000)
    print(f"6000×4000, {args.iterations} iterations, tile {args.tile}: {bpp:.3f} bpp\n")
    print("| step | wall s | peak RSS MiB |\n|---|---|---|")
    print(f"| compress | {enc_s:.1f} | {enc_mb:.0f} |\n| decompress | {dec_s:.1f} | {dec_mb:.0f} |")


if __name__ == "__main__":
    main()
