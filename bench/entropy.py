"""Entropy coding on Kodak: bytes saved against raw bits, and the coder's share of codec time.

    .venv/bin/python bench/entropy.py [--images N] [--model PATH] [--entropy PATH]

Sizes are whole-file prefixes (header included) at 2, 4, 8 and 16 iterations. Times are per
image at 8 iterations (1 bpp before entropy coding): the whole encode and decode, and within
them the context model plus range coder alone, run over the same bits.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from rnncodec import container
from rnncodec.codec import decode, encode
from rnncodec.entropy import RawCoder, arithmetic_coder
from rnncodec.models.rnn_codec import STRIDE
from rnncodec.models.store import load_image_model
from rnncodec.tiles import plan_tiles
from rnncodec.image import list_images, read_image

KODAK = Path("/work/shared/data/kodak")
PREFIXES = (2, 4, 8, 16)
TIMED_ITERATIONS = 8


def prefix_sizes(data: bytes) -> list[int]:
    """File size after each chunk, header included."""
    return container.prefix_sizes(*container.read(data))


def entropy_times(data: bytes, coder) -> tuple[float, float]:
    """Seconds the coder alone takes to decode, then re-encode, every tile of a file."""
    header, chunks = container.read(data)
    boxes = plan_tiles(header.height, header.width, header.tile, header.overlap)
    payloads = [container.split_segments(p, len(boxes)) for p, _ in chunks]
    t_dec = t_enc = 0.0
    for i, box in enumerate(boxes):
        shape = (coder.model.cfg.bits,) + tuple(-(-s // STRIDE) for s in box.shape)
        start = time.perf_counter()
        session = coder.session(shape)
        bits = [session.decode(p[i]) for p in payloads]
        t_dec += time.perf_counter() - start
        start = time.perf_counter()
        session = coder.session(shape)
        for b in bits:
            session.encode(b)
        t_enc += time.perf_counter() - start
    return t_dec, t_enc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kodak", type=Path, default=KODAK)
    ap.add_argument("--images", type=int, default=0, help="first N images only (0 = all)")
    ap.add_argument("--model", type=Path, help="image model (default: packaged)")
    ap.add_argument("--entropy", type=Path, help="entropy model (default: packaged)")
    args = ap.parse_args()
    model = load_image_model(args.model)
    coder = arithmetic_coder(args.entropy)
    paths = list_images(args.kodak, lossless=True)[: args.images or None]
    prefixes = [k for k in PREFIXES if k <= model.cfg.iterations]
    raw_sizes, ac_sizes, times = [], [], []
    for path in paths:
        img = read_image(path)
        raw_sizes.append(prefix_sizes(encode(img, model=model, coder=RawCoder()).data))
        ac_sizes.append(prefix_sizes(encode(img, model=model, coder=coder).data))
        start = time.perf_counter()
        data = encode(img, iterations=TIMED_ITERATIONS, model=model, coder=coder).data
        t_encode = time.perf_counter() - start
        start = time.perf_counter()
        decode(data)
        t_decode = time.perf_counter() - start
        times.append((t_encode, t_decode, *entropy_times(data, coder)))
        print(f"{path.name}: {ac_sizes[-1][TIMED_ITERATIONS - 1]} bytes at {TIMED_ITERATIONS} iterations, "
              f"raw {raw_sizes[-1][TIMED_ITERATIONS - 1]}", flush=True)
    raw, ac = np.array(raw_sizes, dtype=float), np.array(ac_sizes, dtype=float)
    pixels = np.mean([np.prod(read_image(p).pixels.shape[:2]) for p in paths])
    print(f"\n{len(paths)} Kodak images, image model {model.model_id.hex()}, entropy model {coder.model_id.hex()}\n")
    print("| iterations | raw bpp | coded bpp | saved |")
    print("|---:|---:|---:|---:|")
    for k in prefixes:
        r, a = raw[:, k - 1].mean(), ac[:, k - 1].mean()
        print(f"| {k} | {r * 8 / pixels:.4f} | {a * 8 / pixels:.4f} | {100 * (1 - a / r):.1f} % |")
    t_encode, t_decode, t_ent_dec, t_ent_enc = np.array(times).mean(0)
    print(f"\n| at {TIMED_ITERATIONS} iterations, per image | whole codec | entropy coding | share |")
    print("|---|---:|---:|---:|")
    print(f"| encode | {t_encode:.2f} s | {t_ent_enc:.3f} s | {100 * t_ent_enc / t_encode:.1f} % |")
    print(f"| decode | {t_decode:.2f} s | {t_ent_dec:.3f} s | {100 * t_ent_dec / t_decode:.1f} % |")


if __name__ == "__main__":
    main()
