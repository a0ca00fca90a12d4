"""Where models come from: the package's weights and $RNNCODEC_MODEL_PATH, looked up by kind and
metadata, and the loaders of both kinds of model, the image model and the context models that
coders 1 and 2 range-code with.

An encoder names its models by file (or takes the packaged defaults); a decoder finds them by
the ids the .rnc header names. Loaders are cached: `clear_caches` forgets them all.

Importing this module does not import torch: the lookups and coder 2 run without it, and torch
loads when the image model (or coder 1's float context model) is built.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from .config import ModelConfig
from .entropy import NO_MODEL, BitCoder, ContextCoder, RawCoder, arithmetic, coder_spec, integer
from .errors import FormatError, ModelError
from .stored import StoredWeights, build_module, load_weights, read_metadata

if TYPE_CHECKING:
    import torch

    from .models.rnn_codec import RNNCodec

_LOADERS: list = []  # every cached loader, which clear_caches clears


def cached(maxsize: int):
    """A loader's cache (lru_cache) that `clear_caches` forgets, whichever module the loader is in."""
    def wrap(loader):
        _LOADERS.append(lru_cache(maxsize=maxsize)(loader))
        return _LOADERS[-1]
    return wrap


IMAGE = "image"  # the image model's weights kind (the context models': arithmetic.KIND, integer.KIND)
PACKAGE_WEIGHTS = Path(__file__).parent / "weights"
DEFAULT_WEIGHTS = {IMAGE: PACKAGE_WEIGHTS / "default.safetensors",
                   arithmetic.KIND: PACKAGE_WEIGHTS / "default-entropy.safetensors",
                   integer.KIND: PACKAGE_WEIGHTS / "default-entropy-int.safetensors"}
# the packaged image models a user can name instead of a path (`--model wide`)
NAMED_MODELS = {"default": DEFAULT_WEIGHTS[IMAGE], "wide": PACKAGE_WEIGHTS / "wide.safetensors"}
MODEL_PATH_ENV = "RNNCODEC_MODEL_PATH"  # extra folders searched for weights, os.pathsep-separated
CODER_NAMES = {"arithmetic": arithmetic.CODER_ID, "integer": integer.CODER_ID}  # the context model coders, as users name them
# Models of the unreleased 0.1.0 development builds, dropped before the first release (docs/FORMAT.md,
# "Compatibility"): the image models and their context models, by id. A file naming one gets a
# message that says where their weights still are.
DROPPED_MODELS = frozenset("""
    3419f1cfdb626ccb ae5bd7d83ad31875 2c8714206b3e8c7e  a6c0eb0b5daf2741 811441aa9ef3a3a4 e99d80e9fbf5d3b8
    ad883a38e080d596 7949e2980d03fe00 dd3708c71e187167  8922bf4848b8e303 3a07a2863f26aff7 42bef58629e7a3e1
    c8c7bbcae3cacd56 66482883fcb4cd14 da32f99fc09a97b6  0543fd59b35811da 822de336c7f064f8 1279614bea23d877
    a7cf522e9c7f5a28 23563a9a7da1c91c 0de66af40652f4b6""".split())
DROPPED_AT = "a1565c3a03d9"  # the last commit whose src/rnncodec/weights/ holds them


# -- finding weights files ----------------------------------------------------------------
def search_paths() -> list[Path]:
    """$RNNCODEC_MODEL_PATH's folders first, so that a user's weights come before the package's."""
    extra = [Path(p) for p in os.environ.get(MODEL_PATH_ENV, "").split(os.pathsep) if p]
    return extra + [PACKAGE_WEIGHTS]


def weight_files() -> list[Path]:
    return [f for d in search_paths() if d.is_dir() for f in sorted(d.glob("*.safetensors"))]


def packaged_weights() -> list[tuple[Path, dict[str, str]]]:
    """The weights shipped in the package, each with its metadata (kind, model id, …)."""
    return [(f, read_metadata(f)) for f in sorted(PACKAGE_WEIGHTS.glob("*.safetensors"))]


