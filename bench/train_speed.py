"""Training throughput (patches/s) of presets × unrolled iterations × precision on this machine.

    .venv/bin/python bench/train_speed.py --threads 2

Each case times `--steps` real training steps (Adam, clipping, batch 32 of 32×32 patches from
shared/data/train/cid22) after 3 warm-up steps. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from rnncodec.train.loop import Trainer, TrainConfig

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "train" / "cid22"
CASES = [("small", 8), ("small", 12), ("small", 16), ("fast", 12), ("fast", 16), ("paper", 8)]


def patches_per_second(preset: str, unroll: int, bf16: bool, steps: int) -> float:
    tc = TrainConfig(data=[str(DATA)], out="/tmp/rnncodec-train-speed", preset=preset, unroll=unroll, bf16=bf16,
                     steps=10**9, val_fraction=0.0)
    trainer = Trainer(tc, progress=False)
    for _ in range(3):
        trainer.train_step()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    return steps * tc.batch / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads: {args.threads}\n\n| preset | unroll | fp32 patches/s | bf16 patches/s | bf16 speed-up |\n|---|---|---|---|---|")
    for preset, unroll in CASES:
        fp32 = patches_per_second(preset, unroll, False, args.steps)
        bf16 = patches_per_second(preset, unroll, True, args.steps)
        print(f"| {preset} | {unroll} | {fp32:.0f} | {bf16:.0f} | {bf16 / fp32:.2f} |", flush=True)


if __name__ == "__main__":
    main()
