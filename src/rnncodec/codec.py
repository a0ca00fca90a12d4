"""The pipeline: image → tiles → model backend → bits → payload coder → container (decoder.py: back).

One tile loop drives a model backend (backend.py). A rate that chooses block counts (rate.py) runs
it twice: a first pass of whole iterations, then a coding pass of the counts, checked."""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from . import container
from .backend import DEFAULT_ENGINE, Backend, as_backend, load_backend
from .config import STRIDE
from .decoder import Decoded, decode, decode_progressive, decompress, decompress_progressive  # noqa: F401  (the API: decoding is codec.decode too)
from .entropy import BitCoder
from .errors import BudgetError, Note, OptionError
from .image import DOWNSCALES, RGBImage, as_rgb, resized
from .rate import Rate, choose, masked_error, ms_ssim_change, search, squared_error, window
from .tiles import DEFAULT_OVERLAP, DEFAULT_TILE, Canvas, TileBox, check_tiling, model_input, plan_tiles, release_memory, to_uint8
from .zoo import ImageModel, default_coder

TRY_SMALLER_UP_TO = 3  # a target that this many full-size iterations reach is tried at smaller sizes too (docs/RESULTS.md)
REDUCE_BELOW = 1.25  # a budget under this many first iterations' cost is coded at a smaller size (docs/RESULTS.md)
PAST = 3  # first-pass iterations of a tile after the one that meets the goal on its own: the counts' headroom


@dataclass
class Encoded:
    data: bytes
    iterations: int
    reconstruction: np.ndarray | None  # H×W×3 uint8 a decoder of `data` must produce (if asked for)


def encode(image: RGBImage | Image.Image | np.ndarray | str | Path, rate: Rate | None = None, *,
           model: ImageModel | Backend | None = None, coder: BitCoder | None = None, tile: int = DEFAULT_TILE,
           overlap: int = DEFAULT_OVERLAP, progress: bool = False, reconstruct: bool = False,
           precision: str = "auto", engine: str = DEFAULT_ENGINE, **options) -> Encoded:
    """Encode an image at the rate `rate`, or the rate options as keywords (`rate.Rate`:
    iterations, bpp, target_psnr, target_ms_ssim, quality, adaptive, downscale).

    `model`: a torch image model run in `precision`, or a backend (backend.py); default: the
    packaged one in `engine`'s runtime. With `reconstruct`, also what the file decodes to (exactly so from torch). Without
    `downscale`, full size, but for a budget under REDUCE_BELOW full-size first iterations or a
    target the first TRY_SMALLER_UP_TO pass: then the size that serves them best."""
    if rate is not None and options:
        raise OptionError("give the rate as a Rate or as keywords, not both")
    rate = rate or Rate(**options)
    rgb = as_rgb(image)
    backend = load_backend(engine, None, precision) if model is None else as_backend(model, precision)
    check_tiling(tile, overlap)

    def at(scale: int) -> tuple[Encoded, float | None]:
        return _Image(rgb, scale, rate, backend, coder or default_coder(backend.model_id), tile, overlap,
                      reconstruct, progress).code()

    if rate.downscale is not None:
        return at(rate.downscale)[0]
    if rate.bpp is not None:
        return _within_budget(at, rate)
    best, quality = at(1)
    if rate.target is None or quality < rate.target or best.iterations > TRY_SMALLER_UP_TO:
        return best
    for scale in DOWNSCALES[1:]:  # a target the first full-size iterations pass: fewer bits at a smaller size?
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Note)  # a smaller size that misses the target is not kept, nor reported
            smaller, quality = at(scale)
        if quality < rate.target or len(smaller.data) >= len(best.data):
            break
        best = smaller
    return best


