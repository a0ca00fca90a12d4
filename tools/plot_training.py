"""Plot a training run's loss against steps and CPU-hours (GPU-hours for a GPU run) from its log.jsonl.

    .venv/bin/python tools/plot_training.py out/main/log.jsonl -o out/training_loss.png
"""
from __future__ import annotations

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("log")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    records = [json.loads(line) for line in open(args.log)]
    train = [r for r in records if "loss" in r]
    val = [r for r in records if "val_loss" in r]
    hours = "cpu_hours" if "cpu_hours" in records[0] else "gpu_hours"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, label in ((axes[0], "step", "step"), (axes[1], hours, hours.replace("_hours", "").upper() + "-hours")):
        ax.plot([r[key] for r in train], [r["loss"] for r in train], lw=0.8, label="train (stochastic bits)")
        ax.plot([r[key] for r in val], [r["val_loss"] for r in val], "o-", ms=3, label="validation (sign bits)")
        ax.set_xlabel(label)
        ax.set_ylabel("L1 over iterations")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)


if __name__ == "__main__":
    main()
