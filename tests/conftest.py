"""Shared fixtures: a tiny seeded model saved as real weights, and small synthetic images."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rnncodec.config import preset
from rnncodec.models import RNNCodec
from rnncodec.models.store import ImageModel, _reset_caches, load_image_model
from rnncodec.testing import smooth_image  # noqa: F401  (the tests import it from here)
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