def _within_budget(at: Callable[[int], tuple[Encoded, float | None]], rate: Rate) -> Encoded:
    """The file that fills the budget at the largest size whose first iteration takes under
    1/REDUCE_BELOW of it: just above one iteration's cost, a smaller size's several iterations
    look better than one and a part (docs/RESULTS.md, "Below one iteration")."""
    for scale in DOWNSCALES[:-1]:
        with contextlib.suppress(BudgetError):
            encoded, _ = at(scale)
            header, chunks = container.read(encoded.data)
            if REDUCE_BELOW * container.prefix_sizes(header, chunks)[0] * 8 <= rate.bpp * np.prod(header.display_size):
                return encoded
    try:
        return at(DOWNSCALES[-1])[0]
    except BudgetError as exc:
        raise BudgetError(f"{rate.bpp:g} bpp is below what one iteration costs for this image, even coded at "
                          f"1/{DOWNSCALES[-1]} size ({exc.cost:.4f} bpp)", exc.cost) from None


@dataclass
class _Pass:
    """One run of the tile loop: the chunks, and what the rate control reads from them."""

    chunks: container.Chunks
    counts: list[np.ndarray] | None  # each tile's blocks' iteration counts; None: all blocks every iteration
    sizes: list[list[int]]  # each tile's segment bytes per iteration
    recons: list[np.ndarray]  # a first pass's: each tile's (T+1)×H×W×3 8-bit reconstructions after 0…T
    canvases: list[Canvas]  # with `reconstruct`: the image after each iteration
    final: Canvas  # the image after the last


