"""`rnncodec train-entropy`: fit the context model to the codes an image model produces.

The image model runs in inference mode (sign binarizer), so the model learns the statistics of
exactly the bits the codec writes. Encoding crops is the costly part on a CPU, so codes live in
a pool: each step draws a batch from it and replaces the `fresh` oldest entries with new crops.
The loss is the code length, binary cross-entropy in bits per bit (1.0 = raw).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..models.store import ImageModel, load_image_model
from ..image import list_images
from ..train.data import PatchSource, is_validation
from ..train.loop import lr_at, timed_steps
from ..weights import save_weights
from .context_model import KIND, ContextConfig, ContextModel


@dataclass
class EntropyTrainConfig:
    data: list[str]
    out: str
    image_model: str | None = None  # default: the packaged image model
    context: dict = field(default_factory=dict)  # ContextConfig overrides
    crop: int = 256
    batch: int = 8
    pool: int = 256  # crops whose codes are kept in memory
    fresh: int = 1  # crops re-encoded per step
    steps: int = 5000
    lr: float = 2e-3
    min_lr_ratio: float = 0.05
    warmup: int = 50
    clip: float = 1.0
    seed: int = 0
    jpeg_downscale: int = 1
    val_fraction: float = 0.05
    val_crops: int = 32
    val_every: int = 200
    log_every: int = 20
    checkpoint_minutes: float = 5.0
    max_minutes: float = 0.0  # total over all resumes; 0 = no limit. The schedule ends there too.
    threads: int = 0


def image_codes(image: ImageModel, x: torch.Tensor, progress: bool = True) -> torch.Tensor:
    """The image model's bits for patches, N×T×C×h×w int8 ±1, encoded a few at a time."""
    out = []
    with torch.inference_mode():
        for chunk in tqdm(x.split(4), desc="codes", disable=not progress or len(x) <= 4, leave=False):
            bits, _ = image.net(chunk, image.cfg.iterations)
            out.append(torch.stack(bits, 1).to(torch.int8))
    return torch.cat(out)


def code_length(model: ContextModel, bits: torch.Tensor) -> torch.Tensor:
    """Mean code length in bits per bit of N×T×C×h×w ±1 bits, per iteration (T values)."""
    nll = F.binary_cross_entropy_with_logits(model(bits), (bits > 0).float(), reduction="none")
    return nll.mean(dim=(0, 2, 3, 4)) / math.log(2)


class EntropyTrainer:
    def __init__(self, tc: EntropyTrainConfig, resume: bool = False, progress: bool = True) -> None:
        if tc.crop % 16 or tc.crop <= 0:
            raise ValueError("--crop must be a positive multiple of 16")
        self.tc, self.progress = tc, progress
        if tc.threads:
            torch.set_num_threads(tc.threads)
        torch.manual_seed(tc.seed)
        self.rng = np.random.default_rng(tc.seed)
        self.out = Path(tc.out)
        self.ckpt_path = self.out / "checkpoint.pt"
        self.image: ImageModel = load_image_model(Path(tc.image_model) if tc.image_model else None)
        self.cfg = ContextConfig(**{"bits": self.image.cfg.bits, "iterations": self.image.cfg.iterations, **tc.context})
        self.model = ContextModel(self.cfg)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=tc.lr)
        self.step, self.best_val, self.seconds = 0, float("inf"), 0.0
        if resume and self.ckpt_path.exists():
            self._load()

        paths = list_images(*tc.data)
        train_paths = [p for p in paths if not is_validation(p, tc.val_fraction)]
        val_paths = [p for p in paths if is_validation(p, tc.val_fraction)]
        self.src = PatchSource(train_paths, tc.jpeg_downscale, 0, progress, patch=tc.crop)
        self.val_bits = None
        if val_paths:
            val_src = PatchSource(val_paths, tc.jpeg_downscale, 0, False, patch=tc.crop)
            self.val_bits = self.codes(val_src.batch(tc.val_crops, np.random.default_rng(12345)))
        self.pool = self.codes(self.src.batch(tc.pool, self.rng))
        self.next_fresh = 0

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        return image_codes(self.image, x, self.progress)

    # -- checkpoints -------------------------------------------------------------------------
    def _load(self) -> None:
        ck = torch.load(self.ckpt_path, weights_only=False)
        if ck["context_config"] != self.cfg.to_json() or ck["image_model"] != self.image.model_id.hex():
            raise SystemExit(f"{self.ckpt_path} was trained with another config or image model; use a fresh --out")
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.step, self.best_val, self.seconds = ck["step"], ck["best_val"], ck["seconds"]
        self.rng.bit_generator.state = ck["rng"]
        torch.set_rng_state(ck["torch_rng"])

    def save_checkpoint(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        ck = {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "context_config": self.cfg.to_json(),
              "image_model": self.image.model_id.hex(), "train_config": asdict(self.tc), "step": self.step,
              "best_val": self.best_val, "seconds": self.seconds, "rng": self.rng.bit_generator.state,
              "torch_rng": torch.get_rng_state()}
        tmp = self.ckpt_path.with_suffix(".tmp")
        torch.save(ck, tmp)
        os.replace(tmp, self.ckpt_path)

    def export(self, path: Path) -> bytes:
        """fp16 weights; the metadata names the image model whose codes they were fitted to."""
        return save_weights(path, KIND, self.cfg.to_json(), self.model.state_dict(), step=str(self.step),
                            image_model=self.image.model_id.hex(), val_bits_per_bit=f"{self.best_val:.5f}")

    def _log(self, record: dict) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    # -- steps -------------------------------------------------------------------------------
    def train_step(self) -> float:
        tc = self.tc
        if tc.fresh:
            idx = (self.next_fresh + np.arange(tc.fresh)) % len(self.pool)
            self.pool[idx] = self.codes(self.src.batch(tc.fresh, self.rng))
            self.next_fresh = int(idx[-1] + 1) % len(self.pool)
        bits = self.pool[self.rng.integers(0, len(self.pool), tc.batch)].float()
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.step, tc, self.seconds)  # type: ignore[arg-type]  # same schedule fields
        loss = code_length(self.model, bits).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.clip)
        self.opt.step()
        self.step += 1
        return loss.item()

    def validate(self) -> list[float]:
        self.model.eval()
        with torch.no_grad():
            per_iter = torch.stack([code_length(self.model, b.float()) * len(b) for b in self.val_bits.split(8)])
        self.model.train()
        return (per_iter.sum(0) / len(self.val_bits)).tolist()

    def run(self) -> None:
        tc = self.tc
        self.model.train()
        last_ckpt = time.monotonic()
        bar = tqdm(total=tc.steps, initial=self.step, disable=not self.progress, desc="train-entropy")
        losses: list[float] = []
        for loss, now in timed_steps(self, bar):
            losses.append(loss)
            if self.step % tc.log_every == 0:
                bar.set_postfix(bits_per_bit=f"{np.mean(losses):.4f}")
                self._log({"step": self.step, "bits_per_bit": float(np.mean(losses)), "seconds": self.seconds,
                           "lr": lr_at(self.step, tc, self.seconds)})  # type: ignore[arg-type]
                losses = []
            if self.val_bits is not None and self.step % tc.val_every == 0:
                self._validate_and_export()
            if now - last_ckpt > tc.checkpoint_minutes * 60:
                self.save_checkpoint()
                last_ckpt = now
        bar.close()
        if self.val_bits is None:
            self.export(self.out / "best.safetensors")
        elif self.step % tc.val_every:
            self._validate_and_export()
        self.save_checkpoint()

    def _validate_and_export(self) -> None:
        val = self.validate()
        self._log({"step": self.step, "val_bits_per_bit": float(np.mean(val)), "val_per_iteration": val})
        if np.mean(val) < self.best_val:
            self.best_val = float(np.mean(val))
            self.export(self.out / "best.safetensors")