def find(kind: str, **metadata: str) -> Path | None:
    """The first weights file of this kind ($RNNCODEC_MODEL_PATH, then the package) whose metadata
    holds these values, e.g. `find("entropy", image_model=model_id.hex())`; None if there is none."""
    for f in weight_files():
        meta = read_metadata(f)
        if meta.get("kind") == kind and all(meta.get(k) == v for k, v in metadata.items()):
            return f
    return None


def image_model_source(model_id: bytes) -> str | None:
    """Where a file's image model would be found here: its packaged name ("wide"), else its weights
    file; None if nowhere (`info` says so before a decode would fail)."""
    path = find(IMAGE, model_id=model_id.hex())
    names = {weights: name for name, weights in NAMED_MODELS.items()}
    return None if path is None else names.get(path, str(path))


def find_by_id(model_id: bytes, kind: str) -> StoredWeights:
    """The weights whose id a file names, from the package or $RNNCODEC_MODEL_PATH, checked."""
    path = find(kind, model_id=model_id.hex())
    if path is None and model_id.hex() in DROPPED_MODELS:
        raise ModelError(f"the file was written with {kind} model {model_id.hex()} of an rnncodec 0.1.0 development "
                         f"build, which this release no longer ships: put its weights (git commit {DROPPED_AT}, "
                         f"src/rnncodec/weights/) in ${MODEL_PATH_ENV}")
    if path is None:
        raise ModelError(f"unknown {kind} model id {model_id.hex()}: no matching weights in the package or ${MODEL_PATH_ENV}")
    stored = load_weights(path)
    if stored.model_id != model_id:
        raise ModelError(f"{path} claims model id {model_id.hex()} but its tensors hash to {stored.model_id.hex()}")
    return stored


def stored_weights(kind: str, path: Path | str | None = None) -> StoredWeights:
    """The weights in `path` (an image model may be named instead: NAMED_MODELS; a file that
    exists comes first), or the package's default ones of this kind."""
    if path is None:
        path = DEFAULT_WEIGHTS[kind]
    elif kind == IMAGE and str(path) in NAMED_MODELS and not Path(path).exists():
        path = NAMED_MODELS[str(path)]
    path = Path(path)
    if not path.exists():
        raise ModelError(f"no {kind} model weights at {path}")
    return load_weights(path)


# The image model's steps as ONNX graphs (onnx_export.py writes them, onnx_codec.py runs them),
# beside its weights, weights not included: one graph per encoding step (first iteration, with
# the decoder) and per decoding step (first iteration or a later one).
GRAPH_VARIANTS = ((True, True), (True, False), (False, True), (False, False))
DECODER_VARIANTS = (True, False)


def graph_name(model_id: bytes, first: bool, decode: bool = True, decoder: bool = False) -> str:
    """A model's graph file, e.g. image-a6c0eb0b5daf2741.next-bits.onnx (an encoding step without
    the decoder) or image-a6c0eb0b5daf2741.first-decoder.onnx (a decoding step)."""
    return f"image-{model_id.hex()}.{'first' if first else 'next'}{'-decoder' if decoder else '' if decode else '-bits'}.onnx"


def graph_names(model_id: bytes) -> list[str]:
    """All of a model's graphs: its encoding steps, then its decoding steps."""
    return ([graph_name(model_id, *v) for v in GRAPH_VARIANTS]
            + [graph_name(model_id, first, decoder=True) for first in DECODER_VARIANTS])


def find_graphs(model_id: bytes) -> Path | None:
    """The first folder ($RNNCODEC_MODEL_PATH's, then the package's) holding all of a model's
    graphs; None if there is none."""
    for folder in search_paths():
        if all((folder / name).is_file() for name in graph_names(model_id)):
            return folder
    return None


# -- the image model ----------------------------------------------------------------------
@dataclass(frozen=True)
class ImageModel:
    """The image model, with the id its weights hash to (what a file names)."""

    net: RNNCodec
    model_id: bytes

    @property
    def cfg(self) -> ModelConfig:
        return self.net.cfg


