"""Entropy coding on Kodak: bytes saved against raw bits per coder, and the coders' time.

    .venv/bin/python bench/entropy.py KODAK [--images N] [--model PATH] [--coders arithmetic integer]
                                      [--timed-iterations K]

Sizes are whole-file prefixes (header included) at 2, 4, 8 and 16 iterations, for coder 1 (the
float context model, "arithmetic") and coder 2 (the integer one, "integer"), each with the
weights fitted to the image model (else the packaged ones). Times are per image at K iterations
(default 8, 1 bpp before entropy coding): the whole encode and decode, and within them the
context model plus range coder alone, run over the same bits.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from rnncodec import container
from rnncodec.codec import decode, encode
from rnncodec.entropy import BitCoder, RawCoder
from rnncodec.image import list_images, read_image
from rnncodec.models.rnn_codec import STRIDE
from rnncodec.tiles import plan_tiles
from rnncodec.zoo import load_image_model, make_coder

PREFIXES = (2, 4, 8, 16)
CODER_NAMES = {"arithmetic": "coder 1 (float)", "integer": "coder 2 (integer)"}


def prefix_sizes(data: bytes) -> list[int]:
    """File size after each chunk, header included."""
    return container.prefix_sizes(*container.read(data))


def entropy_times(data: bytes, coder: BitCoder, bits: int) -> tuple[float, float]:
    """Seconds the coder alone takes to decode, then re-encode, every tile of a file."""
    header, chunks = container.read(data)
    boxes = plan_tiles(header.height, header.width, header.tile, header.overlap)
    payloads = [container.split_segments(p, len(boxes)) for p, _ in chunks]
    t_dec = t_enc = 0.0
    for i, box in enumerate(boxes):
        shape = (bits,) + tuple(-(-s // STRIDE) for s in box.shape)
        start = time.perf_counter()
        session = coder.session(shape)
        decoded = [session.decode(p[i]) for p in payloads]
        t_dec += time.perf_counter() - start
        start = time.perf_counter()
        session = coder.session(shape)
        for b in decoded:
            session.encode(b)
        t_enc += time.perf_counter() - start
    return t_dec, t_enc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kodak", type=Path, help="folder of the Kodak PNGs")
    ap.add_argument("--images", type=int, default=0, help="first N images only (0 = all)")
    ap.add_argument("--model", type=Path, help="image model (default: packaged)")
    ap.add_argument("--coders", nargs="+", choices=tuple(CODER_NAMES), default=list(CODER_NAMES))
    ap.add_argument("--timed-iterations", type=int, default=8)
    args = ap.parse_args()
    model = load_image_model(args.model)
    coders = {name: make_coder(name, model) for name in args.coders}
    paths = list_images(args.kodak, lossless=True)[: args.images or None]
    prefixes = [k for k in PREFIXES if k <= model.cfg.iterations]
    k_timed = args.timed_iterations
    raw_sizes: list[list[int]] = []
    sizes: dict[str, list[list[int]]] = {name: [] for name in coders}
    times: dict[str, list[tuple[float, ...]]] = {name: [] for name in coders}
    for path in paths:
        img = read_image(path)
        raw_sizes.append(prefix_sizes(encode(img, model=model, coder=RawCoder()).data))
        for name, coder in coders.items():
            sizes[name].append(prefix_sizes(encode(img, model=model, coder=coder).data))
            start = time.perf_counter()
            data = encode(img, iterations=k_timed, model=model, coder=coder).data
            t_encode = time.perf_counter() - start
            start = time.perf_counter()
            decode(data)
            t_decode = time.perf_counter() - start
            times[name].append((t_encode, t_decode, *entropy_times(data, coder, model.cfg.bits)))
        print(f"{path.name}: raw {raw_sizes[-1][k_timed - 1]} bytes at {k_timed} iterations, "
              + ", ".join(f"{name} {s[-1][k_timed - 1]}" for name, s in sizes.items()), flush=True)
    raw = np.array(raw_sizes, dtype=float)
    pixels = np.mean([np.prod(read_image(p).pixels.shape[:2]) for p in paths])
    ids = ", ".join(f"{CODER_NAMES[n]} {c.model_id.hex()}" for n, c in coders.items())
    print(f"\n{len(paths)} Kodak images, image model {model.model_id.hex()}; entropy models: {ids}\n")
    print("| iterations | raw bpp | " + " | ".join(f"{CODER_NAMES[n]} bpp | bits per bit | saved" for n in coders) + " |")
    print("|---:|---:|" + "---:|---:|---:|" * len(coders))
    for k in prefixes:
        r = raw[:, k - 1].mean()
        cells = []
        for name in coders:
            a = np.array(sizes[name], dtype=float)[:, k - 1].mean()
            cells.append(f"{a * 8 / pixels:.4f} | {a / r:.4f} | {100 * (1 - a / r):.2f} %")
        print(f"| {k} | {r * 8 / pixels:.4f} | " + " | ".join(cells) + " |")
    print(f"\n| at {k_timed} iterations, per image | encode | entropy encode | decode | entropy decode | share of decode |")
    print("|---|---:|---:|---:|---:|---:|")
    mean = {name: np.array(t).mean(0) for name, t in times.items()}
    for name, (t_encode, t_decode, t_ent_dec, t_ent_enc) in mean.items():
        print(f"| {CODER_NAMES[name]} | {t_encode:.2f} s | {t_ent_enc:.3f} s | {t_decode:.2f} s | {t_ent_dec:.3f} s | "
              f"{100 * t_ent_dec / t_decode:.1f} % |")
    if len(mean) == 2:
        (_, a), (_, b) = mean.items()
        print(f"\nentropy decode time, {CODER_NAMES[args.coders[1]]} / {CODER_NAMES[args.coders[0]]}: {b[2] / a[2]:.2f}; "
              f"entropy encode: {b[3] / a[3]:.2f}")


if __name__ == "__main__":
    main()
