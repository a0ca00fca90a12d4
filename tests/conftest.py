"""Shared fixtures: a tiny seeded model saved as real weights, and small synthetic images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rnncodec.stored import save_weights
from rnncodec.testing import (  # noqa: F401  (the tests import them from here)
    save_tiny_image_model,
    save_tiny_integer_model,
    smooth_image,
    tiny_context_model,
)
from rnncodec.zoo import MODEL_PATH_ENV, ImageModel, clear_caches, load_image_model


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A folder holding tiny seeded image models (saved and loaded as real weights files), with
    their graphs for the onnx engine, the default."""
    from rnncodec.onnx_export import export_graphs

    d = tmp_path_factory.mktemp("models")
    save_tiny_image_model(d / "tiny.safetensors")
    export_graphs(load_image_model(d / "tiny.safetensors"), d)
    return d


@pytest.fixture(autouse=True)
def _model_path(model_dir, monkeypatch):
    """Let decoders find the test models by id, as they find packaged ones."""
    monkeypatch.setenv(MODEL_PATH_ENV, str(model_dir))
    clear_caches()
    yield
    clear_caches()


@pytest.fixture
def tiny_model(model_dir) -> ImageModel:
    return load_image_model(model_dir / "tiny.safetensors")


@pytest.fixture(scope="session")
def entropy_coder(model_dir):
    """A tiny seeded context model beside the tiny image models, so decoders find it by id."""
    from rnncodec.zoo import arithmetic_coder

    net = tiny_context_model(1, iterations=6, masked=8, state=8, row=8, head=16)
    save_weights(model_dir / "tiny-entropy.safetensors", "entropy", net.cfg.to_json(), net.state_dict())
    return arithmetic_coder(model_dir / "tiny-entropy.safetensors")


@pytest.fixture(scope="session")
def integer_coder(model_dir, entropy_coder):
    """Coder 2 with the tiny context model above, quantised; found by id like the others."""
    from rnncodec.zoo import integer_coder

    save_tiny_integer_model(entropy_coder.model, model_dir / "tiny-entropy-int.safetensors")
    return integer_coder(model_dir / "tiny-entropy-int.safetensors")


def block_grids(header) -> list[tuple[int, int]]:
    """Each tile's grid of 16×16 blocks, in the order the header's block counts are stored."""
    from rnncodec.models.rnn_codec import STRIDE
    from rnncodec.tiles import plan_tiles

    return [tuple(-(-s // STRIDE) for s in box.shape)
            for box in plan_tiles(header.height, header.width, header.tile, header.overlap)]


def entropy_bits(data: bytes) -> np.ndarray:
    """Every tile's bits of every chunk of an .rnc file, as its payload coder decodes them (no
    image model runs), concatenated."""
    from rnncodec import container
    from rnncodec.zoo import coder_by_id, image_model_by_id

    header, chunks = container.read(data)
    coder = coder_by_id(header.coder_id, header.entropy_id)
    bits = image_model_by_id(header.model_id).cfg.bits
    grids = block_grids(header)
    counts = container.block_counts(header, grids)
    payloads = [container.split_segments(p, len(grids)) for p, _ in chunks]
    out = []
    for i, grid in enumerate(grids):
        session = coder.session((bits, *grid))
        out += [session.decode(p[i], None if counts is None else counts[i] > t).reshape(-1) for t, p in enumerate(payloads)]
    return np.concatenate(out)


def rowwise_probabilities(model, bits: np.ndarray, active: np.ndarray | None = None) -> np.ndarray:
    """The P(1) a TileContext computes, row by row, for T×C×h×w ±1 bits (T×C×h×w); with `active`
    (T×h×w bool), only the active positions are coded, and the others' P(1) is left 0."""
    from rnncodec.entropy.context import TileContext

    ctx = TileContext(model, bits.shape[1:])
    out = np.zeros(bits.shape)
    for t in range(len(bits)):
        mask = np.ones(bits.shape[2:], bool) if active is None else active[t]

        def code_row(y: int, p: np.ndarray, t: int = t, mask: np.ndarray = mask) -> np.ndarray:
            out[t][:, y][:, mask[y]] = p
            return (bits[t][:, y][:, mask[y]] > 0).astype(np.uint8)

        ctx.iteration(code_row, None if active is None else mask)
    return out
