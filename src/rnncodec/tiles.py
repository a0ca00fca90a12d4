"""Tiling: images are coded as independent overlapping tiles so memory stays bounded.

Tiles step by `tile` pixels; each is coded with `overlap` extra pixels on every side that has a
neighbour. On decode the overlapping bands are cross-faded linearly, which hides the seams.
"""
from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

import numpy as np

from .config import STRIDE
from .container import MAX_TILE_SPAN
from .errors import OptionError
from .image import pad_to_multiple

DEFAULT_TILE = 1024  # Kodak-sized images (768×512) code as one tile, with no overlap overhead
DEFAULT_OVERLAP = 16


@dataclass(frozen=True)
class TileBox:
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0

    def crop(self, image: np.ndarray) -> np.ndarray:  # the tile's part of an H×W(×…) image (a view)
        return image[self.y0 : self.y1, self.x0 : self.x1]


def progress(items: Iterable | None = None, *, show: bool, **bar) -> Any:
    """tqdm's progress bar over `items` (or, without, one a caller updates) where `show`; else the
    items as they are, or a bar that shows nothing. tqdm loads only to be shown: its import reads
    the installed packages' metadata, which a codec command need not wait for."""
    if show:
        from tqdm import tqdm

        return tqdm(items, delay=1.0, **bar)
    return items if items is not None else SimpleNamespace(update=lambda n=1: None, close=lambda: None)


def _cuts(size: int, tile: int) -> list[int]:
    """Edges of ceil(size/tile) near-equal tiles, inner edges on the 16-pixel block grid."""
    n = -(-size // tile)
    return [round(i * size / n / 16) * 16 for i in range(n)] + [size]


def check_tiling(tile: int, overlap: int) -> None:
    """Tiles and overlaps on the model's block grid, an overlap smaller than its tile, and a coded
    region within the format's bound (what a reader accepts)."""
    if tile % STRIDE or tile <= 0 or overlap % STRIDE or overlap < 0 or overlap >= tile:
        raise OptionError(f"tile must be a positive multiple of {STRIDE} and overlap a smaller multiple of {STRIDE}")
    if tile + 2 * overlap > MAX_TILE_SPAN:
        raise OptionError(f"tile + 2 × overlap must be at most {MAX_TILE_SPAN} pixels (here {tile + 2 * overlap})")


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> list[TileBox]:
    """The coded region of every tile, in raster order; no tile is larger than `tile` + 2·overlap."""
    ys, xs = _cuts(height, tile), _cuts(width, tile)
    return [
        TileBox(max(0, y0 - overlap), min(height, y1 + overlap), max(0, x0 - overlap), min(width, x1 + overlap))
        for y0, y1 in zip(ys, ys[1:])
        for x0, x1 in zip(xs, xs[1:])
    ]


def model_input(pixels: np.ndarray, box: TileBox) -> np.ndarray:
    """One tile, edge-padded to the model's stride, as the 1×3×H×W float32 array in [−0.5, 0.5]
    the image model takes. Its memory stays in the pixels' order (channels-last), which is how
    the torch model's convolutions want it."""
    crop = pad_to_multiple(box.crop(pixels), STRIDE)
    return crop.transpose(2, 0, 1)[None].astype(np.float32) / 255.0 - 0.5


def _ramp(lo: int, hi: int, size: int, overlap: int) -> np.ndarray:
    """1-D weights over [lo, hi): rising over 2·overlap pixels where a neighbour shares the band."""
    p = np.arange(lo, hi, dtype=np.float32) + 0.5
    w = np.ones(hi - lo, dtype=np.float32)
    if overlap:
        if lo > 0:
            w = np.minimum(w, (p - lo) / (2 * overlap))
        if hi < size:
            w = np.minimum(w, (hi - p) / (2 * overlap))
    return w


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """[−0.5, 0.5] floats to 8-bit codes, in place: a large image's float temporaries are its memory peak."""
    pixels += 0.5
    pixels *= 255.0
    np.round(pixels, out=pixels)
    np.clip(pixels, 0, 255, out=pixels)
    return pixels.astype(np.uint8)


class Canvas:
    """Accumulates weighted tiles (in raster order) and turns finished rows into the 8-bit image.

    Floats are kept only for the rows still open, from the first row a later tile can reach down
    to the last row added: about one row of tiles. So a decoder's memory is that band plus the
    8-bit output, not a full-size float canvas and weight map (384 MB at 6000×4000)."""

    def __init__(self, height: int, width: int, overlap: int) -> None:
        self.h, self.w, self.overlap = height, width, overlap
        self.out = np.empty((height, width, 3), dtype=np.uint8)
        self.top = 0  # rows above it are final, in `out`
        self.sum = np.zeros((0, width, 3), dtype=np.float32)  # rows top … top + len − 1
        self.weight = np.zeros((0, width, 1), dtype=np.float32)

    def add(self, box: TileBox, pixels: np.ndarray) -> None:
        if box.y0 < self.top:
            raise ValueError("a tile reaches rows the canvas has finished")
        if (grow := box.y1 - self.top - len(self.sum)) > 0:
            self.sum = np.concatenate((self.sum, np.zeros((grow, self.w, 3), np.float32)))
            self.weight = np.concatenate((self.weight, np.zeros((grow, self.w, 1), np.float32)))
        wy = _ramp(box.y0, box.y1, self.h, self.overlap)
        wx = _ramp(box.x0, box.x1, self.w, self.overlap)
        weight = (wy[:, None] * wx[None, :])[..., None]
        rows = slice(box.y0 - self.top, box.y1 - self.top)
        self.sum[rows, box.x0 : box.x1] += pixels * weight
        self.weight[rows, box.x0 : box.x1] += weight

    def finish(self, y: int) -> None:
        """Rows above `y` get no more tiles: normalise them into the 8-bit image, free their floats."""
        n = y - self.top
        if n <= 0:
            return
        self.out[self.top : y] = to_uint8(np.divide(self.sum[:n], self.weight[:n], out=self.sum[:n]))
        self.sum, self.weight = self.sum[n:].copy(), self.weight[n:].copy()
        self.top = y

    def result(self) -> np.ndarray:
        """The blended 8-bit image (H×W×3 uint8)."""
        self.finish(self.h)
        return self.out


@lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc; elsewhere there is no such call
    except (AttributeError, OSError):
        return None


def release_memory() -> None:
    """Hand the heap's freed pages back to the system between tiles. glibc keeps them, and the
    next tile's activations land beside them rather than in them, so a large image's peak memory
    crept up tile by tile."""
    if (trim := _malloc_trim()) is not None:
        trim(0)