class _Image:
    """One image coded at 1/scale size: its tiles and header, the tile loop, and the rate control."""

    def __init__(self, rgb: RGBImage, scale: int, rate: Rate, backend: Backend, coder: BitCoder, tile: int,
                 overlap: int, reconstruct: bool, progress: bool) -> None:
        big_h, big_w = rgb.pixels.shape[:2]
        h, w = -(-big_h // scale), -(-big_w // scale)
        self.original, self.pixels = rgb.pixels, rgb.pixels if scale == 1 else resized(rgb.pixels, w, h)
        self.rate, self.backend, self.coder, self.reconstruct, self.progress = rate, backend, coder, reconstruct, progress
        self.boxes = plan_tiles(h, w, tile, overlap)
        self.header = container.Header(
            coder.coder_id, backend.model_id, coder.model_id, w, h, tile, overlap,
            backend.cfg.coded_iterations(rate.iterations), rgb.icc_profile,
            None if rgb.alpha is None else container.pack_alpha(rgb.alpha), precision=backend.precision,
            display=container.pack_display(big_w, big_h) if scale > 1 else None)
        self.budget = None if rate.bpp is None else rate.bpp * big_h * big_w / 8

    def shown(self, image: np.ndarray) -> np.ndarray:
        """An 8-bit image at the coded size as a decoder shows it."""
        return image if image.shape == self.original.shape else resized(image, *self.original.shape[1::-1])

    def measure(self, image: np.ndarray) -> float:
        return self.rate.measure(self.original, self.shown(image))

    def run(self, counts: list[np.ndarray] | None = None, first: bool = False) -> _Pass:
        """The tile loop: each tile through the backend, each block for its count of iterations (all
        without counts). A first pass keeps each iteration's reconstruction, and stops a tile PAST
        iterations after it meets the goal alone."""
        h, w, n = self.header.height, self.header.width, self.header.iterations
        p = _Pass(container.Chunks(n), counts, [], [], [Canvas(h, w, self.header.overlap) for _ in range(n)]
                  if self.reconstruct else [], Canvas(h, w, self.header.overlap))
        for i, box in enumerate(tqdm(self.boxes, desc="encoding", unit="tile", disable=not self.progress, delay=1.0)):
            self._tile(p, box, None if counts is None else counts[i], first)
            if i + 1 < len(self.boxes):  # not after the last: a caller's next image would fault its pages in again
                release_memory()
        return p

    def _tile(self, p: _Pass, box: TileBox, counts: np.ndarray | None, first: bool) -> None:
        n, original = self.header.iterations, self.pixels[box.y0 : box.y1, box.x0 : box.x1]
        x = np.ascontiguousarray(model_input(self.pixels, box))
        state, last = self.backend.begin(x), n if counts is None else int(counts.max())
        look = first or self.rate.target is not None  # the tile's pixels: for the rate control
        session = self.coder.session((self.backend.cfg.bits, x.shape[2] // STRIDE, x.shape[3] // STRIDE))
        recons, sizes, pixels, met = [np.full(original.shape, 128, np.uint8)], [], None, None
        for t in range(last):
            mask = None if counts is None else counts > t
            bits, state = self.backend.step(state, mask, look or self.reconstruct or t + 1 < last)
            segment = session.encode(bits, None if mask is None or mask.all() else mask)
            p.chunks.add(t, segment, bits)
            sizes.append(len(segment))
            if look or self.reconstruct:
                pixels = self.backend.reconstruction(state)[0].transpose(1, 2, 0)[: box.shape[0], : box.shape[1]]
            for canvas in p.canvases[t : t + 1] if t + 1 < last else p.canvases[t:]:  # stopped: no more bits
                canvas.add(box, pixels)
            if first:
                recons.append(to_uint8(pixels.copy()))
                met = t if met is None and self._met(original, recons[-1], sum(sizes)) else met
                if met is not None and t >= met + PAST:
                    break
        for rest in range(t + 1, n):
            p.chunks.add(rest, b"", np.zeros_like(bits))
        if look:
            p.final.add(box, pixels)
        p.sizes.append(sizes)
        if first:
            p.recons.append(np.stack(recons))

    def _met(self, original: np.ndarray, recon: np.ndarray, size: int) -> bool:
        """Whether a tile meets the goal on its own: its target, or its share of the budget."""
        if self.rate.target is not None:
            return self.rate.measure(original, recon) >= self.rate.target + self.rate.margin
        return self.budget is not None and size * self.header.width * self.header.height >= self.budget * original[..., 0].size

    def grids(self, k: int) -> list[np.ndarray]:
        return [np.full((-(-b.shape[0] // STRIDE), -(-b.shape[1] // STRIDE)), k, np.uint8) for b in self.boxes]

    def compose(self, first: _Pass, counts: list[np.ndarray]) -> np.ndarray:
        """The image the first pass shows with each block after its count of iterations."""
        canvas = Canvas(self.header.height, self.header.width, self.header.overlap)
        for box, recons, c in zip(self.boxes, first.recons, counts):
            index = np.kron(c, np.ones((STRIDE, STRIDE), np.intp))[: box.shape[0], : box.shape[1], None]
            canvas.add(box, np.take_along_axis(recons, index[None], 0)[0] / np.float32(255) - np.float32(0.5))
        return canvas.result()

    def sizes(self, p: _Pass, top: int) -> list[int]:
        """The bytes of the file of p's first 1…top iterations."""
        header = self.header if p.counts is None else replace(self.header, blocks=container.pack_blocks(p.counts))
        return container.prefix_sizes(header, [(container.join_segments(s), 0) for s in p.chunks.segments[:top]])

    def estimate(self, first: _Pass, counts: list[np.ndarray]) -> float:
        """The bytes of the file of these counts, from the first pass's whole iterations' bytes."""
        top = max(int(c.max()) for c in counts)
        header = replace(self.header, blocks=container.pack_blocks(counts))
        framing = container.prefix_sizes(header, [(container.join_segments([b""] * len(counts)), 0)] * top)[-1]
        return framing + sum(s[t] * np.mean(c > t) for s, c in zip(first.sizes, counts) for t in range(int(c.max())))

    def file(self, p: _Pass, k: int) -> Encoded:
        """The file of p's first k iterations."""
        header = self.header if p.counts is None else replace(self.header, blocks=container.pack_blocks(p.counts))
        recon = self.shown(p.canvases[k - 1].result()) if p.canvases else None
        return Encoded(p.chunks.file(header, k), k, recon)

    def code(self) -> tuple[Encoded, float | None]:
        """The file at this size, and the quality it measured for a target (else None): a first
        pass, the counts chosen on it, and a coding pass checked against the goal, with the first
        pass's whole iterations as the fallback."""
        if not self.rate.chooses:
            return self.file(self.run(), self.header.iterations), None
        first = self.run(first=True)
        done = min(len(r) - 1 for r in first.recons)
        whole = self._whole(first, done)
        counts = self._counts(first, whole)
        coded = None if counts is None else self.run(counts)
        if self.rate.target is not None:
            return self._check_target(first, whole, done, coded)
        top = 0 if coded is None else max(int(c.max()) for c in counts)
        if self.budget is None:
            return self.file(coded, top), None
        fit = max((k for k, size in enumerate(self.sizes(coded, top) if top else [], 1) if size <= self.budget), default=0)
        return self.file(coded, fit) if fit > whole or fit == top > whole else self.file(first, whole), None

    def _whole(self, first: _Pass, done: int) -> int | None:
        """The first pass's whole iterations that meet the goal: the fewest reaching a target, the
        most within a budget; None for none."""
        if self.rate.target is not None:
            return next((k for k in range(1, done + 1) if self.measure(self.compose(first, self.grids(k)))
                         >= self.rate.target), None)
        if self.budget is None:
            return None
        sizes = self.sizes(first, done)
        self.rate.check_budget(sizes[0], self.original[..., 0].size)
        return max(k for k, size in enumerate(sizes, 1) if size <= self.budget)

    def _counts(self, first: _Pass, whole: int | None) -> list[np.ndarray] | None:
        """The block counts: the one choice every goal makes (rate.py)."""
        rate, errors = self.rate, None
        if rate.slope is not None or rate.target_ms_ssim is None:
            distortion = masked_error if rate.slope is not None else squared_error
            errors = [distortion(r, self.pixels[b.y0 : b.y1, b.x0 : b.x1]) for r, b in zip(first.recons, self.boxes)]
        if rate.slope is not None:
            return choose([window(d, 1, len(d)) for d in errors], rate.slope)
        if not rate.adaptive and (whole is None or (rate.target is not None and whole == 1)):
            return None  # whole iterations, nothing in part
        low, high = (1, self.header.iterations) if rate.adaptive else (whole - 1, whole) if rate.target else (whole, whole + 1)
        if rate.target_ms_ssim is not None:
            k = whole or min(len(r) for r in first.recons) - 1  # else the most every tile computed
            ref = max(k - 1, 1)
            errors = self._ms_ssim_tables(first, ref)
            if rate.adaptive:  # a flat block coded once shows its square, which MS-SSIM sees
                low, high = max(2 if k > 2 else 1, k - 2), k + 1
        tables = [window(d, low, high) for d in errors]
        if rate.target is not None:
            return search(tables, lambda c: self.measure(self.compose(first, c)) >= rate.target + rate.margin, True)
        return search(tables, lambda c: self.estimate(first, c) <= 0.98 * self.budget, False)  # its entropy: near

    def _ms_ssim_tables(self, first: _Pass, ref: int) -> list[np.ndarray]:
        """MS-SSIM's d_b(c), by its gradient at `ref` whole iterations."""
        from .quality import ms_ssim_gradient

        gradient = ms_ssim_gradient(self.pixels, self.compose(first, self.grids(ref)))
        return [ms_ssim_change(r, ref, gradient[b.y0 : b.y1, b.x0 : b.x1]) for r, b in zip(first.recons, self.boxes)]

    def _check_target(self, first: _Pass, whole: int | None, done: int,
                      coded: _Pass | None) -> tuple[Encoded, float]:
        """The coded counts where they meet the target in fewer bytes than the first pass's whole
        iterations; else those whole iterations (the target alone, which the first pass measured)."""
        encoded = self.file(first, whole or done)
        quality = self.measure(self.compose(first, self.grids(whole or done)))
        if coded is not None:
            mine, candidate = self.measure(coded.final.result()), self.file(coded, max(int(c.max()) for c in coded.counts))
            if (mine >= self.rate.target or whole is None) and (whole is None or len(candidate.data) < len(encoded.data)):
                encoded, quality = candidate, mine
        self.rate.check_reached(encoded.iterations, quality)
        return encoded, quality


def compress(image: RGBImage | Image.Image | np.ndarray | str | Path, rate: Rate | None = None, *, alpha: str = "keep",
             background: str | tuple[int, ...] = "white", **options) -> bytes:
    """Compress an image (a path, a PIL image or an H×W×3 or ×4 uint8 array) to .rnc bytes, at the
    rate `rate` or the rate options given as keywords (`rate.Rate`), with encode's other options.
    Transparency is kept losslessly, or with `alpha="drop"` flattened onto `background`."""
    return encode(as_rgb(image, alpha, background), rate, **options).data
