"""Image models on disk: the packaged default, explicit files, and lookup by the id a file names."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..config import ModelConfig
from ..errors import ModelError
from ..stored import PACKAGE_WEIGHTS, StoredWeights, build_module, find_by_id, load_weights
from .rnn_codec import RNNCodec

DEFAULT_IMAGE_WEIGHTS = PACKAGE_WEIGHTS / "default.safetensors"


@dataclass(frozen=True)
class ImageModel:
    net: RNNCodec
    model_id: bytes

    @property
    def cfg(self) -> ModelConfig:
        return self.net.cfg


def _build(stored: StoredWeights) -> ImageModel:
    return ImageModel(build_module(stored, "image", lambda config: RNNCodec(ModelConfig.from_json(config))), stored.model_id)


@lru_cache(maxsize=4)
def load_image_model(path: Path | None = None) -> ImageModel:
    """The model in `path`, or the package's default model."""
    path = Path(path) if path is not None else DEFAULT_IMAGE_WEIGHTS
    if not path.exists():
        raise ModelError(f"no model weights at {path}")
    return _build(load_weights(path))


@lru_cache(maxsize=4)
def image_model_by_id(model_id: bytes) -> ImageModel:
    return _build(find_by_id(model_id, "image"))


def _reset_caches() -> None:
    load_image_model.cache_clear()
    image_model_by_id.cache_clear()


