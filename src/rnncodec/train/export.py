"""Export a training checkpoint as release weights: fp16 safetensors with config and metadata."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ModelError
from ..weights import save_weights


def export_checkpoint(checkpoint: Path, output: Path) -> bytes:
    """Write the checkpoint's model as fp16 weights; returns the model id files will carry."""
    try:
        ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
        state, config = ck["model"], ck["model_config"]
    except (OSError, RuntimeError, KeyError, EOFError) as exc:
        raise ModelError(f"{checkpoint}: not a training checkpoint ({type(exc).__name__})") from None
    meta = {"step": str(ck.get("step", 0)), "cpu_hours": f"{ck.get('cpu_seconds', 0) / 3600:.2f}",
            "train_config": str(ck.get("train_config", {}))}
    return save_weights(output, "image", config, state, **meta)
