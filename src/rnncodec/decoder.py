"""Decoding: container → payload coder → bits → the image model's decoder → tiles → image.

Every tile's bits are entropy-decoded on the CPU as the model asks for them, iteration by
iteration, and the tiles blend into the image row by row (tiles.Canvas)."""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import Image
from tqdm import tqdm

from . import container
from .config import STRIDE
from .entropy import BitCoder, CoderSession, explain_failure
from .errors import FormatError, Note
from .image import DEFAULT_MAX_PIXELS, resized
from .precision import resolve_device, resolve_for
from .tiles import Canvas, TileBox, plan_tiles, release_memory
from .zoo import ImageModel, coder_by_id, image_model_by_id, on_device


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
    model_lookup: Callable[[bytes], ImageModel] = image_model_by_id,
    coder_lookup: Callable[[int, bytes], BitCoder] = coder_by_id,
    progress: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    precision: str = "auto",
    device: str = "cpu",
) -> Decoded:
    """Decode the first `iterations` chunks (default: all the file holds) of an .rnc stream (bytes,
    or a binary file, read no further than the stream's header and chunks announce and checked
    as it is read: `container.read`); `precision` as encode's,
    on the CPU (`auto` follows the encoder's, recorded in the header, where it can); `device`
    (cuda, cuda:N) runs the image model on a GPU instead, in fp32.

    The lookups turn the header's ids into the image model (by model id) and the payload coder (by
    coder id and entropy model id); by default zoo's, which find the weights by id."""
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
    dev = resolve_device(device)
    model = on_device(model_lookup(header.model_id), dev)
    if header.iterations > model.cfg.iterations:
        raise FormatError(f"the file claims {header.iterations} iterations; its model has at most {model.cfg.iterations}")
    coder = coder_lookup(header.coder_id, header.entropy_id)
    boxes = plan_tiles(header.height, header.width, header.tile, header.overlap)
    payloads = [container.split_segments(chunks[t][0], len(boxes)) for t in range(n_iter)]
    try:
        canvas = _decode_tiles(model, coder, header, boxes, payloads, [crc for _, crc in chunks[:n_iter]], progress,
                               resolve_for(precision, header.precision) == "bf16" and dev.type == "cpu")
    except FormatError as exc:
        raise explain_failure(header.coder_id, exc) from None
    pixels = canvas.result()
    if header.display:  # coded at reduced size: shown at the original's
        pixels = resized(pixels, width, height)
    return Decoded(pixels, n_iter, header.icc_profile, alpha)


def _decode_tiles(model: ImageModel, coder: BitCoder, header: container.Header, boxes: list[TileBox],
                  payloads: list[list[bytes]], chunk_crcs: list[int], progress: bool, bf16: bool) -> Canvas:
    """Entropy-decode (on the CPU) and reconstruct (on the model's device) every tile, then check
    each chunk's bits CRC. On a GPU, cuDNN runs without TF32 and deterministically: TF32's 10-bit
    mantissas would move the pixels far more than the CPU's kernels do."""
    import torch

    n_iter = len(payloads)
    dev = next(model.net.parameters()).device
    crcs = [container.bits_crc(t) for t in range(n_iter)]
    canvas = Canvas(header.height, header.width, header.overlap)
    bits_shape = (model.cfg.bits,)
    grids = [tuple(-(-s // STRIDE) for s in box.shape) for box in boxes]
    counts = container.block_counts(header, grids)
    gpu = (torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False)
           if dev.type == "cuda" else contextlib.nullcontext())
    with torch.inference_mode(), gpu:
        bar = tqdm(total=len(boxes) * n_iter, desc="decoding", unit="iteration", disable=not progress, delay=1.0)
        for i, box in enumerate(boxes):
            session = coder.session(bits_shape + grids[i])
            c = None if counts is None else counts[i]
            active = None if c is None else lambda t, c=c: torch.from_numpy(c > t)[None, None].to(dev, torch.float32)

            def tile_bits(session: CoderSession, i: int, c: np.ndarray | None, active: Callable | None) -> Iterator[torch.Tensor]:
                """This tile's bits, iteration by iteration, entropy-decoded as the model asks for them;
                a stopped block's bits are 0."""
                for t in range(n_iter):
                    b = session.decode(payloads[t][i], None if c is None else c > t)
                    crcs[t] = container.bits_crc_update(b, crcs[t])
                    bits = torch.from_numpy(b)[None].to(dev).float() * 2 - 1
                    yield bits if active is None else bits * active(t)

            for recon in model.net.decode(tile_bits(session, i, c, active), bf16, active):  # noqa: B007  (the last is the tile's)
                bar.update(1)
            canvas.add(box, recon[0].permute(1, 2, 0).cpu().numpy()[: box.shape[0], : box.shape[1]])
            if i + 1 < len(boxes) and boxes[i + 1].y0 != box.y0:  # a row of tiles is done above the next
                canvas.finish(boxes[i + 1].y0)
            if i + 1 < len(boxes):  # as encode does: the next tile's activations land in the freed pages
                release_memory()
        bar.close()
    for t in range(n_iter):
        if crcs[t] != chunk_crcs[t]:
            raise FormatError(f"chunk {t + 1} CRC mismatch: the file is corrupt or was coded with another model")
    return canvas


def decompress(data: bytes, iterations: int | None = None) -> Image.Image:
    """Decode .rnc bytes to a PIL image (RGB, or RGBA if the file holds an alpha plane);
    `iterations` decodes a prefix at lower quality."""
    return decode(data, iterations).to_pil()
