"""Decoding: container → payload coder → bits → the image model's decoder → tiles → image.

Every tile's bits are entropy-decoded on the CPU, iteration by iteration, and fed to a model
backend's decoding step (backend.py); the tiles blend into the image row by row (tiles.Canvas)."""
from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import Image

from . import container
from .backend import DEFAULT_ENGINE, Backend, as_backend, backend_by_id, decode_bits, tile_pixels
from .config import STRIDE
from .entropy import BitCoder, explain_failure
from .errors import FormatError, Note, OptionError, Truncated
from .image import DEFAULT_MAX_PIXELS, resized
from .tiles import Canvas, TileBox, plan_tiles, release_memory
from .tiles import progress as progress_bar
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
    strict: bool = False,
) -> Decoded:
    """Decode the first `iterations` chunks (default: all the file holds) of an .rnc stream (bytes,
    or a binary file, read no further than the stream's header and chunks announce and checked
    as it is read: `container.read`) with the image model in `engine`'s runtime (backend.py). The
    torch engine computes in `precision` as encode's (`auto` follows the encoder's, recorded in the
    header, where the CPU can), and with `device` (cuda, cuda:N) on a GPU, in fp32; the onnx engine
    in fp32 on the CPU. A stream cut inside a chunk decodes its complete iterations, with a note,
    unless `strict`.

    The lookups turn the header's ids into the image model (by model id: a torch model or a
    backend) and the payload coder (by coder id and entropy model id); by default zoo's, which
    find the weights by id."""
    header, chunks = container.read(data, max_pixels, strict)  # a header over the cap: refused before its chunks are read
    if not chunks:
        raise FormatError("the file holds no iterations")
    if iterations is not None and not 1 <= iterations:
        raise ValueError("iterations must be at least 1")
    n_iter = len(chunks) if iterations is None else min(iterations, len(chunks))
    if n_iter < (iterations or 0):
        warnings.warn(f"{iterations} iterations asked for, the file holds {n_iter}: decoded {n_iter}", Note, stacklevel=2)
    alpha = container.alpha_plane(header)
    boxes, tile_decoder = _tiles(header, model_lookup, coder_lookup, precision, device, engine)
    payloads = [container.split_segments(chunks[t][0], len(boxes)) for t in range(n_iter)]
    crcs = [container.bits_crc(t) for t in range(n_iter)]
    canvas = Canvas(header.height, header.width, header.overlap)
    bar = progress_bar(show=progress, total=len(boxes) * n_iter, desc="decoding", unit="iteration")
    with _explained(header):
        for i, box in enumerate(boxes):  # tile by tile: one tile's model state at a time
            tile = tile_decoder(i)
            for t in range(n_iter):
                crcs[t] = container.bits_crc_update(tile.step(t, payloads[t][i]), crcs[t])
                bar.update(1)
            canvas.add(box, tile.pixels(box))
            if i + 1 < len(boxes) and boxes[i + 1].y0 != box.y0:  # a row of tiles is done above the next
                canvas.finish(boxes[i + 1].y0)
            if i + 1 < len(boxes):  # as encode does: the next tile's activations land in the freed pages
                release_memory()
        bar.close()
        for t in range(n_iter):
            _check_crc(t, crcs[t], chunks[t][1])
    return _shown(header, canvas.result(), n_iter, alpha)


def decode_progressive(
    source: bytes | BinaryIO | Iterable[bytes],
    model_lookup: Callable[[bytes], ImageModel | Backend] | None = None,
    coder_lookup: Callable[[int, bytes], BitCoder] = coder_by_id,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    precision: str = "auto",
    device: str = "cpu",
    engine: str = DEFAULT_ENGINE,
    strict: bool = False,
) -> Iterator[Decoded]:
    """Decode an .rnc stream as it arrives: bytes, a binary file (a socket's, an HTTP response's),
    or an iterable of byte strings in any pieces. Yields the image after each complete iteration,
    as soon as its chunk is in and its bits are checked, so a viewer can show it sharpening. Every
    tile's model state is kept between iterations (decode keeps one tile's at a time). A stream
    cut inside a chunk ends after its complete iterations, with a note, unless `strict`; the
    options are decode's."""
    f = container.as_stream(source) if isinstance(source, bytes | bytearray | memoryview) or hasattr(source, "read") \
        else io.BufferedReader(_Pieces(source))
    header = container.read_header(f, max_pixels)
    alpha = container.alpha_plane(header)
    boxes, tile_decoder = _tiles(header, model_lookup, coder_lookup, precision, device, engine)
    tiles, done = [tile_decoder(i) for i in range(len(boxes))], 0
    try:
        with _explained(header):
            for t, (payload, crc) in enumerate(container.read_chunks(f, header)):
                canvas, check = Canvas(header.height, header.width, header.overlap), container.bits_crc(t)
                for box, tile, segment in zip(boxes, tiles, container.split_segments(payload, len(boxes))):
                    check = container.bits_crc_update(tile.step(t, segment), check)
                    canvas.add(box, tile.pixels(box))
                _check_crc(t, check, crc)
                done = t + 1
                yield _shown(header, canvas.result(), done, alpha)
    except Truncated as exc:
        if strict or not done:
            raise
        container.note_cut(exc, done)
    if not done:
        raise FormatError("the file holds no iterations")


