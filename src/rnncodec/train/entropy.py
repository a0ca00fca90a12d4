"""`rnncodec train-entropy`: fit the context model to the codes an image model produces.

The image model runs in inference mode (sign binarizer), so the model learns the statistics of
exactly the bits the codec writes. Encoding crops is the costly part on a CPU, so codes live in
a pool: each step draws a batch from it and replaces the `fresh` oldest entries with new crops.
The loss is the code length, binary cross-entropy in bits per bit (1.0 = raw).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..config import ContextConfig
from ..entropy.arithmetic import KIND
from ..errors import ModelError, OptionError
from ..models.context_model import ContextModel
from ..stored import save_weights
from ..zoo import ImageModel, load_image_model
from .config import EntropyTrainConfig
from .data import PatchSource
from .run import Run


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


class EntropyTrainer(Run):
    """Coder 1's context model, fitted to the code length of an image model's bits."""

    tc: EntropyTrainConfig
    desc = "train-entropy"
    loss_name = "bits_per_bit"

    def __init__(self, tc: EntropyTrainConfig, resume: bool = False, progress: bool = True) -> None:
        if tc.crop % 16 or tc.crop <= 0:
            raise OptionError("--crop must be a positive multiple of 16")
        super().__init__(tc, progress)
        self.image: ImageModel = load_image_model(Path(tc.image_model) if tc.image_model else None)
        self.cfg = ContextConfig(**{"bits": self.image.cfg.bits, "iterations": self.image.cfg.iterations, **tc.context})
        self.model = ContextModel(self.cfg)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=tc.lr)
        if resume and self.ckpt_path.exists():
            self._load()

        train_paths, val_paths = self.split()
        self.src = PatchSource(train_paths, tc.jpeg_downscale, 0, progress, patch=tc.crop)
        self.val_bits = None
        if val_paths:
            val_src = PatchSource(val_paths, tc.jpeg_downscale, 0, False, patch=tc.crop)
            self.val_bits = self.codes(val_src.batch(tc.val_crops, np.random.default_rng(12345)))
        self.pool = self.codes(self.src.batch(tc.pool, self.rng))
        self.next_fresh = 0
        self.model.train()

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        return image_codes(self.image, x, self.progress)

    # -- checkpoints -------------------------------------------------------------------------
    def _load(self) -> None:
        ck = torch.load(self.ckpt_path, weights_only=False)
        if ck["context_config"] != self.cfg.to_json() or ck["image_model"] != self.image.model_id.hex():
            raise ModelError(f"{self.ckpt_path} was trained with another config or image model; use a fresh --out")
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.load_run_state(ck)

    def checkpoint_state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "context_config": self.cfg.to_json(),
                "image_model": self.image.model_id.hex()}

    def export(self, path: Path) -> bytes:
        """fp16 weights; the metadata names the image model whose codes they were fitted to."""
        return save_weights(path, KIND, self.cfg.to_json(), self.model.state_dict(), step=str(self.step),
                            image_model=self.image.model_id.hex(), val_bits_per_bit=f"{self.best_val:.5f}")

    # -- steps -------------------------------------------------------------------------------
    def train_step(self) -> float:
        tc = self.tc
        if tc.fresh:
            idx = (self.next_fresh + np.arange(tc.fresh)) % len(self.pool)
            self.pool[idx] = self.codes(self.src.batch(tc.fresh, self.rng))
            self.next_fresh = int(idx[-1] + 1) % len(self.pool)
        bits = self.pool[self.rng.integers(0, len(self.pool), tc.batch)].float()
        self.set_lr(self.opt)
        loss = code_length(self.model, bits).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.clip)
        self.opt.step()
        self.step += 1
        return loss.item()

    def validate(self) -> list[float] | None:
        if self.val_bits is None:
            return None
        self.model.eval()
        with torch.no_grad():
            per_iter = torch.stack([code_length(self.model, b.float()) * len(b) for b in self.val_bits.split(8)])
        self.model.train()
        return (per_iter.sum(0) / len(self.val_bits)).tolist()
