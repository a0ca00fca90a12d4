"""Training speed on this machine: throughput (patches/s) and learning per CPU-hour.

    .venv/bin/python bench/train_speed.py DATA --threads 2                       # patches/s table
    .venv/bin/python bench/train_speed.py DATA --threads 2 --learn-minutes 4     # + loss after equal time

Throughput: each case times `--steps` real training steps (Adam, clipping, batch 32 of 32×32
patches from DATA, the recorded runs: CID22) after 3 warm-up steps, in fp32 and bf16.

Learning (`--learn-minutes M`): each case trains from scratch for M minutes of wall time on the
same data (bf16, 64×64 crops, batch 8), then reports the validation L1 on the same held-out
64×64 patches, averaged over iterations 1–8 (0.125–1 bpp, the range the default model is judged
on). Equal wall time on the same cores is equal CPU time, so the lowest loss learns fastest per
CPU-hour.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from rnncodec.train.config import TrainConfig
from rnncodec.train.loop import Trainer

CASES = [("small", 8), ("small", 12), ("small", 16), ("fast", 12), ("fast", 16), ("paper", 8)]
LEARN_CASES = [("fast", 8), ("fast", 16), ("small", 8), ("small", 16), ("paper", 8)]


def trainer(data: Path, preset: str, unroll: int, bf16: bool, **kw) -> Trainer:
    tc = TrainConfig(data=[str(data)], out="/tmp/rnncodec-train-speed", preset=preset, unroll=unroll, bf16=bf16,
                     steps=10**9, **kw)
    return Trainer(tc, progress=False)


def patches_per_second(data: Path, preset: str, unroll: int, bf16: bool, steps: int) -> float:
    t = trainer(data, preset, unroll, bf16, val_fraction=0.0)
    for _ in range(3):
        t.train_step()
    start = time.perf_counter()
    for _ in range(steps):
        t.train_step()
    return steps * t.tc.batch / (time.perf_counter() - start)


def learn(data: Path, preset: str, unroll: int, minutes: float, threads: int) -> tuple[int, float, float]:
    """Steps done, CPU-hours and mean validation L1 over iterations 1–8 after `minutes` of training."""
    t = trainer(data, preset, unroll, True, batch=8, crop=64, lr=8e-4, warmup=100, max_minutes=minutes, val_patches=128)
    for _ in t.timed_steps(tqdm(disable=True)):  # the loop `train` runs, to the same time budget
        pass
    t.unroll = 8
    return t.step, minutes * threads / 60, float(np.mean(t.validate()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", type=Path, help="folder of training images (the recorded runs: CID22)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--learn-minutes", type=float, default=0.0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads: {args.threads}\n")
    print("| preset | unroll | fp32 patches/s | bf16 patches/s | bf16 speed-up |\n|---|---|---|---|---|")
    for preset, unroll in CASES:
        fp32 = patches_per_second(args.data, preset, unroll, False, args.steps)
        bf16 = patches_per_second(args.data, preset, unroll, True, args.steps)
        print(f"| {preset} | {unroll} | {fp32:.0f} | {bf16:.0f} | {bf16 / fp32:.2f} |", flush=True)
    if args.learn_minutes:
        print(f"\n| preset | unroll | steps in {args.learn_minutes:g} min | CPU-hours | val L1, iterations 1–8 |")
        print("|---|---|---|---|---|")
        for preset, unroll in LEARN_CASES:
            steps, cpu_hours, loss = learn(args.data, preset, unroll, args.learn_minutes, args.threads)
            print(f"| {preset} | {unroll} | {steps} | {cpu_hours:.3f} | {loss:.4f} |", flush=True)


if __name__ == "__main__":
    main()