class _Pieces(io.RawIOBase):
    """An iterable of byte strings as a raw stream, read as the pieces come."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self.pieces, self.rest = iter(pieces), b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.rest:
            piece = next(self.pieces, None)
            if piece is None:
                return 0
            self.rest = bytes(piece)
        n = min(len(buffer), len(self.rest))
        buffer[:n], self.rest = self.rest[:n], self.rest[n:]
        return n


class _TileDecoder:
    """One tile's entropy-decoding session and image-model state, one iteration at a time."""

    def __init__(self, backend: Backend, coder: BitCoder, grid: tuple[int, int], counts: np.ndarray | None) -> None:
        self.backend, self.counts = backend, counts
        self.session, self.state = coder.session((backend.cfg.bits, *grid)), None

    def step(self, t: int, segment: bytes) -> np.ndarray:
        """Decode iteration t's segment; its bits (uint8 0/1, a stopped block's 0) for the CRC."""
        mask = None if self.counts is None else self.counts > t
        b = self.session.decode(segment, mask)
        self.state = decode_bits(self.backend, self.state, b, mask)
        return b

    def pixels(self, box: TileBox) -> np.ndarray:
        return tile_pixels(self.backend, self.state, box)


def _tiles(header: container.Header, model_lookup: Callable[[bytes], ImageModel | Backend] | None,
           coder_lookup: Callable[[int, bytes], BitCoder], precision: str, device: str,
           engine: str) -> tuple[list[TileBox], Callable[[int], _TileDecoder]]:
    """The file's tiles, and a maker of each tile's decoder."""
    backend = _backend(header, model_lookup, precision, device, engine)
    if header.iterations > backend.cfg.iterations:
        raise FormatError(f"the file claims {header.iterations} iterations; its model has at most {backend.cfg.iterations}")
    coder = coder_lookup(header.coder_id, header.entropy_id)
    boxes = plan_tiles(header.height, header.width, header.tile, header.overlap)
    grids = [tuple(-(-s // STRIDE) for s in box.shape) for box in boxes]
    counts = container.block_counts(header, grids)
    return boxes, lambda i: _TileDecoder(backend, coder, grids[i], None if counts is None else counts[i])


@contextlib.contextmanager
def _explained(header: container.Header) -> Iterator[None]:
    """A payload that does not decode, explained for its coder."""
    try:
        yield
    except Truncated:
        raise
    except FormatError as exc:
        raise explain_failure(header.coder_id, exc) from None


def _check_crc(t: int, crc: int, expected: int) -> None:
    if crc != expected:
        raise FormatError(f"chunk {t + 1} CRC mismatch: the file is corrupt or was coded with another model")


def _shown(header: container.Header, pixels: np.ndarray, iterations: int, alpha: np.ndarray | None) -> Decoded:
    """The decoded image at its display size (an image coded at reduced size is upscaled)."""
    if header.display:
        pixels = resized(pixels, *header.display_size)
    return Decoded(pixels, iterations, header.icc_profile, alpha)


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


def decompress(data: bytes, iterations: int | None = None, engine: str = DEFAULT_ENGINE) -> Image.Image:
    """Decode .rnc bytes to a PIL image (RGB, or RGBA if the file holds an alpha plane);
    `iterations` decodes a prefix at lower quality."""
    return decode(data, iterations, engine=engine).to_pil()


def decompress_progressive(source: bytes | BinaryIO | Iterable[bytes], engine: str = DEFAULT_ENGINE) -> Iterator[Image.Image]:
    """PIL images of an .rnc stream as it arrives, one after each complete iteration (decode_progressive)."""
    return (decoded.to_pil() for decoded in decode_progressive(source, engine=engine))
