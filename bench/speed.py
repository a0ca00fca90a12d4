"""Encode and decode speed and memory: the model's, the entropy coder's and I/O's shares of wall time.

    .venv/bin/python bench/speed.py --kodak DIR [--image kodim23] [--iterations 2 4 8 16]
        [--large 6000x4000] [--large-iterations 8] [--model PATH] [--precision auto|fp32|bf16]
        [--compressai-python ../cai-venv/bin/python] [--baseline-iterations 4] [--engine torch|onnx]

Cases: a Kodak image at 2, 4, 8 and 16 iterations (0.25–2 bpp before entropy coding), and that
image upscaled (Lanczos) to a large size. Each encode and each decode runs in its own process, so
its peak RSS is its own ru_maxrss. The codec's pieces are timed in place, not re-implemented: the
network's forward pass and decoder generator, and the payload coder's sessions, are wrapped with
timers (in decoding, the entropy decoding that runs inside the decoder loop counts as entropy,
not model); "other" is the rest of encode()/decode() (tiling, CRCs, blending, container). I/O is
reading and decoding the input file and writing the output file.

Model FLOPs (a multiply-add is 2) come from torch's FlopCounterMode on a 256×256 crop; conv FLOPs
are linear in area, so per-pixel values scale to each tile. The achieved GFLOP/s is set against a
4096² fp32 torch.mm measured in the same run, with the same threads: the share of the machine's
reachable peak that the model gets.

With --compressai-python, CompressAI's bmshj2018 models run on the same image in the same run
(bench/compressai_baseline.py, in that interpreter), and rnncodec's in-process time is given as a
ratio to theirs. The CLI's whole-process time (start, imports, model load included) is timed too.
With --engine onnx, only that comparison runs, rnncodec in ONNX Runtime (the light install's
backend; the other tables time torch's modules).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from rnncodec import codec, container
from rnncodec.backend import ENGINES, load_backend
from rnncodec.image import read_image
from rnncodec.models.rnn_codec import STRIDE
from rnncodec.precision import PRECISIONS
from rnncodec.tiles import plan_tiles
from rnncodec.zoo import ImageModel, coder_by_id, default_coder, load_image_model

FLOP_CROP = 256
_DONE = object()
BASELINE_REPEATS = 5  # runs of each codec in process for the baseline table, the best kept


class Clock:
    """Seconds accumulated by named phases."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, phase: str, start: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start

    def wrap(self, phase: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(phase, start)
        return timed

    def wrap_generator(self, phase: str, fn: Callable[..., Iterator]) -> Callable[..., Iterator]:
        """Time a generator function's own work: the time it spends pulling from its first
        argument (in decoding, the bits that the entropy decoder yields) is left out."""
        def timed(inputs: Iterable, *args, **kwargs):
            pulling = 0.0

            def source() -> Iterator:
                nonlocal pulling
                items = iter(inputs)
                while True:
                    start = time.perf_counter()
                    item = next(items, _DONE)
                    pulling += time.perf_counter() - start
                    if item is _DONE:
                        return
                    yield item

            it = fn(source(), *args, **kwargs)
            while True:
                start, pulled = time.perf_counter(), pulling
                value = next(it, _DONE)
                self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start - (pulling - pulled)
                if value is _DONE:
                    return
                yield value
        return timed


class TimedCoder:
    """A payload coder whose sessions' encode/decode calls are timed as "entropy"."""

    def __init__(self, inner, clock: Clock) -> None:
        self.inner, self.clock = inner, clock
        self.coder_id, self.model_id = inner.coder_id, inner.model_id

    def session(self, shape):
        start = time.perf_counter()
        s = self.inner.session(shape)
        self.clock.add("entropy", start)
        s.encode = self.clock.wrap("entropy", s.encode)
        s.decode = self.clock.wrap("entropy", s.decode)
        return s


def flops_per_model_pixel(model: ImageModel, iterations: int) -> tuple[float, float]:
    """(encode, decode) model FLOPs per pixel of padded tile, for `iterations` iterations."""
    x = torch.rand(1, 3, FLOP_CROP, FLOP_CROP) - 0.5
    with torch.inference_mode():
        with FlopCounterMode(display=False) as enc:  # as the codec encodes: no decoder after the last bits
            at, bits = model.net.begin(x), []
            for t in range(iterations):
                b, at = model.net.step(x, at, decode=t + 1 < iterations)
                bits.append(b)
        with FlopCounterMode(display=False) as dec:
            for _ in model.net.decode(bits):
                pass
    return enc.get_total_flops() / FLOP_CROP**2, dec.get_total_flops() / FLOP_CROP**2


def model_pixels(height: int, width: int, tile: int = codec.DEFAULT_TILE, overlap: int = codec.DEFAULT_OVERLAP) -> int:
    """Pixels the network runs over: every tile padded to a multiple of the stride."""
    return sum(-(-b.shape[0] // STRIDE) * STRIDE * -(-b.shape[1] // STRIDE) * STRIDE
               for b in plan_tiles(height, width, tile, overlap))


def child(args: argparse.Namespace) -> dict:
    """One encode or decode, timed by phase; returns what the parent tabulates."""
    clock, iterations = Clock(), args.iterations[0]
    start = time.perf_counter()
    model = load_image_model(args.model)
    clock.add("load", start)
    model.net.step = clock.wrap("model", model.net.step)  # the encoder's iterations, one call each
    model.net.decode = clock.wrap_generator("model", model.net.decode)
    begin = time.perf_counter()
    if args.child == "encode":
        start = time.perf_counter()
        rgb = read_image(args.input)
        clock.add("io", start)
        start = time.perf_counter()
        enc = codec.encode(rgb, iterations=iterations, model=model, coder=TimedCoder(default_coder(model), clock),
                           precision=args.precision)
        clock.add("codec", start)
        start = time.perf_counter()
        Path(args.output).write_bytes(enc.data)
        clock.add("io", start)
        h, w = rgb.pixels.shape[:2]
    else:
        start = time.perf_counter()
        data = Path(args.input).read_bytes()
        clock.add("io", start)
        start = time.perf_counter()
        dec = codec.decode(data, model_lookup=lambda _: model, coder_lookup=lambda *ids: TimedCoder(coder_by_id(*ids), clock),
                           precision=args.precision)
        clock.add("codec", start)
        start = time.perf_counter()
        Image.fromarray(dec.pixels).save(args.output)
        clock.add("io", start)
        h, w = dec.pixels.shape[:2]
    wall = time.perf_counter() - begin
    s = dict(clock.seconds)  # before the FLOP count below, which runs the wrapped network again
    flops = flops_per_model_pixel(model, iterations)[args.child == "decode"] * model_pixels(h, w)
    return {"wall": wall, "codec": s["codec"], "load": s["load"], "model": s.get("model", 0.0), "entropy": s.get("entropy", 0.0),
            "io": s["io"], "other": s["codec"] - s.get("model", 0.0) - s.get("entropy", 0.0),
            "flops": flops, "pixels": h * w, "threads": torch.get_num_threads(),
            "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_child(phase: str, src: Path, dst: Path, iterations: int, model: str | None, precision: str) -> dict:
    cmd = [sys.executable, __file__, "--child", phase, "--input", str(src), "--output", str(dst),
           "--iterations", str(iterations), "--precision", precision] + (["--model", model] if model else [])
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def gemm_gflops(n: int = 4096, repeats: int = 5) -> float:
    """Best-of fp32 torch.mm throughput at n×n, the reachable peak of this machine and thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return f"{model}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kodak", type=Path, help="folder of the Kodak PNGs (needed unless --child)")
    ap.add_argument("--image", default="kodim23", help="Kodak image name")
    ap.add_argument("--iterations", type=int, nargs="+", default=[2, 4, 8, 16])
    ap.add_argument("--large", default="6000x4000", help="WxH of the upscaled image; 'none' to skip")
    ap.add_argument("--large-iterations", type=int, default=8)
    ap.add_argument("--model", help="image model weights; default: the packaged model")
    ap.add_argument("--precision", choices=PRECISIONS, default="auto", help="the image model's arithmetic")
    ap.add_argument("--compressai-python", help="an interpreter that imports compressai, for the baseline "
                    "(bench/compressai_baseline.py); without it, no baseline")
    ap.add_argument("--baseline-iterations", type=int, default=4, help="rnncodec's iterations set against the baseline")
    ap.add_argument("--engine", choices=ENGINES, default="torch",
                    help="rnncodec's engine in the baseline comparison; onnx: run only that comparison")
    ap.add_argument("--child", choices=("encode", "decode"), help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--output", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    kodak = args.kodak / f"{args.image}.png"
    if args.engine == "onnx":
        warm = warm_seconds(kodak, args.baseline_iterations, args.model, args.precision, args.engine)
        print(baseline_table(args, kodak, None, warm))
        return

    gemm = gemm_gflops()
    print(f"Machine: {machine()}. fp32 GEMM 4096²: {gemm:.1f} GFLOP/s.\n")
    times = ["| image | iterations | bpp | phase | wall s | model | entropy | I/O | other | load s | peak RSS MiB |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    compute = ["| image | iterations | phase | model GFLOP | FLOPs/pixel | GFLOP/s | of GEMM |",
               "|---|---:|---|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        cases = [(kodak, f"{args.image} 768×512", k) for k in args.iterations]
        if args.large != "none":
            w, h = (int(v) for v in args.large.split("x"))
            big = Path(tmp) / "large.png"
            Image.open(kodak).convert("RGB").resize((w, h), Image.LANCZOS).save(big)
            cases.append((big, f"{args.image} upscaled {w}×{h}", args.large_iterations))
        for src, label, k in cases:
            rnc, png = Path(tmp) / "out.rnc", Path(tmp) / "out.png"
            enc = run_child("encode", src, rnc, k, args.model, args.precision)
            bpp = rnc.stat().st_size * 8 / enc["pixels"]
            assert len(container.read(rnc.read_bytes())[1]) == k
            dec = run_child("decode", rnc, png, k, args.model, args.precision)
            for phase, r in (("encode", enc), ("decode", dec)):
                times.append(f"| {label} | {k} | {bpp:.3f} | {phase} | {r['wall']:.2f} | {r['model']:.2f} | "
                             f"{r['entropy']:.2f} | {r['io']:.2f} | {r['other']:.2f} | {r['load']:.2f} | {r['rss_mib']:.0f} |")
                rate = r["flops"] / r["model"] / 1e9
                compute.append(f"| {label} | {k} | {phase} | {r['flops'] / 1e9:.1f} | {r['flops'] / r['pixels']:.0f} | "
                               f"{rate:.1f} | {rate / gemm:.0%} |")
            print(times[-2] + "\n" + times[-1], file=sys.stderr)
            if src == kodak and k == args.baseline_iterations:
                cold = (enc["codec"], dec["codec"])
        cli = cli_seconds(kodak, Path(tmp), args.baseline_iterations)
    warm = warm_seconds(kodak, args.baseline_iterations, args.model, args.precision, args.engine)
    print("\n".join(times) + "\n\n" + "\n".join(compute))
    print(f"\nWhole process, the CLI on {args.image} at {args.baseline_iterations} iterations (best of 3): "
          f"compress {cli[0]:.2f} s (in ONNX Runtime where it serves), {cli[1]:.2f} s in torch (--precision bf16), "
          f"decompress {cli[2]:.2f} s")
    if args.compressai_python and args.baseline_iterations in args.iterations:
        print("\n" + baseline_table(args, kodak, cold, warm))


def cli_seconds(image: Path, tmp: Path, iterations: int, repeats: int = 3) -> tuple[float, float, float]:
    """Best-of wall time of `rnncodec compress` (its torch-free path where it serves, and torch's,
    which bf16 asks for) and `rnncodec decompress` as whole processes: interpreter start, imports
    and model loading included, as a user sees them."""
    rnc, png = tmp / "cli.rnc", tmp / "cli.png"
    compress = ["compress", str(image), "-o", str(rnc), "--iterations", str(iterations)]
    runs = [compress, [*compress, "--precision", "bf16"], ["decompress", str(rnc), "-o", str(png)]]
    best = []
    for args in runs:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "rnncodec.cli", *args, "-f"], check=True, capture_output=True)
            times.append(time.perf_counter() - start)
        best.append(min(times))
    return best[0], best[1], best[2]


def warm_seconds(image: Path, iterations: int, model: str | None, precision: str, engine: str,
                 repeats: int = BASELINE_REPEATS) -> tuple[float, float]:
    """Best-of `encode()` and `decode()` in this process, the model loaded in `engine` and run
    once before: measured as bench/compressai_baseline.py measures CompressAI's models."""
    net, rgb = load_backend(engine, model, precision), read_image(image)
    data = codec.encode(rgb, iterations=iterations, model=net, precision=precision).data
    codec.decode(data, model_lookup=lambda _: net, precision=precision)
    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        start = time.perf_counter()
        codec.encode(rgb, iterations=iterations, model=net, precision=precision)
        best[0] = min(best[0], time.perf_counter() - start)
        start = time.perf_counter()
        codec.decode(data, model_lookup=lambda _: net, precision=precision)
        best[1] = min(best[1], time.perf_counter() - start)
    return best[0], best[1]


def baseline_table(args: argparse.Namespace, image: Path, cold: tuple[float, float] | None,
                   warm: tuple[float, float]) -> str:
    """CompressAI's models on the same image, in the same run, and rnncodec's time as a ratio:
    rnncodec warm as theirs are (best of the same number of runs); its first call in a fresh
    process (oneDNN building its kernels, first touch of memory) beside it, where the tables ran."""
    script = Path(__file__).with_name("compressai_baseline.py")
    base = {"torch": "–", "threads": torch.get_num_threads()}  # without --compressai-python: rnncodec's row alone
    if args.compressai_python:
        r = subprocess.run([args.compressai_python, str(script), str(image), "--threads", str(torch.get_num_threads()),
                            "--repeats", str(BASELINE_REPEATS)], capture_output=True, text=True, check=True)
        base = json.loads(r.stdout.strip().splitlines()[-1])
    engine = args.engine if args.engine == "onnx" else args.precision
    rows = [f"CompressAI baseline (torch {base['torch']}, {base['threads']} threads) against rnncodec at "
            f"{args.baseline_iterations} iterations, in process (encode() and decode(), model loaded):\n",
            "| codec | encode s | decode s | encode + decode s | rnncodec's time as a ratio |", "|---|---:|---:|---:|---:|",
            f"| rnncodec ({engine}), best of {BASELINE_REPEATS} | {warm[0]:.3f} | {warm[1]:.3f} | {sum(warm):.3f} | 1.00 |"]
    if cold:
        rows.append(f"| rnncodec ({engine}), first call in a fresh process | {cold[0]:.3f} | {cold[1]:.3f} | "
                    f"{sum(cold):.3f} | – |")
    for name in ("bmshj2018-factorized", "bmshj2018-hyperprior") if args.compressai_python else ():
        t = base[name]
        total = t["encode_s"] + t["decode_s"]
        rows.append(f"| {name} q3, best of {BASELINE_REPEATS} | {t['encode_s']:.3f} | {t['decode_s']:.3f} | {total:.3f} | "
                    f"{sum(warm) / total:.3f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
