"""Training patches: random 32×32 crops with flips, optionally from "high entropy" tiles only."""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..image import list_images

PATCH = 32
__all__ = ["PatchSource", "is_validation", "list_images", "load_rgb"]  # list_images: the image module's


def is_validation(path: Path, fraction: float) -> bool:
    """Stable held-back split by file name hash, so it never changes between runs or machines."""
    h = int.from_bytes(hashlib.sha256(path.name.encode()).digest()[:4], "big")
    return h / 2**32 < fraction


def load_rgb(path: Path, jpeg_downscale: int) -> np.ndarray:
    """An image as H×W×3 uint8; JPEG sources are box-downscaled to hide their block artefacts."""
    with Image.open(path) as im:
        is_jpeg = im.format == "JPEG"
        im = im.convert("RGB")
        if jpeg_downscale > 1 and is_jpeg:
            im = im.reduce(jpeg_downscale)
        return np.asarray(im, dtype=np.uint8)


def png_size(tile: np.ndarray, level: int = 6) -> int:
    buf = io.BytesIO()
    Image.fromarray(tile).save(buf, format="PNG", compress_level=level)
    return buf.tell()


def hard_corners(image: np.ndarray, patch: int) -> np.ndarray:
    """Top-left corners (y, x) of the image's non-overlapping patch-sized tiles that PNG compresses
    worst: the busiest quarter (at least one). Johnston et al. 2018 mine hard patches this way;
    level 1 keeps the ranking and costs a fraction of the default level's time."""
    corners = np.array([(y, x) for y in range(0, image.shape[0] - patch + 1, patch)
                        for x in range(0, image.shape[1] - patch + 1, patch)])
    sizes = np.array([png_size(image[y : y + patch, x : x + patch], level=1) for y, x in corners])
    return corners[np.argsort(-sizes, kind="stable")[: max(1, len(corners) // 4)]]


def high_entropy_tiles(image: np.ndarray, keep: int) -> np.ndarray:
    """The `keep` non-overlapping 32×32 tiles of an image that PNG compresses worst (Toderici et al. 2017, §4)."""
    h, w = (image.shape[0] // PATCH) * PATCH, (image.shape[1] // PATCH) * PATCH
    tiles = image[:h, :w].reshape(h // PATCH, PATCH, w // PATCH, PATCH, 3).swapaxes(1, 2).reshape(-1, PATCH, PATCH, 3)
    sizes = np.array([png_size(t) for t in tiles])
    return tiles[np.argsort(-sizes, kind="stable")[:keep]]


class PatchSource:
    """Draws batches of `patch`×`patch` patches in [−0.5, 0.5] from images held in memory.

    With `high_entropy` > 0 each image contributes only its worst-compressing 32×32 tiles (fixed
    tiles, flipped at random); otherwise crops are taken anywhere in the image, and with `hard` > 0
    that fraction of each batch is taken around the tiles PNG compresses worst (`hard_corners`),
    shifted at random by up to half a patch.
    """

    def __init__(self, paths: list[Path], jpeg_downscale: int = 1, high_entropy: int = 0, progress: bool = True,
                 patch: int = PATCH, hard: float = 0.0) -> None:
        if not paths:
            raise ValueError("no training images found")
        if high_entropy and patch != PATCH:
            raise ValueError(f"high-entropy tiles are {PATCH}×{PATCH}")
        self.patch, self.hard = patch, hard
        images = [load_rgb(p, jpeg_downscale) for p in tqdm(paths, desc="loading", disable=not progress)]
        images = [im for im in images if im.shape[0] >= patch and im.shape[1] >= patch]
        if high_entropy:
            self.tiles = np.concatenate([high_entropy_tiles(im, high_entropy)
                                         for im in tqdm(images, desc="tiles", disable=not progress)])
            self.images: list[np.ndarray] = []
        else:
            self.tiles = None
            self.images = images
            weights = np.array([(im.shape[0] - patch + 1) * (im.shape[1] - patch + 1) for im in images], dtype=np.float64)
            self.weights = weights / weights.sum()
            if hard:
                corners = [hard_corners(im, patch) for im in tqdm(images, desc="hard crops", disable=not progress)]
                # rows of (image index, y, x)
                self.hard_crops = np.concatenate([np.column_stack((np.full(len(c), i), c)) for i, c in enumerate(corners)])

    def batch(self, n: int, rng: np.random.Generator) -> torch.Tensor:
        if self.tiles is not None:
            out = self.tiles[rng.integers(0, len(self.tiles), n)]
        else:
            p = self.patch
            out = np.empty((n, p, p, 3), dtype=np.uint8)
            n_hard = int(round(n * self.hard))
            picks = rng.choice(len(self.images), n - n_hard, p=self.weights)
            for k, i in enumerate(picks):
                im = self.images[i]
                y = rng.integers(0, im.shape[0] - p + 1)
                x = rng.integers(0, im.shape[1] - p + 1)
                out[k] = im[y : y + p, x : x + p]
            hard = self.hard_crops[rng.integers(0, len(self.hard_crops), n_hard)] if n_hard else []
            for k, (i, y0, x0) in enumerate(hard, len(picks)):
                im = self.images[i]
                y = np.clip(y0 + rng.integers(-p // 2, p // 2 + 1), 0, im.shape[0] - p)
                x = np.clip(x0 + rng.integers(-p // 2, p // 2 + 1), 0, im.shape[1] - p)
                out[k] = im[y : y + p, x : x + p]
        flip_h, flip_v = rng.random(n) < 0.5, rng.random(n) < 0.5
        out[flip_h] = out[flip_h, :, ::-1]
        out[flip_v] = out[flip_v, ::-1]
        return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255).sub_(0.5)
