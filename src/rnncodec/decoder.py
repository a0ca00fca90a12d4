"""Decoding: container → payload coder → bits → the image model's decoder → tiles → image.

Every tile's bits are entropy-decoded on the CPU, iteration by iteration, and fed to a model
backend's decoding step (backend.py); the tiles blend into the image row by row (tiles.Canvas)."""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import Image
from tqdm import tqdm

from . import container
from .backend import DEFAULT_ENGINE, Backend, as_backend, backend_by_id
from .config import STRIDE
from .entropy import BitCoder, explain_failure
from .errors import FormatError, Note, OptionError
from .image import DEFAULT_MAX_PIXELS, resized
from .tiles import Canvas, TileBox, plan_tiles, release_memory
from .zoo import ImageModel, coder_by_id


@dataclass
class Decoded:
    pixels: np.ndarray  # H×W×3 uint8
    iterations: int
    icc_profile: bytes | None
    alpha: np.ndarray | None = None  # H×W uint8, lossless; None for an opaque image

    def to_pil(self) -> Image.Image:
        """RGB, or RGBA when the file holds an alpha plane, with the ICC profile in `info`."""
        if self.alpha is None:
            im = Image.fromarray(self.pixels, "RGB")
        else:
            im = Image.fromarray(np.dstack([self.pixels, self.alpha]), "RGBA")
        if self.icc_profile:
            im.info["icc_profile"] = self.icc_profile
        return im


def decode(
    data: bytes | BinaryIO,
    iterations: int | None = None,
    model_lookup: Callable[[bytes], ImageModel | Backend] | None = None,
    coder_lookup: Callable[[int, bytes], BitCoder] = coder_by_id,
    progress: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    precision: str = "auto",
    device: str = "cpu",
    engine: str = DEFAULT_ENGINE,
) -> Decoded:
    """Decode the first `iterations` chunks (default: all the file holds) of an .rnc stream (bytes,
    or a binary file, read no further than the stream's header and chunks announce and checked
    as it is read: `container.read`) with the image model in `engine`'s runtime (backend.py). The
    torch engine computes in `precision` as encode's (`auto` follows the encoder's, recorded in the
    header, where the CPU can), and with `device` (cuda, cuda:N) on a GPU, in fp32; the onnx engine
    in fp32 on the CPU.

    The lookups turn the header's ids into the image model (by model id: a torch model or a
    backend) and the payload coder (by coder id and entropy model id); by default zoo's, which
    find the weights by id."""
    header, chunks = container.read(data, max_pixels)  # a header over the cap: refused before its chunks are read
    width, height = header.display_size  # at least the coded size
    if not chunks:
        raise FormatError("the file holds no iterations")
    if iterations is not None and not 1 <= iterations:
        raise ValueError("iterations must be at least 1")
    n_iter = len(chunks) if iterations is None else min(iterations, len(chunks))
    if n_iter < (iterations or 0):
        warnings.warn(f"{iterations} iterations asked for, the file holds {n_iter}: decoded {n_iter}", Note, stacklevel=2)
    alpha = container.alpha_plane(header)
    backend = _backend(header, model_lookup, precision, device, engine)
    if header.iterations > backend.cfg.iterations:
        raise FormatError(f"the file claims {header.iterations} iterations; its model has at most {backend.cfg.iterations}")
    coder = coder_lookup(header.coder_id, header.entropy_id)
    boxes = plan_tiles(header.height, header.width, header.tile, header.overlap)
    payloads = [container.split_segments(chunks[t][0], len(boxes)) for t in range(n_iter)]
    try:
        canvas = _decode_tiles(backend, coder, header, boxes, payloads, [crc for _, crc in chunks[:n_iter]], progress)
    except FormatError as exc:
        raise explain_failure(header.coder_id, exc) from None
    pixels = canvas.result()
    if header.display:  # coded at reduced size: shown at the original's
        pixels = resized(pixels, width, height)
    return Decoded(pixels, n_iter, header.icc_profile, alpha)


def _backend(header: container.Header, model_lookup: Callable[[bytes], ImageModel | Backend] | None, precision: str,
             device: str, engine: str) -> Backend:
    """The backend that decodes this file: torch's in the precision and on the device asked for,
    or ONNX Runtime's on the CPU."""
    if engine != "torch":
        if device != "cpu":
            raise OptionError("decoding on a GPU takes the torch engine")
        model = backend_by_id(engine, header.model_id, precision) if model_lookup is None else model_lookup(header.model_id)
        return as_backend(model, "fp32" if precision == "auto" else precision)
    from .backend import import_torch

    import_torch()
    from .precision import resolve_device, resolve_for
    from .zoo import image_model_by_id, on_device

    dev = resolve_device(device)
    model = on_device((model_lookup or image_model_by_id)(header.model_id), dev)
    return as_backend(model, "fp32" if dev.type != "cpu" else resolve_for(precision, header.precision))


def _decode_tiles(backend: Backend, coder: BitCoder, header: container.Header, boxes: list[TileBox],
                  payloads: list[list[bytes]], chunk_crcs: list[int], progress: bool) -> Canvas:
    """Entropy-decode and reconstruct every tile, then check each chunk's bits CRC."""
    n_iter = len(payloads)
    crcs = [container.bits_crc(t) for t in range(n_iter)]
    canvas = Canvas(header.height, header.width, header.overlap)
    grids = [tuple(-(-s // STRIDE) for s in box.shape) for box in boxes]
    counts = container.block_counts(header, grids)
    bar = tqdm(total=len(boxes) * n_iter, desc="decoding", unit="iteration", disable=not progress, delay=1.0)
    for i, box in enumerate(boxes):
        session, state = coder.session((backend.cfg.bits, *grids[i])), None
        for t in range(n_iter):
            mask = None if counts is None else counts[i] > t
            b = session.decode(payloads[t][i], mask)
            crcs[t] = container.bits_crc_update(b, crcs[t])
            bits = b.astype(np.float32) * 2 - 1  # a stopped block's bits are 0
            state = backend.decode_step(state, bits if mask is None else bits * mask, mask)
            bar.update(1)
        canvas.add(box, backend.reconstruction(state)[0].transpose(1, 2, 0)[: box.shape[0], : box.shape[1]])
        if i + 1 < len(boxes) and boxes[i + 1].y0 != box.y0:  # a row of tiles is done above the next
            canvas.finish(boxes[i + 1].y0)
        if i + 1 < len(boxes):  # as encode does: the next tile's activations land in the freed pages
            release_memory()
    bar.close()
    for t in range(n_iter):
        if crcs[t] != chunk_crcs[t]:
            raise FormatError(f"chunk {t + 1} CRC mismatch: the file is corrupt or was coded with another model")
    return canvas


def decompress(data: bytes, iterations: int | None = None, engine: str = DEFAULT_ENGINE) -> Image.Image:
    """Decode .rnc bytes to a PIL image (RGB, or RGBA if the file holds an alpha plane);
    `iterations` decodes a prefix at lower quality."""
    return decode(data, iterations, engine=engine).to_pil()
