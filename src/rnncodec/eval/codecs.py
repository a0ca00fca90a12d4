"""Classical codecs through Pillow, each with the quality sweep it is evaluated at.

A codec maps (image, quality) to the bytes of a real file, and decodes those bytes back. JPEG XL
and HEIC join the registry only when their Pillow plugins import (extras `jxl`, `heif`).
"""
from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, features


@dataclass(frozen=True)
class Codec:
    name: str
    description: str
    qualities: tuple[float, ...]
    save: Callable[[Image.Image, io.BytesIO, float], None]

    def encode(self, pixels: np.ndarray, quality: float) -> bytes:
        buf = io.BytesIO()
        self.save(Image.fromarray(pixels, "RGB"), buf, quality)
        return buf.getvalue()

    @staticmethod
    def decode(data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))


def _jpeg(im: Image.Image, buf: io.BytesIO, q: float) -> None:
    im.save(buf, "JPEG", quality=int(q), subsampling="4:2:0")


def _webp(im: Image.Image, buf: io.BytesIO, q: float) -> None:
    im.save(buf, "WEBP", quality=int(q), method=6)


def _avif(im: Image.Image, buf: io.BytesIO, q: float) -> None:
    im.save(buf, "AVIF", quality=int(q), subsampling="4:2:0", speed=6)


def _jpeg2000(im: Image.Image, buf: io.BytesIO, bpp: float) -> None:
    """Quality is the target bpp: Pillow takes a compression ratio over 24-bit RGB (default: lossless)."""
    im.save(buf, "JPEG2000", quality_mode="rates", quality_layers=[24 / bpp], irreversible=True)


def _jxl(im: Image.Image, buf: io.BytesIO, q: float) -> None:
    im.save(buf, "JXL", quality=int(q))


def _heic(im: Image.Image, buf: io.BytesIO, q: float) -> None:
    im.save(buf, "HEIF", quality=int(q))


def _steps(lo: int, hi: int, step: int) -> tuple[float, ...]:
    return tuple(float(q) for q in range(lo, hi + 1, step))


def available() -> dict[str, Codec]:
    """The codecs this Pillow build and its installed plugins can write."""
    pil = f"Pillow {Image.__version__}"
    codecs = [Codec("jpeg", f"JPEG 4:2:0, libjpeg-turbo {features.version('libjpeg_turbo')} ({pil})", _steps(5, 95, 5), _jpeg)]
    if features.check("webp"):
        codecs.append(Codec("webp", f"WebP, libwebp {features.version('webp')}, method 6 ({pil})", _steps(5, 95, 5), _webp))
    if features.check("avif"):
        codecs.append(Codec("avif", f"AVIF 4:2:0, libavif {features.version('avif')}, speed 6 ({pil})",
                            _steps(5, 95, 5), _avif))
    if features.check("jpg_2000"):
        codecs.append(Codec("jpeg2000", f"JPEG 2000, OpenJPEG {features.version('jpg_2000')}, 9/7 wavelet, "
                            f"rate-controlled to the target bpp ({pil})",
                            (0.0625, 0.125, 0.1875, 0.25, 0.375, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0), _jpeg2000))
    try:
        import pillow_jxl  # noqa: F401  (registers the JXL format)

        codecs.append(Codec("jxl", f"JPEG XL, pillow-jxl-plugin {_version('pillow-jxl-plugin')} ({pil})",
                            _steps(5, 95, 5), _jxl))
    except ImportError:
        pass
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
        codecs.append(Codec("heic", f"HEIC (HEVC), pillow-heif {pillow_heif.__version__}, libheif "
                            f"{pillow_heif.libheif_version()} ({pil})", _steps(5, 95, 5), _heic))
    except ImportError:
        pass
    return {c.name: c for c in codecs}


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)
