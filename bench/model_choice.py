"""Quality per second of decoding: the default model against `--model wide`, at the rates users pick.

    python bench/model_choice.py --kodak DIR [--iterations 8] [--engine onnx] [--out model_choice.json]

Each Kodak image is coded once per model at --iterations whole iterations, and each prefix of
1 … --iterations iterations is decoded in process (the image model's decoder steps, the entropy
decoder and blending: what a viewer waits for), alternating the models image by image so that
both see the same load. For each count it prints the mean PSNR-RGB and the decode seconds per
image, and, for wide, the default's PSNR at wide's decode time (interpolated between the
default's counts): where wide is above it, wide gives more quality per second of decoding.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from rnncodec import container
from rnncodec.backend import load_backend
from rnncodec.codec import decode, encode
from rnncodec.image import read_image
from rnncodec.quality import psnr_rgb

MODELS = ("default", "wide")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kodak", required=True, type=Path)
    ap.add_argument("--iterations", type=int, default=8)
    ap.add_argument("--engine", default="onnx")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    ks = range(1, args.iterations + 1)
    backends = {m: load_backend(args.engine, None if m == "default" else m, "auto") for m in MODELS}
    psnr = {m: np.zeros((0, len(ks))) for m in MODELS}
    seconds = {m: np.zeros((0, len(ks))) for m in MODELS}
    for path in sorted(args.kodak.glob("*.png")):
        pixels = read_image(path).pixels
        for model in MODELS:
            data = encode(pixels, iterations=args.iterations, model=backends[model]).data
            header, chunks = container.read(data)
            row_p, row_s = [], []
            for k in ks:
                prefix = container.truncate(header, chunks, k)
                t0 = time.perf_counter()
                decoded = decode(prefix, engine=args.engine).pixels
                row_s.append(time.perf_counter() - t0)
                row_p.append(psnr_rgb(pixels, decoded))
            psnr[model] = np.vstack([psnr[model], row_p])
            seconds[model] = np.vstack([seconds[model], row_s])
        print(path.name, flush=True)
    mean_p = {m: psnr[m].mean(0) for m in MODELS}
    mean_s = {m: seconds[m].mean(0) for m in MODELS}
    default_at = np.interp(mean_s["wide"], mean_s["default"], mean_p["default"])  # the default's PSNR at wide's time
    rows = [{"iterations": k, **{f"{m}_psnr": round(float(mean_p[m][i]), 3) for m in MODELS},
             **{f"{m}_seconds": round(float(mean_s[m][i]), 3) for m in MODELS},
             "time_ratio": round(float(mean_s["wide"][i] / mean_s["default"][i]), 2),
             "default_psnr_at_wide_time": round(float(default_at[i]), 3) if mean_s["wide"][i] <= mean_s["default"][-1] else None}
            for i, k in enumerate(ks)]
    print("| iterations | default PSNR | wide PSNR | default s | wide s | wide/default time | default's PSNR at wide's time |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        at = "–" if r["default_psnr_at_wide_time"] is None else f"{r['default_psnr_at_wide_time']:.2f}"
        print(f"| {r['iterations']} | {r['default_psnr']:.2f} | {r['wide_psnr']:.2f} | {r['default_seconds']:.3f} | "
              f"{r['wide_seconds']:.3f} | {r['time_ratio']:.2f} | {at} |")
    if args.out:
        args.out.write_text(json.dumps({"engine": args.engine, "images": len(psnr["default"]), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
