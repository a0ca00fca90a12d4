"""Would ONNX Runtime make a lighter CLI (issue 14)? Startup and the image model's time, measured.

    .venv/bin/python bench/onnx_runtime.py ../shared/data/kodak/kodim23.png --iterations 4

Needs `onnx` and `onnxruntime` beside the project (`pip install onnx onnxscript onnxruntime`);
they are not its dependencies. What it measures, each best of 3:
- startup: a fresh interpreter importing what each runtime's CLI would need (torch with the
  package, or onnxruntime, numpy and Pillow);
- the image model on the image, `--iterations` encode steps (encoder, binarizer, decoder) and
  as many decode steps, in ONNX Runtime fp32 (the steps exported with the recurrent states as
  inputs and outputs) against torch fp32 and bf16, at torch's thread count;
- the decoders' agreement on the same bits (max |difference| of the reconstruction).

The context model and range coder are not part of it: a torch-free CLI would need coder 2's
integer model outside torch too (exact float32 products, so any runtime computes the same k).
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
import torch
from torch import Tensor, nn

from rnncodec.image import pad_to_multiple, read_image
from rnncodec.models.rnn_codec import RNNCodec
from rnncodec.zoo import load_image_model

try:
    import onnxruntime as ort
except ImportError:
    sys.exit("bench/onnx_runtime.py needs onnxruntime (and onnx to export): pip install onnx onnxscript onnxruntime")


class EncodeStep(nn.Module):
    """One encoding iteration with explicit states: (x, x̂, g, encoder states, decoder states) ->
    (bits, x̂', states')."""

    def __init__(self, net: RNNCodec) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, recon: Tensor, gain: Tensor, *states: Tensor) -> tuple[Tensor, ...]:
        code, enc = self.net.encoder((x - recon) * gain, [(s,) for s in states[:3]])
        bits = self.net.binarizer(code)
        out, dec = self.net.decoder(bits, [(s,) for s in states[3:]])
        return (bits, recon + out / gain, *(s[0] for s in enc), *(s[0] for s in dec))


class DecodeStep(nn.Module):
    """One decoding iteration: (bits, x̂, g, decoder states) -> (x̂', states')."""

    def __init__(self, net: RNNCodec) -> None:
        super().__init__()
        self.net = net

    def forward(self, bits: Tensor, recon: Tensor, gain: Tensor, *states: Tensor) -> tuple[Tensor, ...]:
        out, dec = self.net.decoder(bits, [(s,) for s in states])
        return (recon + out / gain, *(s[0] for s in dec))


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
    net = load_image_model().net.eval()
    px = read_image(args.image).pixels
    x = torch.from_numpy(pad_to_multiple(px, 16).copy()).permute(2, 0, 1)[None].float() / 255 - 0.5
    with torch.inference_mode():
        first = net.step(x, net.begin(x))[1]
    enc0 = [torch.zeros_like(s[0]) for s in first.enc]
    dec0 = [torch.zeros_like(s[0]) for s in first.dec]
    gains = [float(g) for g in net.log_gain.exp()] if net.log_gain is not None else [1.0] * args.iterations
    one = torch.tensor(1.0)
    work = Path(tempfile.mkdtemp())
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):  # plain convolutions: exportable
        torch.onnx.export(EncodeStep(net), (x, torch.zeros_like(x), one, *enc0, *dec0), work / "encode.onnx", dynamo=False)
        bits0 = torch.ones(1, net.cfg.bits, x.shape[2] // 16, x.shape[3] // 16)
        torch.onnx.export(DecodeStep(net), (bits0, torch.zeros_like(x), one, *dec0), work / "decode.onnx", dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    enc_s = ort.InferenceSession(work / "encode.onnx", opts, providers=["CPUExecutionProvider"])
    dec_s = ort.InferenceSession(work / "decode.onnx", opts, providers=["CPUExecutionProvider"])

    def ort_encode() -> list[np.ndarray]:
        x_np, recon, states, bits = x.numpy(), np.zeros_like(x.numpy()), [s.numpy() for s in enc0 + dec0], []
        for t in range(args.iterations):
            out = enc_s.run(None, dict(zip((i.name for i in enc_s.get_inputs()),
                                            (x_np, recon, np.array(gains[t], np.float32), *states))))
            bits.append(out[0])
            recon, states = out[1], out[2:]
        return bits

    def ort_decode(bits: list[np.ndarray]) -> np.ndarray:
        recon, states = np.zeros_like(x.numpy()), [s.numpy() for s in dec0]
        for t, b in enumerate(bits):
            feeds = (b, recon, np.array(gains[t], np.float32), *states)
            out = dec_s.run(None, dict(zip((i.name for i in dec_s.get_inputs()), feeds)))
            recon, states = out[0], out[1:]
        return recon

    def torch_encode(bf16: bool) -> list[Tensor]:
        at, bits = net.begin(x), []
        with torch.inference_mode():
            for _ in range(args.iterations):
                b, at = net.step(x, at, bf16)
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
    t_enc, _ = best_of(ort_encode)
    t_dec, dec = best_of(lambda: ort_decode([b.numpy() for b in bits]))
    rows.append((f"ONNX Runtime {ort.__version__} fp32", t_enc, t_dec, float(np.abs(dec - ref.numpy()).max())))

    import_torch = startup("import rnncodec.codec")
    import_ort = startup("import onnxruntime, numpy, PIL.Image")
    print(f"{args.image.name} {px.shape[1]}×{px.shape[0]}, {args.iterations} iterations, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, best of 3\n")
    print("| runtime | encode steps s | decode steps s | max abs diff of x̂ from torch fp32's (same bits) |\n|---|---:|---:|---:|")
    for name, enc, dec, diff in rows:
        print(f"| {name} | {enc:.3f} | {dec:.3f} | {diff:.1e} |")
    print(f"\nstartup: python -c 'import rnncodec.codec' {import_torch:.2f} s; "
          f"python -c 'import onnxruntime, numpy, PIL.Image' {import_ort:.2f} s")


if __name__ == "__main__":
    main()