def _run(args: argparse.Namespace) -> None:
    context = {k: v for k, v in (("masked", args.masked), ("state", args.state), ("row", args.row),
                                 ("head", args.head)) if v is not None}
    tc = EntropyTrainConfig(
        data=args.data, out=args.out, image_model=args.image_model, context=context, crop=args.crop,
        batch=args.batch, pool=args.pool, fresh=args.fresh, steps=args.steps, lr=args.lr, seed=args.seed,
        jpeg_downscale=args.jpeg_downscale, val_fraction=args.val_fraction, val_crops=args.val_crops,
        val_every=args.val_every, checkpoint_minutes=args.checkpoint_minutes, max_minutes=args.max_minutes,
        threads=args.threads,
    )
    EntropyTrainer(tc, resume=args.resume).run()


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train-entropy` subcommand to the CLI."""
    d = EntropyTrainConfig(data=[], out="")
    t = subparsers.add_parser("train-entropy", help="train the entropy coder's context model on an image model's codes")
    t.add_argument("data", nargs="+", help="folders of training images (PNG, JPEG)")
    t.add_argument("--out", required=True, help="run folder: checkpoint.pt, best.safetensors, log.jsonl")
    t.add_argument("--image-model", help="image model weights whose codes to model; default: the packaged model")
    t.add_argument("--crop", type=int, default=d.crop, help="crop side in pixels (multiple of 16)")
    t.add_argument("--batch", type=int, default=d.batch)
    t.add_argument("--pool", type=int, default=d.pool, help="crops whose codes are kept in memory")
    t.add_argument("--fresh", type=int, default=d.fresh, help="crops re-encoded into the pool per step")
    t.add_argument("--steps", type=int, default=d.steps)
    t.add_argument("--lr", type=float, default=d.lr)
    t.add_argument("--seed", type=int, default=d.seed)
    t.add_argument("--jpeg-downscale", type=int, default=d.jpeg_downscale, metavar="F", help="shrink JPEG sources by F first")
    t.add_argument("--val-fraction", type=float, default=d.val_fraction)
    t.add_argument("--val-crops", type=int, default=d.val_crops)
    t.add_argument("--val-every", type=int, default=d.val_every)
    t.add_argument("--checkpoint-minutes", type=float, default=d.checkpoint_minutes)
    t.add_argument("--max-minutes", type=float, default=d.max_minutes)
    t.add_argument("--threads", type=int, default=d.threads)
    for name in ("masked", "state", "row", "head"):
        t.add_argument(f"--{name}", type=int, help=f"context model: {name} channels")
    t.add_argument("--resume", action="store_true")
    t.set_defaults(func=_run)
