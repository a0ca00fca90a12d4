"""Shared fixtures: a tiny seeded model saved as real weights, and small synthetic images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rnncodec.config import preset
from rnncodec.models import RNNCodec
from rnncodec.models.store import ImageModel, _reset_caches, load_image_model
from rnncodec.weights import MODEL_PATH_ENV, save_weights


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A folder holding tiny seeded image models (saved and loaded as real weights files)."""
    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    net = RNNCodec(preset("tiny", iterations=6))
    save_weights(d / "tiny.safetensors", "image", net.cfg.to_json(), net.state_dict())
    return d


@pytest.fixture(autouse=True)
def _model_path(model_dir, monkeypatch):
    """Let decoders find the test models by id, as they find packaged ones."""
    monkeypatch.setenv(MODEL_PATH_ENV, str(model_dir))
    _reset_caches()
    yield
    _reset_caches()


@pytest.fixture
def tiny_model(model_dir) -> ImageModel:
    return load_image_model(model_dir / "tiny.safetensors")


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A photo-like test image: smooth gradients plus a little noise, H×W×3 uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([128 + 100 * np.sin(x / 23 + c) * np.cos(y / 31 - c) for c in range(3)], axis=-1)
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def entropy_coder(model_dir):
    """A tiny seeded context model beside the tiny image models, so decoders find it by id.

    Its weights are drawn wide so its probabilities are far from 1/2, as a trained model's are.
    """
    from rnncodec.entropy import arithmetic_coder
    from rnncodec.entropy.context_model import ContextConfig, ContextModel

    torch.manual_seed(1)
    net = ContextModel(ContextConfig(iterations=6, masked=8, state=8, row=8, head=16))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.5)
    save_weights(model_dir / "tiny-entropy.safetensors", "entropy", net.cfg.to_json(), net.state_dict())
    return arithmetic_coder(model_dir / "tiny-entropy.safetensors")


def rowwise_probabilities(model, bits: torch.Tensor) -> torch.Tensor:
    """What a TileContext computes, row by row, for 1×T×C×h×w ±1 bits (T×C×h×w)."""
    from rnncodec.entropy.context_model import TileContext

    ctx = TileContext(model, tuple(bits.shape[2:]))
    out = []
    for t in range(bits.shape[1]):
        rows = []
        known = (bits[0, t] > 0).to(torch.uint8).numpy()
        ctx.iteration(lambda y, p: (rows.append(p), known[:, y])[1])
        out.append(torch.stack(rows, 1))
    return torch.stack(out)
