"""Weights files: fp16 safetensors with the config in the metadata, and the models' stable ids.

Where weights files are found (the package, $RNNCODEC_MODEL_PATH) is zoo.py's business. Weights
load as numpy arrays, so that coder 2 and the weights lookup run without torch; the torch models
convert them when they are built (`build_module`).

A model id is the first 8 bytes of SHA-256 over the kind, the config JSON and every stored
tensor (name, shape and fp16 bytes), so it names exactly the numbers a decoder will compute with.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save

from .errors import ModelError
from .fileio import atomic_write

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class StoredWeights:
    kind: str  # "image", "entropy" (coder 1) or "entropy-int" (coder 2)
    config: str  # JSON
    tensors: dict[str, np.ndarray]
    model_id: bytes
    metadata: dict[str, str]


M = TypeVar("M", bound="torch.nn.Module")


def build_module(stored: StoredWeights, kind: str, make: Callable[[str], M]) -> M:
    """`make(config)` loaded with the stored weights in float32, in eval mode; weights of another
    kind, or that do not fit their config, are a ModelError rather than a traceback."""
    if stored.kind != kind:
        raise ModelError(f"expected {kind} model weights, got {stored.kind!r} weights")
    import torch  # only the torch models are built here

    try:
        module = make(stored.config)
        module.load_state_dict({k: torch.from_numpy(v).float() for k, v in stored.tensors.items()})
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ModelError(f"{kind} weights do not fit their config: {str(exc).splitlines()[0]}") from None
    return module.eval()


def compute_id(kind: str, config: str, tensors: dict[str, np.ndarray]) -> bytes:
    """The dtypes hash by their torch names ("torch.float16"): ids were first computed on torch
    tensors, and files name their models by these ids."""
    h = hashlib.sha256(kind.encode() + b"\0" + config.encode() + b"\0")
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}:{tuple(t.shape)}:torch.{t.dtype.name}\0".encode())
        h.update(t.tobytes(order="C"))  # flat and row-major, whatever the layout
    return h.digest()[:8]


def save_weights(path: Path, kind: str, config: str, state: dict[str, torch.Tensor], **metadata: str) -> bytes:
    """Write floating tensors as fp16 (others as they are); returns the model id."""
    tensors = {k: (v.detach().half() if v.is_floating_point() else v.detach()).cpu().contiguous().numpy()
               for k, v in state.items()}
    model_id = compute_id(kind, config, tensors)
    meta = {**metadata, "kind": kind, "config": config, "model_id": model_id.hex()}
    atomic_write(path, lambda f: f.write(save(tensors, metadata=meta)), force=True)
    return model_id


def read_metadata(path: Path) -> dict[str, str]:
    """A weights file's metadata (kind, config, model id, …), without loading its tensors."""
    with safe_open(str(path), framework="numpy") as f:
        return f.metadata() or {}


def load_weights(path: Path) -> StoredWeights:
    try:
        meta = read_metadata(path)
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise ModelError(f"cannot read weights {path}: {exc}") from None
    if "kind" not in meta or "config" not in meta:
        raise ModelError(f"{path} is not an rnncodec weights file (no config in its metadata)")
    return StoredWeights(meta["kind"], meta["config"], tensors, compute_id(meta["kind"], meta["config"], tensors), meta)
