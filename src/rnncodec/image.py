"""Reading input images as 8-bit RGB plus an optional alpha plane, and the padding the model needs.

Every Pillow mode either becomes RGB or is refused with a clear message. Transparency becomes an
8-bit alpha plane, which the container stores losslessly beside the lossy colour; a fully opaque
one is dropped (nothing is lost), and `alpha="drop"` flattens the image onto a background colour
instead. 16-bit and 32-bit integer images are scaled to 8 bits, with a note.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, ImageColor, ImageOps, UnidentifiedImageError

from .container import MAX_ICC, MAX_SIDE
from .errors import ImageError, Note
from .fileio import reading

# Pillow's own default cap (PIL.Image.MAX_IMAGE_PIXELS, 89.5 MP): larger images, read or claimed by
# an .rnc file, are refused as possible decompression bombs unless --max-pixels raises it
DEFAULT_MAX_PIXELS = 1024 * 1024 * 1024 // 4 // 3
LOSSLESS_SUFFIXES = frozenset({".png", ".ppm", ".pgm", ".pbm", ".pnm", ".bmp", ".tif", ".tiff"})
ALPHA_CHOICES = ("keep", "drop")  # code transparency losslessly, or flatten onto a background colour
_INTEGER_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def writer_format(path: str | Path) -> str | None:
    """The Pillow format that writes files named like `path`, by its extension; None for none.
    Pillow's common formats (`Image.preinit`) answer a .png without importing every plugin."""
    suffix = Path(path).suffix.lower()
    Image.preinit()
    return Image.EXTENSION.get(suffix) or Image.registered_extensions().get(suffix)


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


def pillow_opens(path: str | Path) -> bool:
    """Whether Pillow recognises a file's content as an image, whatever its name says (the MPO,
    SPIDER or XV thumbnail files that no registered extension names). An .rnc file is not
    counted: it is this codec's output, which Pillow opens only through rnncodec's plugin."""
    Image.init()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path, formats=[f for f in Image.OPEN if f != "RNC"]):
                return True
    except UnidentifiedImageError:
        return False
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
        return True  # recognised but refused (unreadable, too large): compressing it says why


@dataclass
class RGBImage:
    pixels: np.ndarray  # H×W×3 uint8
    icc_profile: bytes | None = None
    alpha: np.ndarray | None = None  # H×W uint8; None when every pixel is opaque

    def __post_init__(self) -> None:
        h, w = self.pixels.shape[:2]
        if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):  # what an .rnc header can hold
            raise ImageError(f"a {w}×{h} image cannot be coded: each side must be 1 to {MAX_SIDE} pixels")
        if len(self.icc_profile or b"") > MAX_ICC:
            raise ImageError(f"an ICC profile of {len(self.icc_profile)} bytes is larger than the format holds ({MAX_ICC})")


def _alpha_plane(im: Image.Image) -> np.ndarray | None:
    """The image's transparency as an 8-bit plane, or None if it is fully opaque."""
    if not im.has_transparency_data:
        return None
    if im.mode in _INTEGER_MODES:  # a transparent grey level (PNG tRNS); Pillow's RGBA would clip the rest
        plane = np.where(np.asarray(im) == im.info["transparency"], 0, 255).astype(np.uint8)
    else:
        plane = np.asarray(im.convert("RGBA").getchannel("A"))
    return None if plane.min() == 255 else plane


