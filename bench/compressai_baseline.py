"""Time CompressAI's bmshj2018 models (factorized and hyperprior, quality 3) on one image: the
baseline bench/speed.py sets rnncodec against, run in the same session on the same CPU.

    PYTHON bench/compressai_baseline.py IMAGE [--threads T] [--repeats N]

Run it with any interpreter that imports compressai; its numpy<2 pin and torchvision keep it out
of rnncodec's own environment, so give it one. The registry's torchvision is built against torch's
CUDA build (its `_C.so` needs `libc10_cuda.so`): beside torch's CPU wheel (`pip install compressai
-c constraints-cpu.txt`) compressai installs but does not import. So, on the CPU all the same:

    python3 -m venv ../cai-venv && ../cai-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 \
        'numpy<2' compressai==1.2.8

It prints one JSON object of seconds per model, the best of N, encode (analysis
and entropy coding, `compress`) and decode (`decompress` and synthesis). Random weights, since
only the time is wanted; `update()` builds the entropy coders' tables as a trained model has them.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from compressai.zoo import bmshj2018_factorized, bmshj2018_hyperprior
from PIL import Image

MODELS = {"bmshj2018-factorized": bmshj2018_factorized, "bmshj2018-hyperprior": bmshj2018_hyperprior}


def best_of(repeats: int, fn) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("image")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pixels = np.asarray(Image.open(args.image).convert("RGB"))
    h, w = (s // 64 * 64 for s in pixels.shape[:2])  # the models' stride; Kodak sides already divide
    x = torch.from_numpy(pixels[:h, :w].copy()).permute(2, 0, 1)[None].float() / 255
    result = {"torch": torch.__version__, "threads": args.threads}
    torch.manual_seed(0)
    with torch.inference_mode():
        for name, make in MODELS.items():
            net = make(quality=3, pretrained=False).eval()
            net.update(force=True)
            enc, out = best_of(args.repeats, lambda net=net: net.compress(x))
            dec, _ = best_of(args.repeats, lambda net=net, out=out: net.decompress(out["strings"], out["shape"]))
            result[name] = {"encode_s": enc, "decode_s": dec}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
