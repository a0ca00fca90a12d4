"""Pillow plugin: .rnc files open, decode and save through Pillow's own API (`import rnncodec`
registers it).

    im = Image.open("photo.rnc")        # size and mode (RGB, or RGBA with an alpha plane) from the header
    im.iterations = 2                   # optional, before loading: decode only a prefix (default: all)
    im.save("photo.rnc", iterations=4)  # or any other option of rnncodec.Rate (bpp=0.3, quality=50, …);
                                        # alpha="drop" and background= as rnncodec.compress

`iterations` plays the part of JPEG 2000's `layers` in Pillow. Only the container is imported
here: the codec (and torch) load with the first decode or save, so `import rnncodec` stays cheap.
A corrupt .rnc file raises rnncodec.FormatError from `Image.open` or `load`.
"""
from __future__ import annotations

import io
from typing import IO

from PIL import Image, ImageFile

from . import container
from .rate import Rate

# the keywords `im.save(…)` passes on to compress: the rate options, and how to treat transparency
SAVE_OPTIONS = (*Rate.options(), "alpha", "background")


def _accept(prefix: bytes) -> bool:
    return prefix.startswith(container.MAGIC)


class RncImageFile(ImageFile.ImageFile):
    format = "RNC"
    format_description = "rnncodec recurrent neural network image"

    def _open(self) -> None:
        """Read and check the stream (headers and chunk framing, no further than they announce),
        decode nothing yet."""
        # a file cut inside an iteration opens where Pillow opens truncated images (ImageFile.LOAD_TRUNCATED_IMAGES)
        header, chunks = container.read(self.fp, strict=not ImageFile.LOAD_TRUNCATED_IMAGES)
        self._stream = container.write(header, chunks)
        self._size = header.display_size
        self._mode = "RGBA" if header.alpha else "RGB"
        self.iterations: int | None = None  # decode this many iterations (None: all the file holds)
        self.info["iterations"] = len(chunks)
        if header.icc_profile:
            self.info["icc_profile"] = header.icc_profile
        self.tile = []

    def load(self) -> Image.core.PixelAccess | None:
        if self._stream is not None:  # decode once, then hand Pillow the pixels as a raw tile
            from .codec import decompress

            pixels = decompress(self._stream, self.iterations).tobytes()
            self._stream = None
            if self.fp and self._exclusive_fp:
                self.fp.close()
            self.fp = io.BytesIO(pixels)
            self.tile = [ImageFile._Tile("raw", (0, 0, *self.size), 0, self.mode)]
        return super().load()


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    from .codec import compress

    fp.write(compress(im, **{k: im.encoderinfo[k] for k in SAVE_OPTIONS if k in im.encoderinfo}))


Image.register_open(RncImageFile.format, RncImageFile, _accept)
Image.register_save(RncImageFile.format, _save)
Image.register_extension(RncImageFile.format, ".rnc")
Image.register_mime(RncImageFile.format, "image/x-rnc")