def _to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        return im.convert("RGBA").convert("RGB")  # through RGBA: premultiplied modes are divided out
    if mode in _INTEGER_MODES:
        warnings.warn(f"{mode} image converted to 8 bits per channel", Note, stacklevel=2)
        a = np.asarray(im, dtype=np.float64)
        scale = 257.0 if mode.startswith("I;16") or a.max(initial=0) > 255 else 1.0
        a = np.clip(np.round(a / scale), 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if mode == "F":
        raise ImageError("floating-point (mode F) images are not supported; convert to 8 or 16 bits first")
    if mode == "RGB":
        return im  # read as it is: a converted copy would hold a large photo twice
    if mode in ("1", "L", "P", "CMYK", "YCbCr", "LAB", "HSV"):
        return im.convert("RGB")
    raise ImageError(f"unsupported image mode {mode}")


def _check_alpha_options(alpha: str, background: str | tuple[int, ...]) -> tuple[int, ...]:
    """The background as an RGB tuple; an unknown alpha choice or colour name is a ValueError."""
    if alpha not in ALPHA_CHOICES:
        raise ValueError(f"alpha must be one of {ALPHA_CHOICES}")
    return ImageColor.getrgb(background) if isinstance(background, str) else tuple(background)


def from_pil(im: Image.Image, alpha: str = "keep", background: str | tuple[int, ...] = "white") -> RGBImage:
    """A Pillow image as RGB and its alpha plane: EXIF orientation applied, first frame of an
    animation as opened. Fully transparent pixels take the `background` colour (a Pillow colour); with
    `alpha="drop"`, the whole image is flattened onto it and no plane is kept."""
    background = _check_alpha_options(alpha, background)
    if getattr(im, "n_frames", 1) > 1:  # coded as it opens: the first frame, or a PSD's composite (not a seek to 0)
        warnings.warn(f"{im.n_frames} frames or layers: only the image as opened is coded", Note, stacklevel=2)
    icc = im.info.get("icc_profile")
    if im.getexif().get(ExifTags.Base.Orientation, 1) != 1:  # exif_transpose copies even when nothing turns
        im = ImageOps.exif_transpose(im)
    rgb, plane = _to_rgb(im), _alpha_plane(im)
    if plane is None:
        return RGBImage(np.asarray(rgb, dtype=np.uint8), icc or None)
    # drop: blend onto the background. keep: only the invisible colour of fully transparent pixels
    # becomes the background, since a flat colour costs fewer bits than whatever lay there.
    mask = Image.fromarray(plane, "L") if alpha == "drop" else Image.fromarray((plane > 0).astype(np.uint8) * 255, "L")
    rgb = Image.composite(rgb, Image.new("RGB", rgb.size, background), mask)
    return RGBImage(np.asarray(rgb, dtype=np.uint8), icc or None, None if alpha == "drop" else plane)


def read_image(path: str | Path | BinaryIO, max_pixels: int = DEFAULT_MAX_PIXELS, alpha: str = "keep",
               background: str | tuple[int, ...] = "white") -> RGBImage:
    """Open an image file (or a binary stream: "-" on the command line) with a clear error for
    anything unreadable or larger than `max_pixels`; `alpha` and `background` as `from_pil`.

    Pillow's own cap (`PIL.Image.MAX_IMAGE_PIXELS`, refusing twice that) is the application's to
    set, not a library's: the CLI sets it from --max-pixels; here its warning gives way to ours."""
    _check_alpha_options(alpha, background)  # a bad option is a ValueError, not an unreadable image
    name = path if isinstance(path, str | Path) else getattr(path, "name", "stream")  # sys.stdin.buffer: <stdin>
    try:
        with reading(name, ImageError), warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.width * im.height > max_pixels:
                    raise ImageError(f"{name}: {im.width}×{im.height} exceeds the pixel cap of {max_pixels}")
                im.load()
                return from_pil(im, alpha, background)
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image Pillow can read") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: exceeds Pillow's pixel cap (twice PIL.Image.MAX_IMAGE_PIXELS = "
                         f"{Image.MAX_IMAGE_PIXELS})") from None
    except (OSError, SyntaxError, ValueError, EOFError, NotImplementedError) as exc:  # Pillow's ways to fail a decode
        raise ImageError(f"{name}: cannot decode image ({exc})") from None


DOWNSCALES = (1, 2, 4)  # the factors by which an image may be coded at reduced size (`codec.encode`)


def resized(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """An H×W×3 uint8 image resampled to width×height by Pillow's Lanczos filter: how an image coded
    at reduced size is made smaller for the encoder and larger again for the viewer."""
    return np.asarray(Image.fromarray(pixels, "RGB").resize((width, height), Image.Resampling.LANCZOS))


def pad_to_multiple(pixels: np.ndarray, multiple: int) -> np.ndarray:
    """Edge-replicate an H×W×C array up to sides that are multiples of `multiple`."""
    h, w = pixels.shape[:2]
    ph, pw = -h % multiple, -w % multiple
    return np.pad(pixels, ((0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else pixels


def as_rgb(image: RGBImage | Image.Image | np.ndarray | str | Path, alpha: str = "keep",
            background: str | tuple[int, ...] = "white") -> RGBImage:
    """An image as given to the codec (a path, a PIL image, an H×W×3 or ×4 uint8 array) as an RGBImage."""
    if isinstance(image, RGBImage):
        return image
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
            raise ValueError("arrays must be H×W×3 (RGB) or H×W×4 (RGBA) uint8")
        image = Image.fromarray(image)
    if isinstance(image, Image.Image):
        return from_pil(image, alpha, background)
    return read_image(image, alpha=alpha, background=background)
