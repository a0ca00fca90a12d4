"""The training loop: Adam, warmup + cosine schedule, clipping, checkpoints, validation, DDP.

Run it directly or under `torchrun`: with WORLD_SIZE set, each process trains on its own random
patches and DistributedDataParallel averages the gradients (gloo on CPU, nccl on GPU).
"""
from __future__ import annotations

import gc
import json
import math
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from ..config import ModelConfig, preset
from ..errors import ModelError
from ..models import RNNCodec
from ..weights import load_weights, save_weights
from .config import TrainConfig
from ..image import list_images
from .data import PatchSource, is_validation
from .export import load_checkpoint
from .losses import ResidualL1


def lr_at(step: int, tc: TrainConfig, seconds: float = 0.0) -> float:
    """Linear warmup, then cosine decay to min_lr_ratio·lr at `steps` or at `max_minutes`, whichever comes first."""
    if step < tc.warmup:
        return tc.lr * (step + 1) / tc.warmup
    progress = min(1.0, (step - tc.warmup) / max(1, tc.steps - tc.warmup))
    if tc.max_minutes:
        progress = max(progress, min(1.0, seconds / (tc.max_minutes * 60)))
    return tc.lr * (tc.min_lr_ratio + (1 - tc.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


class Steppable(Protocol):
    tc: Any  # has steps and max_minutes
    step: int
    seconds: float

    def train_step(self) -> float: ...


def timed_steps(trainer: Steppable, bar: tqdm) -> Iterator[tuple[float, float]]:
    """Run train steps, yielding (loss, monotonic time) after each, until the step budget, the
    time budget (`max_minutes` of training time over all resumes) or a SIGTERM ends the run. The
    time between steps (validation, checkpoints) counts as training time too."""
    tc = trainer.tc
    stop: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    last = time.monotonic()
    while trainer.step < tc.steps and not stop and not (tc.max_minutes and trainer.seconds > tc.max_minutes * 60):
        loss = trainer.train_step()
        now = time.monotonic()
        trainer.seconds += now - last
        last = now
        bar.update(1)
        yield loss, now


def _dist_setup() -> tuple[int, int, torch.device]:
    if "WORLD_SIZE" not in os.environ:
        return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    rank = dist.get_rank()
    if backend == "nccl":
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return rank, dist.get_world_size(), torch.device("cuda", local)
    return rank, dist.get_world_size(), torch.device("cpu")


class Trainer:
    def __init__(self, tc: TrainConfig, resume: bool | Path = False, progress: bool = True) -> None:
        """`resume`: True continues from OUT/checkpoint.pt if there is one; a path continues from that file."""
        self.tc = tc
        self.rank, self.world, self.device = _dist_setup()
        if tc.threads:
            torch.set_num_threads(tc.threads)
        torch.backends.cudnn.benchmark = True  # fixed patch shapes: let cuDNN pick its fastest kernels once
        self.out = Path(tc.out)
        self.ckpt_path = self.out / "checkpoint.pt"
        self.progress = progress and self.rank == 0
        torch.manual_seed(tc.seed + self.rank)
        self.rng = np.random.default_rng(tc.seed + self.rank)
        self.cfg: ModelConfig = preset(tc.preset, **tc.model_overrides)
        self.model = RNNCodec(self.cfg).to(self.device)
        self.model.binarizer.stochastic = tc.binarizer == "stochastic"
        self.opt = torch.optim.Adam(self.model.parameters(), lr=tc.lr)
        self.loss = ResidualL1(tc.ssim_weight)
        self.loss.window = self.loss.window.to(self.device)
        self.unroll = tc.unroll or self.cfg.iterations
        self.step, self.best_val, self.cpu_seconds, self.seconds = 0, float("inf"), 0.0, 0.0
        self.loss_scale: torch.Tensor | None = None  # running mean L1 per iteration, for normalised weights

        calibrate = False
        if resume is True and self.ckpt_path.exists():
            self._load(self.ckpt_path)
        elif resume:
            self._load(Path(resume))
        elif tc.init_from:
            calibrate = self._init_weights(Path(tc.init_from))
        self.ddp = torch.nn.parallel.DistributedDataParallel(self.model) if self.world > 1 else self.model

        paths = list_images(*tc.data)
        train_paths = [p for p in paths if not is_validation(p, tc.val_fraction)]
        val_paths = [p for p in paths if is_validation(p, tc.val_fraction)]
        self.train_src = PatchSource(train_paths, tc.jpeg_downscale, tc.high_entropy, self.progress, tc.crop, tc.hard_crops)
        self.val_batch = None
        if val_paths:
            val_src = PatchSource(val_paths, tc.jpeg_downscale, 0, False, tc.crop)
            self.val_batch = val_src.batch(tc.val_patches, np.random.default_rng(12345)).to(self.device)
        if calibrate:
            x = self.train_src.batch(max(8, tc.batch), np.random.default_rng(tc.seed)).to(self.device)
            self._log({"step": 0, "calibrated_gains": self.model.eval().calibrate_gains(x)})
            self.model.train()

    # -- checkpoints -------------------------------------------------------------------------
    def _load(self, path: Path) -> None:
        ck = load_checkpoint(path)
        self._set_weights(path, ck["model_config"], ck["model"])
        self.opt.load_state_dict(ck["optimizer"])  # Adam's state follows its parameters to the device
        self.step, self.best_val = ck["step"], ck["best_val"]
        self.cpu_seconds, self.seconds = ck["cpu_seconds"], ck["seconds"]
        if self.rank == 0 and "rng" in ck:
            self.rng.bit_generator.state = ck["rng"]
            torch.set_rng_state(ck["torch_rng"])

    def _init_weights(self, path: Path) -> bool:
        """Fine-tuning: only the weights carry over, so a new run gets its own warmup and decay.

        The weights may come from a model with the same layers but another reconstruction
        framework or priming (additive → iteration gain, say): the shared layers carry over, new
        ones keep their initial values, and True asks for newly added gains to be calibrated on a
        training batch."""
        if path.suffix == ".safetensors":
            stored = load_weights(path)
            config, state = stored.config, stored.tensors
        else:
            ck = load_checkpoint(path)
            config, state = ck["model_config"], ck["model"]
        if replace(ModelConfig.from_json(config), framework=self.cfg.framework, priming=self.cfg.priming) != self.cfg:
            raise ModelError(f"{path} holds another model config (preset, cell, width)")
        missing = self.model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False).missing_keys
        return "log_gain" in missing

    def _set_weights(self, path: Path, config: str, state: dict[str, torch.Tensor]) -> None:
        if ModelConfig.from_json(config) != self.cfg:
            raise ModelError(f"{path} holds another model config (preset, cell, framework)")
        self.model.load_state_dict({k: v.float() for k, v in state.items()})

    def save_checkpoint(self) -> None:
        if self.rank != 0:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        ck = {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.opt.state_dict(),
            "model_config": self.cfg.to_json(),
            "train_config": asdict(self.tc),
            "step": self.step,
            "best_val": self.best_val,
            "cpu_seconds": self.cpu_seconds,
            "seconds": self.seconds,
            "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
        }
        tmp = self.ckpt_path.with_suffix(".tmp")
        torch.save(ck, tmp)
        os.replace(tmp, self.ckpt_path)

    # -- steps -------------------------------------------------------------------------------
    def _log(self, record: dict) -> None:
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            with open(self.out / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def validate(self) -> list[float]:
        self.model.eval()
        with torch.no_grad():
            per_iter = []
            for chunk in self.val_batch.split(64):
                _, recons = self.model(chunk, self.unroll)
                per_iter.append(self.loss.per_iteration(chunk, recons) * len(chunk))
            val = (torch.stack(per_iter).sum(0) / len(self.val_batch)).tolist()
        self.model.train()
        return val

    def train_step(self) -> float:
        x = self.train_src.batch(self.tc.batch, self.rng).to(self.device)
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.step, self.tc, self.seconds)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.tc.bf16):
            _, recons = self.ddp(x, self.unroll)
            per_iteration = self.loss.per_iteration(x, [r.float() for r in recons])
        loss = per_iteration.mean() if self.tc.iteration_weights == "mean" else self._normalised(per_iteration)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tc.clip)
        self.opt.step()
        self.step += 1
        return loss.item()

    def _normalised(self, per_iteration: torch.Tensor) -> torch.Tensor:
        """Each iteration's L1 over its running mean: under the plain mean, late iterations (with
        small residuals) get a small share of the gradient; this gives every iteration the same
        relative weight, as a log-loss does. Its value stays near 1, so it is logged as the mean."""
        current = per_iteration.detach()
        self.loss_scale = current if self.loss_scale is None else 0.99 * self.loss_scale + 0.01 * current
        return (per_iteration / self.loss_scale).mean() * self.loss_scale.mean()

    def run(self) -> None:
        tc = self.tc
        self.model.train()
        # CPU runs count core-hours; GPU runs count device-hours (threads there only feed the GPU)
        on_gpu = self.device.type == "cuda"
        cores = self.world * (1 if on_gpu else torch.get_num_threads())
        hours_key = "gpu_hours" if on_gpu else "cpu_hours"
        last_ckpt = last_log = time.monotonic()
        bar = tqdm(total=tc.steps, initial=self.step, disable=not self.progress, desc="train")
        losses: list[float] = []
        for loss, now in timed_steps(self, bar):  # a SIGTERM ends the run after the current step, with a checkpoint
            losses.append(loss)
            if self.step % tc.log_every == 0:
                rate = tc.log_every * tc.batch * self.world / (now - last_log)
                self.cpu_seconds += (now - last_log) * cores
                last_log = now
                bar.set_postfix(loss=f"{np.mean(losses):.4f}", patches_s=f"{rate:.0f}")
                self._log({"step": self.step, "loss": float(np.mean(losses)), "lr": lr_at(self.step, tc, self.seconds),
                           "patches_per_s": rate, hours_key: self.cpu_seconds / 3600})
                losses = []
            if self.val_batch is not None and self.step % tc.val_every == 0 and self.rank == 0:
                val = self.validate()
                self._log({"step": self.step, "val_loss": float(np.mean(val)), "val_per_iteration": val,
                           hours_key: self.cpu_seconds / 3600})
                if np.mean(val) < self.best_val:
                    self.best_val = float(np.mean(val))
                    self.export(self.out / "best.safetensors")
            if now - last_ckpt > tc.checkpoint_minutes * 60:
                self.save_checkpoint()
                last_ckpt = now
        bar.close()
        self.save_checkpoint()
        if self.world > 1:
            # drop DDP's reducer, which holds the process group, first: left to interpreter exit, its
            # gloo threads could be torn down in the wrong order and abort the process
            self.ddp = self.model
            gc.collect()
            dist.barrier()
            dist.destroy_process_group()

    def export(self, path: Path) -> bytes:
        return save_weights(path, "image", self.cfg.to_json(), self.model.state_dict(), step=str(self.step))
