"""The pipeline: image → tiles → pad → encoder → binarizer → bits → payload coder → container, and back."""
from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from . import container
from .entropy import BitCoder, CoderSession, RawCoder, arithmetic_coder, explain_failure, get_coder, integer_coder
from .entropy.arithmetic import entropy_weights_for
from .entropy.integer_model import KIND as INTEGER_KIND
from .errors import FormatError, Note
from .image import DEFAULT_MAX_PIXELS, RGBImage, from_pil, pad_to_multiple, read_image
from .models.rnn_codec import STRIDE
from .models.store import ImageModel, image_model_by_id, load_image_model
from .tiles import Canvas, TileBox, plan_tiles

DEFAULT_TILE = 1024  # Kodak-sized images (768×512) code as one tile, with no overlap overhead
DEFAULT_OVERLAP = 16


@dataclass
class Encoded:
    data: bytes
    iterations: int
    reconstruction: np.ndarray | None  # H×W×3 uint8 a decoder of `data` must produce (if asked for)


def default_coder(model: ImageModel | None = None) -> BitCoder:
    """Arithmetic coding with a context model fitted to this image model (default: the packaged
    one): the integer one (coder 2, portable) if there is one, else the float one (coder 1);
    raw bits when there is none, since a mismatched context model can cost more than raw."""
    model_id = (model or load_image_model()).model_id
    if path := entropy_weights_for(model_id, INTEGER_KIND):
        return integer_coder(path)
    path = entropy_weights_for(model_id)
    return arithmetic_coder(path) if path else RawCoder()


def make_coder(name: str | None, model: ImageModel) -> BitCoder:
    """The coder a user names ("raw", "arithmetic", "integer"), or the default one for this image
    model. A named context model coder takes the weights fitted to the model, else the packaged."""
    if name is None:
        return default_coder(model)
    if name == "raw":
        return RawCoder()
    if name == "integer":
        return integer_coder(entropy_weights_for(model.model_id, INTEGER_KIND))
    return arithmetic_coder(entropy_weights_for(model.model_id))


def _to_uint8(recon: np.ndarray) -> np.ndarray:
    """[−0.5, 0.5] floats to 8-bit codes, in place: at 6000×4000 every float temporary is 288 MB."""
    recon += 0.5
    recon *= 255.0
    np.round(recon, out=recon)
    np.clip(recon, 0, 255, out=recon)
    return recon.astype(np.uint8)


def _as_rgb(image: RGBImage | Image.Image | np.ndarray | str | Path, alpha: str = "keep",
            background: str | tuple[int, ...] = "white") -> RGBImage:
    if isinstance(image, RGBImage):
        return image
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
            raise ValueError("arrays must be H×W×3 (RGB) or H×W×4 (RGBA) uint8")
        image = Image.fromarray(image)
    if isinstance(image, Image.Image):
        return from_pil(image, alpha, background)
    return read_image(image, alpha=alpha, background=background)


def _tile_bits(model: ImageModel, pixels: np.ndarray, box: TileBox,
               iterations: int) -> tuple[list[np.ndarray], list[torch.Tensor]]:
    """Run the encoder on one tile: per-iteration bits (C×h×w uint8) and reconstructions."""
    crop = pad_to_multiple(pixels[box.y0 : box.y1, box.x0 : box.x1], STRIDE)
    x = torch.from_numpy(crop.copy()).permute(2, 0, 1)[None].float() / 255.0 - 0.5
    bits, recons = model.net(x, iterations)
    return [(b[0] > 0).to(torch.uint8).numpy() for b in bits], recons


