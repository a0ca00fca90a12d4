"""The image model behind one small interface, so that one tile loop (codec.py) drives any runtime.

    state = backend.begin(x)                          x: 1×3×H×W float32 in [−0.5, 0.5], sides of 16k
    bits, state = backend.step(state, mask, decode)   bits: C×H/16×W/16 uint8 0/1; mask: H/16×W/16 bool
    x̂ = backend.reconstruction(state)                 1×3×H×W float32, after the last step that decoded

`mask` (None for all) gives the blocks that get bits this iteration: a stopped block's bits are 0
and its reconstruction stays. Without `decode`, the step skips the decoder: the bits only, for a
last iteration whose x̂ nobody looks at.

A backend's encoder rounds floats its own way, so two backends may write other bits for one
image; what a file decodes to does not depend on which wrote it. Backends: `TorchBackend` (the
`RNNCodec` module, in fp32 or bf16) and onnx_codec's `OnnxImageModel` (its exported graphs in
ONNX Runtime, fp32, without torch).
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from .config import ModelConfig
from .errors import ModelError, OptionError
from .zoo import ImageModel

ENGINES = ("torch", "onnx")


class Backend(Protocol):
    model_id: bytes
    cfg: ModelConfig
    precision: str  # the arithmetic its encoder computes in, as the header records it

    def begin(self, x: np.ndarray) -> object: ...

    def step(self, state: object, mask: np.ndarray | None, decode: bool) -> tuple[np.ndarray, object]: ...

    def reconstruction(self, state: object) -> np.ndarray: ...


def as_backend(model: ImageModel | Backend, precision: str) -> Backend:
    """A loaded model as a backend: a torch model in `precision`; a backend as it is."""
    if not isinstance(model, ImageModel):
        if precision == "bf16":
            raise OptionError("the onnx engine computes in fp32")
        return model
    from .models.rnn_codec import TorchBackend
    from .precision import resolve

    return TorchBackend(model.net, model.model_id, resolve(precision))


def load_backend(engine: str, path: str | None, precision: str) -> Backend:
    """The image model in `path` (default: the packaged one) in `engine`'s runtime. Torch loads
    only for the torch engine."""
    if engine == "torch":
        from .zoo import load_image_model

        return as_backend(load_image_model(path), precision)
    if engine != "onnx":
        raise OptionError(f"engine is one of {', '.join(ENGINES)}")
    from . import onnx_codec

    model = onnx_codec.load(path)
    if model is None:
        raise ModelError("this image model has no exported graphs (rnncodec export-onnx)")
    return as_backend(model, precision)
