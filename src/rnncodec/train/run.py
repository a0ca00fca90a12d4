"""The run skeleton every trainer shares: seeding, the held-out split, the log, checkpoints written
through a temporary file, the schedule, and the timed loop with its log, validation and checkpoint
cadence. A trainer adds its model, one `train_step`, a `validate` and an `export`."""
from __future__ import annotations

import json
import math
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..image import list_images
from .config import RunConfig
from .data import is_validation


def lr_at(step: int, tc: RunConfig, seconds: float = 0.0) -> float:
    """Linear warmup, then cosine decay to min_lr_ratio·lr at `steps` or at `max_minutes`, whichever comes first."""
    if step < tc.warmup:
        return tc.lr * (step + 1) / tc.warmup
    progress = min(1.0, (step - tc.warmup) / max(1, tc.steps - tc.warmup))
    if tc.max_minutes:
        progress = max(progress, min(1.0, seconds / (tc.max_minutes * 60)))
    return tc.lr * (tc.min_lr_ratio + (1 - tc.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


class Run:
    """One training run. `compute_seconds` counts core-seconds on a CPU and device-seconds on a GPU
    (a GPU's feeding threads are not the work), logged as cpu_hours or gpu_hours."""

    desc = "train"  # the progress bar's label
    loss_name = "loss"  # what log lines call the training loss (and `val_` + it, the validation)

    def __init__(self, tc: RunConfig, progress: bool, rank: int = 0, world: int = 1, device: torch.device | None = None) -> None:
        self.tc, self.rank, self.world, self.device = tc, rank, world, device or torch.device("cpu")
        self.progress = progress and rank == 0
        if tc.threads:
            torch.set_num_threads(tc.threads)
        torch.manual_seed(tc.seed + rank)
        self.rng = np.random.default_rng(tc.seed + rank)
        self.out = Path(tc.out)
        self.ckpt_path = self.out / "checkpoint.pt"
        self.step, self.best_val, self.seconds, self.compute_seconds = 0, float("inf"), 0.0, 0.0

    def split(self) -> tuple[list[Path], list[Path]]:
        """Training and held-out images: the split follows file names, so it never changes."""
        paths = list_images(*self.tc.data)
        held = [is_validation(p, self.tc.val_fraction) for p in paths]
        return [p for p, h in zip(paths, held) if not h], [p for p, h in zip(paths, held) if h]

    # -- what a trainer provides ---------------------------------------------------------------
    def train_step(self) -> float:
        raise NotImplementedError

    def validate(self) -> list[float] | None:
        """The validation loss per iteration (lower is better), or None when nothing is held out."""
        raise NotImplementedError

    def export(self, path: Path) -> bytes:
        raise NotImplementedError

    def checkpoint_state(self) -> dict[str, Any]:
        """The trainer's part of a checkpoint: model, optimizer, configs."""
        raise NotImplementedError

    def speed(self, seconds: float) -> dict[str, float]:
        """Extra fields of a log line, given the seconds since the last one."""
        return {}

    def finish(self) -> None:
        """After the last checkpoint."""

    # -- the skeleton ------------------------------------------------------------------------
    def set_lr(self, opt: torch.optim.Optimizer) -> None:
        for group in opt.param_groups:
            group["lr"] = lr_at(self.step, self.tc, self.seconds) * group.get("lr_scale", 1.0)

    @property
    def _hours(self) -> dict[str, float]:
        return {("gpu_hours" if self.device.type == "cuda" else "cpu_hours"): self.compute_seconds / 3600}

    def log(self, record: dict) -> None:
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            with open(self.out / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def save_checkpoint(self) -> None:
        if self.rank != 0:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        ck = {**self.checkpoint_state(), "train_config": asdict(self.tc), "step": self.step, "best_val": self.best_val,
              "seconds": self.seconds, "compute_seconds": self.compute_seconds, "rng": self.rng.bit_generator.state,
              "torch_rng": torch.get_rng_state()}
        tmp = self.ckpt_path.with_suffix(".tmp")
        torch.save(ck, tmp)
        os.replace(tmp, self.ckpt_path)

    def load_run_state(self, ck: dict[str, Any]) -> None:
        """The skeleton's part of a checkpoint (older checkpoints call compute_seconds cpu_seconds)."""
        self.step, self.best_val, self.seconds = ck["step"], ck["best_val"], ck["seconds"]
        self.compute_seconds = ck.get("compute_seconds", ck.get("cpu_seconds", 0.0))
        if self.rank == 0 and "rng" in ck:
            self.rng.bit_generator.state = ck["rng"]
            torch.set_rng_state(ck["torch_rng"])

    def timed_steps(self, bar: tqdm) -> Iterator[tuple[float, float]]:
        """Train steps, yielding (loss, monotonic time) after each, until the step budget, the time
        budget (`max_minutes` of training time over all resumes) or a SIGTERM ends the run. The time
        between steps (validation, checkpoints) counts as training time too."""
        tc = self.tc
        stop: list[bool] = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
        last = time.monotonic()
        while self.step < tc.steps and not stop and not (tc.max_minutes and self.seconds > tc.max_minutes * 60):
            loss = self.train_step()
            now = time.monotonic()
            self.seconds += now - last
            last = now
            bar.update(1)
            yield loss, now

    def run(self) -> None:
        """Train to the budget: a log line every `log_every` steps, a validation (and the best
        weights exported) every `val_every`, a checkpoint every `checkpoint_minutes`, and a last one."""
        tc = self.tc
        cores = self.world * (1 if self.device.type == "cuda" else torch.get_num_threads())
        last_ckpt = last_log = time.monotonic()
        bar = tqdm(total=tc.steps, initial=self.step, disable=not self.progress, desc=self.desc)
        losses: list[float] = []
        for loss, now in self.timed_steps(bar):
            losses.append(loss)
            if self.step % tc.log_every == 0:
                self.compute_seconds += (now - last_log) * cores
                extra = self.speed(now - last_log)
                bar.set_postfix({self.loss_name: f"{np.mean(losses):.4f}", **{k: f"{v:.0f}" for k, v in extra.items()}})
                self.log({"step": self.step, self.loss_name: float(np.mean(losses)),
                          "lr": lr_at(self.step, tc, self.seconds), **extra, **self._hours})
                last_log, losses = now, []
            if self.step % tc.val_every == 0:
                self._validate_and_export()
            if now - last_ckpt > tc.checkpoint_minutes * 60:
                self.save_checkpoint()
                last_ckpt = now
        bar.close()
        if self.step % tc.val_every:
            self._validate_and_export()
        self.save_checkpoint()
        self.finish()

    def _validate_and_export(self) -> None:
        """Score the held-out data and export the weights when they are the best yet (rank 0 only);
        with nothing held out, the latest weights stand as the best."""
        if self.rank != 0:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        val = self.validate()
        if val is None:
            self.export(self.out / "best.safetensors")
            return
        self.log({"step": self.step, f"val_{self.loss_name}": float(np.mean(val)), "val_per_iteration": val, **self._hours})
        if np.mean(val) < self.best_val:
            self.best_val = float(np.mean(val))
            self.export(self.out / "best.safetensors")