def _image_model(stored: StoredWeights) -> ImageModel:
    """Its weights channels-last: oneDNN's convolutions then keep activations in NHWC, with no
    layout conversions around each one (docs/RESULTS.md, "Speed and memory": channels-last weights)."""
    import torch

    from .models.rnn_codec import RNNCodec

    net = build_module(stored, IMAGE, lambda config: RNNCodec(ModelConfig.from_json(config)))
    return ImageModel(net.to(memory_format=torch.channels_last), stored.model_id)


@cached(4)
def load_image_model(path: Path | str | None = None) -> ImageModel:
    """The model in `path` (or named: NAMED_MODELS), or the package's default model."""
    return _image_model(stored_weights(IMAGE, path))


@cached(4)
def image_model_by_id(model_id: bytes) -> ImageModel:
    """The model a file names, found by id."""
    return _image_model(find_by_id(model_id, IMAGE))


def image_model_id(model: ImageModel | bytes | None = None) -> bytes:
    """The id of an image model, given as itself or its id; None is the packaged default, whose id
    is read from its metadata, without loading it (or torch)."""
    if model is None:
        return bytes.fromhex(read_metadata(DEFAULT_WEIGHTS[IMAGE])["model_id"])
    return model if isinstance(model, bytes) else model.model_id


@cached(2)
def on_device(model: ImageModel, device: torch.device) -> ImageModel:
    """The model on another device (a copy, so that the CPU's stays for other callers)."""
    if device.type == "cpu":
        return model
    return ImageModel(copy.deepcopy(model.net).to(device), model.model_id)


# -- the payload coders and their context models ------------------------------------------
@cached(8)
def _context_coder(coder_id: int, path: Path | None) -> ContextCoder:
    spec = coder_spec(coder_id)
    return spec.build(stored_weights(spec.kind, path))


def arithmetic_coder(path: Path | None = None) -> ContextCoder:
    """Coder 1 with the float context model in `path` (default: the packaged one)."""
    return _context_coder(arithmetic.CODER_ID, path)


def integer_coder(path: Path | None = None) -> ContextCoder:
    """Coder 2 with the integer context model in `path` (default: the packaged one)."""
    return _context_coder(integer.CODER_ID, path)


@cached(8)
def coder_by_id(coder_id: int, entropy_id: bytes) -> BitCoder:
    """The coder a header names, with the context model its entropy model id names (found by id)."""
    spec = coder_spec(coder_id)
    if spec.kind is None:
        if entropy_id != NO_MODEL:
            raise FormatError(f"coder {coder_id} has no entropy model, but the file names one")
        return spec.build()
    return spec.build(find_by_id(entropy_id, spec.kind))


def default_coder(model: ImageModel | bytes | None = None) -> BitCoder:
    """Arithmetic coding with a context model fitted to this image model (or id; default: the
    packaged one): the integer one (coder 2, portable) if there is one, else the float one (coder
    1); raw bits when there is none, since a mismatched context model can cost more than raw."""
    model_id = image_model_id(model).hex()
    for coder_id in (integer.CODER_ID, arithmetic.CODER_ID):
        if path := find(coder_spec(coder_id).kind, image_model=model_id):
            return _context_coder(coder_id, path)
    return RawCoder()


def make_coder(name: str | None, model: ImageModel | bytes) -> BitCoder:
    """The coder a user names ("raw", "arithmetic", "integer"), or the default one for this image
    model (or id). A named context model coder takes the weights fitted to the model, else the
    packaged."""
    if name is None:
        return default_coder(model)
    if name == "raw":
        return RawCoder()
    coder_id = CODER_NAMES[name]
    return _context_coder(coder_id, find(coder_spec(coder_id).kind, image_model=image_model_id(model).hex()))


def clear_caches() -> None:
    """Forget every loaded model and coder (the weights on disk or $RNNCODEC_MODEL_PATH changed)."""
    for loader in _LOADERS:
        loader.cache_clear()
