"""The training loop: Adam, warmup + cosine schedule, clipping, checkpoints, validation, DDP.

Run it directly or under `torchrun`: with WORLD_SIZE set, each process trains on its own random
patches and DistributedDataParallel averages the gradients (gloo on CPU, nccl on GPU).
"""
from __future__ import annotations

import gc
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..config import ModelConfig, preset
from ..errors import ModelError
from ..models import RNNCodec
from ..models.rnn_codec import STRIDE
from ..stored import load_weights, save_weights
from .config import TrainConfig
from .data import PatchSource
from .export import load_checkpoint
from .losses import ResidualL1
from .run import Run


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


def grown(model: RNNCodec, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A narrower model's weights placed in `model` (wider layers) so that it computes what the
    narrow one did, after Net2Net (Chen et al. 2016) with zeros: each gate's old rows keep their
    weights and read nothing new, new rows keep their initial values. Training then gives the new
    channels a use without first undoing what the trained model knows."""
    modules = dict(model.named_modules())
    out = {}
    for name, new in model.state_dict().items():
        old = state.get(name)
        if old is None or old.shape == new.shape:
            if old is not None:
                out[name] = old
            continue
        if old.dim() != new.dim() or any(o > n for o, n in zip(old.shape, new.shape)):
            raise ModelError(f"{name}: stored {tuple(old.shape)} does not fit in {tuple(new.shape)}")
        owner, conv, _ = name.rsplit(".", 2)
        gates = {"conv_x": "in_gates", "conv_h": "hidden_gates"}.get(conv)
        chunks = int(getattr(modules.get(owner), gates, 1)) if gates else 1
        grown_ = new.detach().clone()
        old_rows, new_rows = old.shape[0] // chunks, new.shape[0] // chunks
        for g in range(chunks):
            rows = slice(g * new_rows, g * new_rows + old_rows)
            grown_[rows] = 0  # the old rows read no new channel
            grown_[(rows, *map(slice, old.shape[1:]))] = old[g * old_rows: (g + 1) * old_rows]
        out[name] = grown_
    return out


class Trainer(Run):
    """The image model's trainer: L1 on the residual after every unrolled iteration."""

    tc: TrainConfig

    def __init__(self, tc: TrainConfig, resume: bool | Path = False, progress: bool = True) -> None:
        """`resume`: True continues from OUT/checkpoint.pt if there is one; a path continues from that file."""
        super().__init__(tc, progress, *_dist_setup())
        torch.backends.cudnn.benchmark = True  # fixed patch shapes: let cuDNN pick its fastest kernels once
        self.cfg: ModelConfig = preset(tc.preset, **tc.model_overrides)
        self.model = RNNCodec(self.cfg).to(self.device)
        self.model.binarizer.stochastic = tc.binarizer == "stochastic"
        self.opt = torch.optim.Adam(self._param_groups(), lr=tc.lr)
        self.loss = ResidualL1(tc.ssim_weight)
        self.loss.window = self.loss.window.to(self.device)
        self.unroll = tc.unroll or self.cfg.iterations
        self.loss_scale: torch.Tensor | None = None  # running mean L1 per iteration, for normalised weights

        calibrate = False
        if resume is True and self.ckpt_path.exists():
            self._load(self.ckpt_path)
        elif resume:
            self._load(Path(resume))
        elif tc.init_from:
            calibrate = self._init_weights(Path(tc.init_from))
        self.ddp = torch.nn.parallel.DistributedDataParallel(self.model) if self.world > 1 else self.model

        train_paths, val_paths = self.split()
        self.train_src = PatchSource(train_paths, tc.jpeg_downscale, tc.high_entropy, self.progress, tc.crop, tc.hard_crops)
        self.val_batch = None
        if val_paths:
            val_src = PatchSource(val_paths, tc.jpeg_downscale, 0, False, tc.crop)
            self.val_batch = val_src.batch(tc.val_patches, np.random.default_rng(12345)).to(self.device)
        if calibrate:
            x = self.train_src.batch(max(8, tc.batch), np.random.default_rng(tc.seed)).to(self.device)
            self.log({"step": 0, "calibrated_gains": self.model.eval().calibrate_gains(x)})
        self.model.train()

    def _param_groups(self) -> list[dict]:
        """One group, or with `gain_lr` a second for the gains, at that multiple of the schedule's rate."""
        gain = self.model.log_gain
        if self.tc.gain_lr == 1.0 or gain is None:
            return [{"params": list(self.model.parameters())}]
        rest = [p for p in self.model.parameters() if p is not gain]
        return [{"params": rest}, {"params": [gain], "lr_scale": self.tc.gain_lr}]

    # -- checkpoints -------------------------------------------------------------------------
    def _load(self, path: Path) -> None:
        ck = load_checkpoint(path)
        self._set_weights(path, ck["model_config"], ck["model"])
        self.opt.load_state_dict(ck["optimizer"])  # Adam's state follows its parameters to the device
        self.load_run_state(ck)

    def _init_weights(self, path: Path) -> bool:
        """Fine-tuning: only the weights carry over, so a new run gets its own warmup and decay.

        The weights may come from a model with the same layers but another reconstruction
        framework or priming (additive → iteration gain, say), or a narrower tail (`grown`): the
        shared layers carry over, new ones keep their initial values, and True asks for newly
        added gains to be calibrated on a training batch."""
        if path.suffix == ".safetensors":
            stored = load_weights(path)
            config, state = stored.config, {k: torch.from_numpy(v) for k, v in stored.tensors.items()}
        else:
            ck = load_checkpoint(path)
            config, state = ck["model_config"], ck["model"]
        same = dict(framework=self.cfg.framework, priming=self.cfg.priming, tail_width=self.cfg.tail_width)
        if replace(ModelConfig.from_json(config), **same) != self.cfg:
            raise ModelError(f"{path} holds another model config (preset, cell, width)")
        state = grown(self.model, {k: v.float() for k, v in state.items()})
        missing = self.model.load_state_dict(state, strict=False).missing_keys
        return "log_gain" in missing

    def _set_weights(self, path: Path, config: str, state: dict[str, torch.Tensor]) -> None:
        if ModelConfig.from_json(config) != self.cfg:
            raise ModelError(f"{path} holds another model config (preset, cell, framework)")
        self.model.load_state_dict({k: v.float() for k, v in state.items()})

    def checkpoint_state(self) -> dict[str, Any]:
        """Adam's moments in bf16: they need fp32's range, not its precision, and the GPU machine
        returns every run's checkpoint within a few 16 MiB files (a resume casts them back to the
        parameters' dtype; tools/commit_checkpoint.py drops them from the committed file)."""
        opt = self.opt.state_dict()
        opt["state"] = {i: {k: v.to(torch.bfloat16) if k.startswith("exp_avg") else v for k, v in s.items()}
                        for i, s in opt["state"].items()}
        return {"model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "optimizer": opt, "model_config": self.cfg.to_json()}

    # -- steps -------------------------------------------------------------------------------
    def validate(self) -> list[float] | None:
        if self.val_batch is None:
            return None
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
        self.set_lr(self.opt)
        active = self._random_stops(x) if self.tc.stop_blocks else None
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.tc.bf16):
            _, recons = self.ddp(x, self.unroll, active)
            per_iteration = self.loss.per_iteration(x, [r.float() for r in recons])
        loss = per_iteration.mean() if self.tc.iteration_weights == "mean" else self._normalised(per_iteration)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tc.clip)
        self.opt.step()
        self.step += 1
        return loss.item()

    def _random_stops(self, x: torch.Tensor):
        """Per patch, a `stop_blocks` share of its blocks stop after a random iteration (1 to
        unroll − 1): masks as an adaptive encoder makes them, for the model to learn to read."""
        n, _, h, w = x.shape
        shape = (n, 1, h // STRIDE, w // STRIDE)
        stops = torch.from_numpy(self.rng.integers(1, max(2, self.unroll), shape)).to(self.device)
        stopped = torch.from_numpy(self.rng.random(shape) < self.tc.stop_blocks).to(self.device)
        stops = torch.where(stopped, stops, self.unroll)
        return lambda t, recon: None if t == 0 else (stops > t).to(x.dtype)

    def _normalised(self, per_iteration: torch.Tensor) -> torch.Tensor:
        """Each iteration's L1 over its running mean: under the plain mean, late iterations (with
        small residuals) get a small share of the gradient; this gives every iteration the same
        relative weight, as a log-loss does. Its value stays near 1, so it is logged as the mean."""
        current = per_iteration.detach()
        self.loss_scale = current if self.loss_scale is None else 0.99 * self.loss_scale + 0.01 * current
        return (per_iteration / self.loss_scale).mean() * self.loss_scale.mean()

    def speed(self, seconds: float) -> dict[str, float]:
        return {"patches_per_s": self.tc.log_every * self.tc.batch * self.world / seconds}

    def finish(self) -> None:
        if self.world > 1:
            # drop DDP's reducer, which holds the process group, first: left to interpreter exit, its
            # gloo threads could be torn down in the wrong order and abort the process
            self.ddp = self.model
            gc.collect()
            dist.barrier()
            dist.destroy_process_group()

    def export(self, path: Path) -> bytes:
        return save_weights(path, "image", self.cfg.to_json(), self.model.state_dict(), step=str(self.step))