def encode(
    image: RGBImage | Image.Image | np.ndarray | str | Path,
    iterations: int | None = None,
    bpp: float | None = None,
    model: ImageModel | None = None,
    coder: BitCoder | None = None,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    progress: bool = False,
    reconstruct: bool = False,
) -> Encoded:
    """Encode an image; with `bpp`, keep the longest prefix whose real file size fits that rate.

    With `reconstruct`, also return the encoder's own reconstruction; that keeps a full-size
    canvas per iteration, so it is off for plain compression, whose memory stays per tile.
    """
    if iterations is not None and bpp is not None:
        raise ValueError("give iterations or bpp, not both")
    rgb = _as_rgb(image)
    model = model or load_image_model()
    coder = coder or default_coder(model)
    max_iter = model.cfg.iterations
    n_iter = max_iter if iterations is None else iterations
    if not 1 <= n_iter <= max_iter:
        raise ValueError(f"iterations must be between 1 and {max_iter} for this model")
    if tile % STRIDE or tile <= 0 or overlap % STRIDE or overlap >= tile:
        raise ValueError(f"tile must be a positive multiple of {STRIDE} and overlap a smaller multiple of {STRIDE}")
    h, w = rgb.pixels.shape[:2]
    boxes = plan_tiles(h, w, tile, overlap)
    segments: list[list[bytes]] = [[] for _ in range(n_iter)]
    crcs = [container.bits_crc(t) for t in range(n_iter)]
    canvases = [Canvas(h, w, overlap) for _ in range(n_iter)] if reconstruct else []
    with torch.inference_mode():
        for box in tqdm(boxes, desc="encoding", unit="tile", disable=not progress, delay=1.0):
            bits, recons = _tile_bits(model, rgb.pixels, box, n_iter)
            session = coder.session(bits[0].shape)
            for t in range(n_iter):
                segments[t].append(session.encode(bits[t]))
                crcs[t] = container.bits_crc_update(bits[t], crcs[t])
                if reconstruct:
                    canvases[t].add(box, recons[t][0].permute(1, 2, 0).numpy()[: box.shape[0], : box.shape[1]])
    chunks = [(container.join_segments(segments[t]), crcs[t]) for t in range(n_iter)]
    header = container.Header(coder.coder_id, model.model_id, coder.model_id, w, h, tile, overlap, n_iter, rgb.icc_profile,
                              None if rgb.alpha is None else container.pack_alpha(rgb.alpha))
    keep = n_iter
    if bpp is not None:
        keep = max(1, int(np.searchsorted(container.prefix_sizes(header, chunks), bpp * w * h / 8, side="right")))
    data = container.truncate(header, chunks, keep)
    return Encoded(data, keep, _to_uint8(canvases[keep - 1].result()) if reconstruct else None)


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
    data: bytes,
    iterations: int | None = None,
    model_lookup: Callable[[bytes], ImageModel] = image_model_by_id,
    progress: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Decoded:
    """Decode the first `iterations` chunks (default: all the file holds)."""
    header, chunks = container.read(data)
    if header.width * header.height > max_pixels:
        raise FormatError(f"the file claims {header.width}×{header.height} pixels, over the cap of {max_pixels}")
    if not chunks:
        raise FormatError("the file holds no iterations")
    if iterations is not None and not 1 <= iterations:
        raise ValueError("iterations must be at least 1")
    n_iter = len(chunks) if iterations is None else min(iterations, len(chunks))
    if n_iter < (iterations or 0):
        warnings.warn(f"{iterations} iterations asked for, the file holds {n_iter}: decoded {n_iter}", Note, stacklevel=2)
    alpha = container.alpha_plane(header)
    model = model_lookup(header.model_id)
    if header.iterations > model.cfg.iterations:
        raise FormatError(f"the file claims {header.iterations} iterations; its model has at most {model.cfg.iterations}")
    coder = get_coder(header.coder_id, header.entropy_id)
    boxes = plan_tiles(header.height, header.width, header.tile, header.overlap)
    payloads = [container.split_segments(chunks[t][0], len(boxes)) for t in range(n_iter)]
    try:
        canvas = _decode_tiles(model, coder, header, boxes, payloads, [crc for _, crc in chunks[:n_iter]], progress)
    except FormatError as exc:
        raise explain_failure(header.coder_id, exc) from None
    return Decoded(_to_uint8(canvas.result()), n_iter, header.icc_profile, alpha)


def _decode_tiles(model: ImageModel, coder: BitCoder, header: container.Header, boxes: list[TileBox],
                  payloads: list[list[bytes]], chunk_crcs: list[int], progress: bool) -> Canvas:
    """Entropy-decode and reconstruct every tile, then check each chunk's bits CRC."""
    n_iter = len(payloads)
    crcs = [container.bits_crc(t) for t in range(n_iter)]
    canvas = Canvas(header.height, header.width, header.overlap)
    bits_shape = (model.cfg.bits,)
    with torch.inference_mode():
        bar = tqdm(total=len(boxes) * n_iter, desc="decoding", unit="iteration", disable=not progress, delay=1.0)
        for i, box in enumerate(boxes):
            ph, pw = (-(-s // STRIDE) for s in box.shape)
            session = coder.session(bits_shape + (ph, pw))

            def tile_bits(session: CoderSession, i: int) -> Iterator[torch.Tensor]:
                """This tile's bits, iteration by iteration, entropy-decoded as the model asks for them."""
                for t in range(n_iter):
                    b = session.decode(payloads[t][i])
                    crcs[t] = container.bits_crc_update(b, crcs[t])
                    yield torch.from_numpy(b)[None].float() * 2 - 1

            for recon in model.net.decode(tile_bits(session, i)):  # noqa: B007  (the last one is the tile's)
                bar.update(1)
            canvas.add(box, recon[0].permute(1, 2, 0).numpy()[: box.shape[0], : box.shape[1]])
        bar.close()
    for t in range(n_iter):
        if crcs[t] != chunk_crcs[t]:
            raise FormatError(f"chunk {t + 1} CRC mismatch: the file is corrupt or was coded with another model")
    return canvas


def compress(image: RGBImage | Image.Image | np.ndarray | str | Path, iterations: int | None = None,
             bpp: float | None = None, alpha: str = "keep", background: str | tuple[int, ...] = "white",
             **kwargs) -> bytes:
    """Compress an image (a path, a PIL image or an H×W×3 or ×4 uint8 array) to .rnc bytes.
    Transparency is kept losslessly, or with `alpha="drop"` flattened onto `background`."""
    return encode(_as_rgb(image, alpha, background), iterations=iterations, bpp=bpp, **kwargs).data


def decompress(data: bytes, iterations: int | None = None) -> Image.Image:
    """Decode .rnc bytes to a PIL image (RGB, or RGBA if the file holds an alpha plane);
    `iterations` decodes a prefix at lower quality."""
    return decode(data, iterations).to_pil()
