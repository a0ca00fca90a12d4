"""ONNX Runtime against torch (issue 14): startup, and the image model's time and agreement.

    .venv/bin/python bench/onnx_runtime.py ../shared/data/kodak/kodim23.png --iterations 4

Needs `onnx` and `onnxscript` (the `dev` extra) to export the graphs. What it measures, each best of 3:
- startup: a fresh interpreter importing the torch encoder (rnncodec.codec) or the torch-free one
  (rnncodec.onnx_codec, which `rnncodec compress` runs where it can);
- the image model on the image: `--iterations` encoding steps as a fixed-iteration encode runs
  them (the last without the decoder), and as many decoding steps, in ONNX Runtime fp32 (the
  graphs of rnncodec.onnx_export, freshly exported) against torch fp32 and bf16, at torch's
  thread count;
- the decoders' agreement on the same bits (max |difference| of the reconstruction).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import Tensor

from rnncodec.image import read_image
from rnncodec.onnx_codec import OnnxImageModel
from rnncodec.onnx_export import export_graphs
from rnncodec.stored import load_weights
from rnncodec.tiles import TileBox, model_input
from rnncodec.zoo import DEFAULT_WEIGHTS, IMAGE, load_image_model


def best_of(f: Callable, n: int = 3) -> tuple[float, object]:
    times, result = [], None
    for _ in range(n):
        t0 = time.perf_counter()
        result = f()
        times.append(time.perf_counter() - t0)
    return min(times), result


def startup(code: str) -> float:
    """Best of 3 wall times of a fresh interpreter running `code`."""
    return best_of(lambda: subprocess.run([sys.executable, "-c", code], check=True))[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", type=Path)
    ap.add_argument("--iterations", type=int, default=4)
    args = ap.parse_args()
    n = args.iterations
    model = load_image_model()
    net = model.net
    px = read_image(args.image).pixels
    x_np = np.ascontiguousarray(model_input(px, TileBox(0, px.shape[0], 0, px.shape[1])))
    x = torch.from_numpy(model_input(px, TileBox(0, px.shape[0], 0, px.shape[1])))  # channels-last, as codec's
    work = Path(tempfile.mkdtemp())
    export_graphs(model, work)
    onnx_model = OnnxImageModel(load_weights(DEFAULT_WEIGHTS[IMAGE]), work)

    def ort_decode(bits: list[np.ndarray]) -> np.ndarray:
        state = None
        for b in bits:
            state = onnx_model.decode_step(state, b[0], None)
        return onnx_model.reconstruction(state)

    def torch_encode(bf16: bool) -> list[Tensor]:
        at, bits = net.begin(x), []
        with torch.inference_mode():
            for t in range(n):
                b, at = net.step(x, at, bf16, decode=t + 1 < n)
                bits.append(b.float())
        return bits

    def torch_decode(bits: list[Tensor], bf16: bool) -> Tensor:
        with torch.inference_mode():
            return list(net.decode(bits, bf16))[-1]

    rows = []
    t_enc, bits = best_of(lambda: torch_encode(False))
    t_dec, ref = best_of(lambda: torch_decode(bits, False))
    rows.append(("torch fp32", t_enc, t_dec, 0.0))
    t_enc, _ = best_of(lambda: torch_encode(True))
    t_dec, dec = best_of(lambda: torch_decode(bits, True))
    rows.append(("torch bf16", t_enc, t_dec, float((dec - ref).abs().max())))
    def ort_encode() -> None:
        state = onnx_model.begin(x_np)
        for t in range(n):
            _, state = onnx_model.step(state, None, t + 1 < n)

    t_enc, _ = best_of(ort_encode)
    t_dec, dec = best_of(lambda: ort_decode([b.numpy() for b in bits]))
    rows.append((f"ONNX Runtime {ort.__version__} fp32", t_enc, t_dec, float(np.abs(dec - ref.numpy()).max())))

    import_torch = startup("import rnncodec.codec")
    import_ort = startup("import rnncodec.onnx_codec")
    print(f"{args.image.name} {px.shape[1]}×{px.shape[0]}, {n} iterations, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, best of 3\n")
    print("| runtime | encode steps s | decode steps s | max abs diff of x̂ from torch fp32's (same bits) |\n|---|---:|---:|---:|")
    for name, enc, dec, diff in rows:
        print(f"| {name} | {enc:.3f} | {dec:.3f} | {diff:.1e} |")
    print(f"\nstartup: python -c 'import rnncodec.codec' {import_torch:.2f} s; "
          f"python -c 'import rnncodec.onnx_codec' {import_ort:.2f} s")


if __name__ == "__main__":
    main()
