"""Training settings: one dataclass per trainer, each field one default with its help text.

The command line is derived from these fields (`add_flags`, `from_args`), so no option or
default is written twice. This module imports no torch, so building the CLI stays cheap.
"""
from __future__ import annotations

import argparse
import typing
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from ..config import PRESETS


def opt(default: Any, help: str, **argparse_kw: Any) -> Any:
    """A config field with its CLI help (and extra argparse settings such as `choices`)."""
    return field(default=default, metadata={"help": help, **argparse_kw})


def opt_like(cls: type, name: str, default: Any) -> Any:
    """`cls`'s field `name` (its help and argparse settings) with another default, for a subclass
    or a sibling config whose setting means the same: the help text stays written once."""
    return field(default=default, metadata=next(f for f in fields(cls) if f.name == name).metadata)


@dataclass(kw_only=True)
class CropSource:
    """What every trainer and quantise-entropy share: where crops come from, and which are held out."""

    seed: int = opt(0, "seed of the crops (and, in train, of the binarizer noise)")
    jpeg_downscale: int = opt(1, "shrink JPEG sources by F first, hiding their block artefacts", metavar="F")
    val_fraction: float = opt(0.05, "images held back for validation (by a hash of the file name)")


@dataclass
class RunConfig(CropSource):
    """What every trainer shares: data, the crops, the schedule and the run's cadence."""

    data: list[str]
    out: str
    steps: int = opt(20000, "most steps; the schedule decays over them")
    lr: float = opt(5e-4, "peak learning rate (Adam)")
    min_lr_ratio: float = opt(0.05, "the cosine decay ends at this fraction of the peak learning rate")
    warmup: int = opt(200, "steps of linear warm-up")
    clip: float = opt(1.0, "gradient norm clip")
    val_every: int = opt(500, "steps between validations (the best weights are exported each time they improve)")
    log_every: int = opt(50, "steps between log lines")
    checkpoint_minutes: float = opt(5.0, "minutes between checkpoints")
    max_minutes: float = opt(0.0, "training time over all resumes (0: no limit); the schedule ends there too")
    threads: int = opt(0, "torch threads (0: torch's default)")


@dataclass
class TrainConfig(RunConfig):
    """`rnncodec train`: the image model."""

    preset: str = opt("small", "model preset: paper (the paper's widths), small (¼), fast (⅛), tiny (tests)",
                      choices=tuple(PRESETS))
    model_overrides: dict = field(default_factory=dict)  # ModelConfig fields replaced (cell, framework, …)
    unroll: int = opt(0, "iterations unrolled in training (0: the model's own count)")
    batch: int = opt(32, "patches per step")
    crop: int = opt(32, "patch side in pixels, a multiple of 16 (the paper: 32); larger crops teach interiors, not only borders")
    bf16: bool = opt(False, "bf16 autocast (faster on CPUs with bf16 support)")
    binarizer: str = opt("stochastic", "training bits: stochastic (the paper) or sign, as at test time (straight-through)",
                         choices=("stochastic", "sign"))
    iteration_weights: str = opt("mean", "loss over iterations: mean (the paper), or normalised, each iteration's L1 "
                                 "divided by its running mean so late iterations weigh as much as early ones",
                                 choices=("mean", "normalised"))
    ssim_weight: float = opt(0.0, "SSIM-weighted L1 strength (Johnston 2018); 0 = plain L1")
    high_entropy: int = opt(0, "keep per image the K 32×32 tiles PNG compresses worst", metavar="K")
    hard_crops: float = opt(0.0, "fraction of each batch cut around the crop-sized tiles PNG compresses worst "
                            "(hard-patch mining, Johnston 2018)", metavar="F")
    stop_blocks: float = opt(0.0, "fraction of 16×16 blocks stopped at a random iteration, as spatially adaptive "
                             "bit rates stop them, so that the model learns to read stopped blocks", metavar="P")
    gain_lr: float = opt(1.0, "learning-rate multiplier of the per-iteration gains (framework iteration_gain): "
                         "one scalar each, which at the shared rate moves by at most ≈ lr per step", metavar="F")
    val_patches: int = opt(256, "held-out patches scored at every validation")
    init_from: str = opt("", "fine-tune: start from these weights (.safetensors or checkpoint) with a fresh optimizer "
                         "and schedule", metavar="WEIGHTS")


@dataclass
class EntropyTrainConfig(RunConfig):
    """`rnncodec train-entropy`: coder 1's context model, on the codes of an image model."""

    image_model: str = opt("", "image model weights whose codes to model (default: the packaged model)")
    context: dict = field(default_factory=dict)  # ContextConfig fields replaced (channels)
    crop: int = opt(256, "crop side in pixels, a multiple of 16")
    batch: int = opt(8, "crops per step")
    pool: int = opt(256, "crops whose codes are kept in memory")
    fresh: int = opt(1, "crops re-encoded into the pool per step")
    val_crops: int = opt(32, "held-out crops scored at every validation")
    steps: int = opt_like(RunConfig, "steps", 5000)
    lr: float = opt_like(RunConfig, "lr", 2e-3)
    warmup: int = opt_like(RunConfig, "warmup", 50)
    val_every: int = opt_like(RunConfig, "val_every", 200)
    log_every: int = opt_like(RunConfig, "log_every", 20)


@dataclass
class QuantiseConfig(CropSource):
    """`rnncodec quantise-entropy`: coder 2's integer context model, fitted to a float one."""

    calib: list[str]  # folders of training images
    output: str
    image_model: str = opt("", "image model weights (default: the one the float model names, found by id)")
    crop: int = opt_like(EntropyTrainConfig, "crop", 256)  # as train-entropy's documented run: the row LSTM sees 16 rows
    crops: int = opt(256, "training crops, their codes kept in memory")
    val_crops: int = opt_like(EntropyTrainConfig, "val_crops", 48)  # the best model on them is kept
    relu_quantile: float = opt(0.9999, "the head's ReLU range: this quantile per channel, on the first 64 crops")
    steps: int = opt(600, "quantisation-aware fine-tuning steps (0: PTQ only)")
    batch: int = opt_like(EntropyTrainConfig, "batch", 4)
    lr: float = opt(2e-4, "learning rate (Adam, cosine decay to 5 %)")
    val_every: int = opt(100, "steps between held-out scores")
    threads: int = opt_like(RunConfig, "threads", 1)


C = TypeVar("C")


def add_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """One `--flag` per field of `cls` that has help text."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if "help" not in f.metadata:
            continue
        kw = {**f.metadata, "help": f.metadata["help"].replace("%", "%%")}  # argparse formats help with %
        flag = "--" + f.name.replace("_", "-")
        if hints[f.name] is bool:
            parser.add_argument(flag, action="store_true", **kw)
        else:
            parser.add_argument(flag, type=hints[f.name], default=f.default, **kw)


def from_args(cls: type[C], args: argparse.Namespace, **given: Any) -> C:
    """The config from parsed flags, with `given` fields set by the caller."""
    values = {f.name: getattr(args, f.name) for f in fields(cls) if f.name not in given and hasattr(args, f.name)}
    return cls(**values, **given)

