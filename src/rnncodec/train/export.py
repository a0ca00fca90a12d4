"""Export a training checkpoint as release weights: fp16 safetensors with config and metadata."""
from __future__ import annotations

import pickle
from pathlib import Path

import torch

from ..errors import ModelError
from ..stored import save_weights


def load_checkpoint(checkpoint: Path) -> dict:
    """A training checkpoint on the CPU, or a one-line ModelError for anything else."""
    try:
        ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise ModelError(f"{checkpoint}: not a training checkpoint ({type(exc).__name__})") from None
    if not isinstance(ck, dict) or not {"model", "model_config"} <= ck.keys():
        raise ModelError(f"{checkpoint}: not a training checkpoint (no model in it)")
    return ck


def export_checkpoint(checkpoint: Path, output: Path) -> bytes:
    """Write the checkpoint's model as fp16 weights; returns the model id files will carry."""
    ck = load_checkpoint(checkpoint)
    state, config = ck["model"], ck["model_config"]
    meta = {"step": str(ck.get("step", 0)), "cpu_hours": f"{ck.get('cpu_seconds', 0) / 3600:.2f}",
            "train_config": str(ck.get("train_config", {}))}
    return save_weights(output, "image", config, state, **meta)
