"""The image model behind one small interface, so that one tile loop (codec.py) drives any runtime.

    state = backend.begin(x)                          x: 1×3×H×W float32 in [−0.5, 0.5], sides of 16k
    bits, state = backend.step(state, decode)         bits: C×H/16×W/16 uint8 0/1, every block's
    x̂ = backend.reconstruction(state)                 1×3×H×W float32, after the last step that decoded
    state = backend.decode_step(state, bits, mask)     decoding: state None at first; bits float32 ±1, 0 if stopped

Without `decode`, the step skips the decoder: the bits only, for a last iteration whose x̂ nobody
looks at. In decoding, `mask` (None for all) gives the blocks that have bits this iteration: a
stopped block's bits are 0 and its reconstruction stays. A step leaves the state it was given as
it was, so a state can be kept and gone on from; an encoder's, after a step that decoded, is one
that `decode_step` goes on from, as from a decoder's after the same bits.

A backend rounds floats its own way, so two backends may write other bits for one image, and
decode one file to pixels that differ by rounding; the bits a file holds decode exactly with
either. Engines: "onnx", the default, onnx_codec's `OnnxImageModel` (the exported graphs in ONNX
Runtime, fp32, without torch), and "torch", `TorchBackend` (the `RNNCodec` module, in fp32 or
bf16, on the CPU or decoding on a GPU; the `[torch]` extra). The default never depends on what is
installed: torch loads only where the torch engine is named.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

from .config import STRIDE, ModelConfig
from .errors import ModelError, OptionError
from .zoo import ImageModel

if TYPE_CHECKING:
    from .entropy import BitCoder
    from .tiles import TileBox

ENGINES = ("onnx", "torch")
DEFAULT_ENGINE = "onnx"


class Backend(Protocol):
    model_id: bytes
    cfg: ModelConfig
    precision: str  # its engine and arithmetic, as the header records it (container.PRECISION_BYTES)

    def begin(self, x: np.ndarray) -> object: ...

    def step(self, state: object, decode: bool) -> tuple[np.ndarray, object]: ...

    def reconstruction(self, state: object) -> np.ndarray: ...

    def decode_step(self, state: object | None, bits: np.ndarray, mask: np.ndarray | None) -> object: ...


class TileEncoder:
    """One tile's encoding, an iteration at a time: the model's state, the payload coder's session,
    and the segments and bits coded so far (decoder.py's tile decoder, forward). Without a coder,
    the bits only, each segment empty: for an encoder that codes them later, masked."""

    def __init__(self, backend: Backend, coder: BitCoder | None, x: np.ndarray) -> None:
        self.backend, self.state, self.coded = backend, backend.begin(x), []
        self.session = coder and coder.session((backend.cfg.bits, x.shape[2] // STRIDE, x.shape[3] // STRIDE))

    def step(self, decode: bool) -> tuple[bytes, np.ndarray]:
        """The next iteration's segment and bits; `decode` as `Backend.step`'s."""
        bits, self.state = self.backend.step(self.state, decode)
        self.coded.append((self.session.encode(bits) if self.session else b"", bits))
        return self.coded[-1]

    def pixels(self, box: TileBox) -> np.ndarray:
        return tile_pixels(self.backend, self.state, box)


def tile_pixels(backend: Backend, state: object, box: TileBox) -> np.ndarray:
    """A tile's reconstruction in `state`, H×W×3 float32 in [−0.5, 0.5], without its padding."""
    return backend.reconstruction(state)[0].transpose(1, 2, 0)[: box.shape[0], : box.shape[1]]


def decode_bits(backend: Backend, state: object | None, bits: np.ndarray, mask: np.ndarray | None) -> object:
    """`decode_step` on a tile's uint8 0/1 bits, a stopped block's (outside `mask`) as 0: as a decoder
    takes a file's bits, and an encoder checking what its file decodes to (`decode_counts`)."""
    signs = bits.astype(np.float32) * 2 - 1
    return backend.decode_step(state, signs if mask is None else signs * mask, mask)


def decode_counts(backend: Backend, states: dict[int, object], bits: list[np.ndarray], counts: np.ndarray) -> object:
    """The state a decoder reaches on a tile's bits of each iteration where each block gets `counts` of them, from
    the latest of `states` (after j iterations of every block) that the counts pass through, else from the start."""
    start = max((j for j in states if j <= counts.min()), default=0)
    state = states.get(start)
    for t in range(start, int(counts.max())):
        state = decode_bits(backend, state, bits[t], counts > t)
    return state


def import_torch(what: str = "the torch engine"):
    """torch, or a one-line error naming the extra that installs it."""
    try:
        import torch
    except ImportError:
        raise OptionError(f"{what} needs PyTorch: pip install 'rnncodec[torch]'") from None
    return torch


def as_backend(model: ImageModel | Backend, precision: str) -> Backend:
    """A loaded model as a backend: a torch model in `precision`; a backend as it is."""
    if not isinstance(model, ImageModel):
        if precision == "bf16" and model.precision != "bf16":
            raise OptionError("the onnx engine computes in fp32 (bf16 takes --engine torch)")
        return model
    from .models.rnn_codec import TorchBackend
    from .precision import resolve

    return TorchBackend(model.net, model.model_id, resolve(precision))


def load_backend(engine: str, path: str | None, precision: str) -> Backend:
    """The image model in `path` (default: the packaged one) in `engine`'s runtime. Torch loads
    only for the torch engine."""
    return _load(engine, precision, lambda zoo: zoo.load_image_model(path), lambda onnx: onnx.load(path))


def backend_by_id(engine: str, model_id: bytes, precision: str) -> Backend:
    """The image model a file names, found by id, in `engine`'s runtime."""
    return _load(engine, precision, lambda zoo: zoo.image_model_by_id(model_id), lambda onnx: onnx.by_id(model_id))


def _load(engine: str, precision: str, torch_model, onnx_model) -> Backend:
    if engine == "torch":
        import_torch()
        from . import zoo

        return as_backend(torch_model(zoo), precision)
    if engine != "onnx":
        raise OptionError(f"engine is one of {', '.join(ENGINES)}")
    from . import onnx_codec

    model = onnx_model(onnx_codec)
    if model is None:
        raise ModelError("this image model has no exported graphs: export them (rnncodec export-onnx) or use --engine torch")
    return as_backend(model, precision)
