"""Tiling: images are coded as independent overlapping tiles so memory stays bounded.

Tiles step by `tile` pixels; each is coded with `overlap` extra pixels on every side that has a
neighbour. On decode the overlapping bands are cross-faded linearly, which hides the seams.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TileBox:
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0


def _cuts(size: int, tile: int) -> list[int]:
    """Edges of ceil(size/tile) near-equal tiles, inner edges on the 16-pixel block grid."""
    n = -(-size // tile)
    return [round(i * size / n / 16) * 16 for i in range(n)] + [size]


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> list[TileBox]:
    """The coded region of every tile, in raster order; no tile is larger than `tile` + 2·overlap."""
    ys, xs = _cuts(height, tile), _cuts(width, tile)
    return [
        TileBox(max(0, y0 - overlap), min(height, y1 + overlap), max(0, x0 - overlap), min(width, x1 + overlap))
        for y0, y1 in zip(ys, ys[1:])
        for x0, x1 in zip(xs, xs[1:])
    ]


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


class Canvas:
    """Accumulates weighted tiles; `result()` normalises by the summed weights."""

    def __init__(self, height: int, width: int, overlap: int) -> None:
        self.h, self.w, self.overlap = height, width, overlap
        self.sum = np.zeros((height, width, 3), dtype=np.float32)
        self.weight = np.zeros((height, width, 1), dtype=np.float32)

    def add(self, box: TileBox, pixels: np.ndarray) -> None:
        wy = _ramp(box.y0, box.y1, self.h, self.overlap)
        wx = _ramp(box.x0, box.x1, self.w, self.overlap)
        weight = (wy[:, None] * wx[None, :])[..., None]
        self.sum[box.y0 : box.y1, box.x0 : box.x1] += pixels * weight
        self.weight[box.y0 : box.y1, box.x0 : box.x1] += weight

    def result(self) -> np.ndarray:
        """The blended image, normalised in place (no second full-size float array): call it once."""
        return np.divide(self.sum, self.weight, out=self.sum)
