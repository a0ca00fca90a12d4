"""Reading input images as 8-bit RGB, and the padding the model needs.

Every Pillow mode either becomes RGB or is refused with a clear message: alpha is kept only when
it is fully opaque (so dropping it loses nothing); otherwise the image is refused, since rnncodec
codes colour only. 16-bit and 32-bit integer images are scaled to 8 bits, with a note.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError, Note
from .fileio import reading

DEFAULT_MAX_PIXELS = 1 << 28  # 268 MP: larger inputs are refused as possible decompression bombs
LOSSLESS_SUFFIXES = frozenset({".png", ".ppm", ".pgm", ".pbm", ".pnm", ".bmp", ".tif", ".tiff"})


def image_suffixes() -> frozenset[str]:
    """Every file extension Pillow can open, with the plugins that are installed."""
    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN) - {".rnc"}


def list_images(*roots: str | Path, lossless: bool = False) -> list[Path]:
    """The image files below each root folder, sorted, so that a seed fixes their order.

    `lossless` keeps the lossless formats only: evaluation sources must not carry another
    codec's artefacts."""
    suffixes = LOSSLESS_SUFFIXES if lossless else image_suffixes()
    return sorted(p for root in roots for p in Path(root).rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


@dataclass
class RGBImage:
    pixels: np.ndarray  # H×W×3 uint8
    icc_profile: bytes | None = None


def _to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            raise ImageError("the image has transparency; rnncodec codes colour only (flatten or drop the alpha first)")
        return rgba.convert("RGB")
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        warnings.warn(f"{mode} image converted to 8 bits per channel", Note, stacklevel=2)
        a = np.asarray(im, dtype=np.float64)
        scale = 257.0 if mode.startswith("I;16") or a.max(initial=0) > 255 else 1.0
        a = np.clip(np.round(a / scale), 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if mode == "F":
        raise ImageError("floating-point (mode F) images are not supported; convert to 8 or 16 bits first")
    if mode in ("1", "L", "P", "RGB", "CMYK", "YCbCr", "LAB", "HSV"):
        return im.convert("RGB")
    raise ImageError(f"unsupported image mode {mode}")


def from_pil(im: Image.Image) -> RGBImage:
    """A Pillow image as RGB: EXIF orientation applied, first frame of an animation."""
    if getattr(im, "n_frames", 1) > 1:
        warnings.warn("animated image: only the first frame is coded", Note, stacklevel=2)
        im.seek(0)
    icc = im.info.get("icc_profile")
    im = ImageOps.exif_transpose(im)
    return RGBImage(np.asarray(_to_rgb(im), dtype=np.uint8), icc or None)


def read_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> RGBImage:
    """Open an image file with a clear error for anything unreadable or too large."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with reading(path, ImageError), warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.width * im.height > max_pixels:
                    raise ImageError(f"{path}: {im.width}×{im.height} exceeds the pixel cap of {max_pixels}")
                im.load()
                return from_pil(im)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{path}: exceeds the pixel cap of {max_pixels}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: cannot decode image ({exc})") from None


def pad_to_multiple(pixels: np.ndarray, multiple: int) -> np.ndarray:
    """Edge-replicate an H×W×C array up to sides that are multiples of `multiple`."""
    h, w = pixels.shape[:2]
    ph, pw = -h % multiple, -w % multiple
    return np.pad(pixels, ((0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else pixels
