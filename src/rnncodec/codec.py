"""The pipeline: image → tiles → model backend → bits → payload coder → container (decoder.py: back).

One tile loop drives a model backend (backend.py). A rate that chooses block counts (rate.py) runs
it for a first pass of whole iterations, then codes the counts chosen from that pass's bits, and
checks a target on what the file decodes to."""
from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from . import container, tiles
from .backend import DEFAULT_ENGINE, Backend, TileEncoder, as_backend, decode_counts, load_backend, tile_pixels
from .config import STRIDE
from .decoder import Decoded, decode, decode_progressive, decompress, decompress_progressive  # noqa: F401  (the API: decoding is codec.decode too)
from .entropy import BitCoder
from .errors import BudgetError, Note, OptionError
from .image import DOWNSCALES, RGBImage, as_rgb, resized
from .quality import masked_error, ms_ssim_change, squared_error
from .rate import Rate, choose, meet, search, window
from .tiles import DEFAULT_OVERLAP, DEFAULT_TILE, Canvas, TileBox, check_tiling, model_input, plan_tiles, release_memory, to_uint8
from .zoo import ImageModel, default_coder

TRY_SMALLER_UP_TO = 3  # a target that this many iterations of a size reach is tried at the next smaller too (docs/RESULTS.md)
REDUCE_BELOW = 1.25  # a budget under this many first iterations' cost is coded at a smaller size (docs/RESULTS.md)
PAST = 3  # first-pass iterations of a tile after the one that meets the goal on its own: adaptive counts' headroom
FLOOR = 2  # an MS-SSIM target's adaptive counts, where k > FLOOR meet it: at least this many (see `_target`)
KEEP_STATES_PIXELS = DEFAULT_TILE**2  # a target keeps model states (each many times a tile) in images up to this size


@dataclass
class Encoded:
    data: bytes
    iterations: int
    reconstruction: np.ndarray | None  # H×W×3 uint8 that `data` decodes to (if asked for)


def encode(image: RGBImage | Image.Image | np.ndarray | str | Path, rate: Rate | None = None, *,
           model: ImageModel | Backend | None = None, coder: BitCoder | None = None, tile: int = DEFAULT_TILE,
           overlap: int = DEFAULT_OVERLAP, progress: bool = False, reconstruct: bool = False,
           precision: str = "auto", engine: str = DEFAULT_ENGINE, **options) -> Encoded:
    """Encode an image at the rate `rate`, or the rate options as keywords (`rate.Rate`). `model`: a
    torch image model run in `precision`, or a backend; default: the packaged one in `engine`'s
    runtime. With `reconstruct`, also what the file decodes to with that backend."""
    if rate is not None and options:
        raise OptionError("give the rate as a Rate or as keywords, not both")
    rate, rgb = rate or Rate(**options), as_rgb(image)
    backend = load_backend(engine, None, precision) if model is None else as_backend(model, precision)
    coder, best = coder or default_coder(backend.model_id), None
    check_tiling(tile, overlap)
    for scale in DOWNSCALES if rate.downscale is None else (rate.downscale,):
        with warnings.catch_warnings():
            if best is not None:  # a smaller size that misses the target is not kept, nor reported
                warnings.simplefilter("ignore", Note)
            try:
                encoded, met, smaller = _Image(rgb, scale, rate, backend, coder, tile, overlap, progress,
                                               best and rate.target and len(best.data)).code()
            except BudgetError as exc:
                if rate.downscale is not None:
                    raise
                if scale < DOWNSCALES[-1]:
                    continue
                raise BudgetError(f"{rate.bpp:g} bpp is below what one iteration costs for this image, even coded "
                                  f"at 1/{scale} size ({exc.cost:.4f} bpp)", exc.cost) from None
        if best is not None and not (met and (rate.bpp is not None or len(encoded.data) < len(best.data))):
            break
        best = encoded
        if not smaller:
            break
    if reconstruct:
        best.reconstruction = decode(best.data, None, lambda _: backend, lambda *_: coder, max_pixels=None).pixels
    return best


@dataclass
class _Pass:
    """The chunks of a file, their counts, and what a first pass keeps for the rate control."""

    chunks: container.Chunks
    counts: list[np.ndarray] | None  # each tile's blocks' iteration counts; None: all blocks every iteration
    bits: list[list[np.ndarray]] = field(default_factory=list)  # a first pass's: each tile's bits of each iteration
    recons: list[np.ndarray] = field(default_factory=list)  # a first pass's: each tile's (T+1)×H×W×3 8-bit images after 0…T
    tables: list[np.ndarray] = field(default_factory=list)  # a `quality` first pass's: each tile's d_b(c), c = 0…T
    states: list[dict[int, object]] = field(default_factory=list)  # a target's: each tile's model state after j iterations


class _Image:
    """One image coded at 1/scale size: its tiles and header, the tile loop, and the rate control."""

    def __init__(self, rgb: RGBImage, scale: int, rate: Rate, backend: Backend, coder: BitCoder, tile: int,
                 overlap: int, progress: bool, bound: int | None = None) -> None:
        big_h, big_w = rgb.pixels.shape[:2]
        h, w = -(-big_h // scale), -(-big_w // scale)
        self.original, self.pixels = rgb.pixels, rgb.pixels if scale == 1 else resized(rgb.pixels, w, h)
        self.rate, self.backend, self.coder, self.progress, self.bound = rate, backend, coder, progress, bound or np.inf
        self.boxes = plan_tiles(h, w, tile, overlap)
        self.header = container.Header(
            coder.coder_id, backend.model_id, coder.model_id, w, h, tile, overlap,
            backend.cfg.coded_iterations(rate.iterations), rgb.icc_profile,
            None if rgb.alpha is None else container.pack_alpha(rgb.alpha), precision=backend.precision,
            display=container.pack_display(big_w, big_h) if scale > 1 else None)
        self.budget = None if rate.bpp is None else rate.bpp * big_h * big_w / 8
        self.measured, self.score = {}, rate.scorer(rgb.pixels) if rate.target else None

    def shown(self, image: np.ndarray) -> np.ndarray:  # an 8-bit image at the coded size as a decoder shows it
        return image if image.shape == self.original.shape else resized(image, *self.original.shape[1::-1])

    def measure(self, image: np.ndarray) -> float:
        """The goal's quality of an 8-bit image at the coded size or as shown, each image measured once."""
        key = hashlib.blake2b(np.ascontiguousarray(image), digest_size=16).digest()
        return self.measured[key] if key in self.measured else self.measured.setdefault(key, self.score(self.shown(image)))

    def run(self, first: bool = False) -> _Pass:
        """The tile loop, every block each iteration. A first pass keeps each iteration's bits and image, and stops a tile as many
        iterations past its goal as counts may go (PAST, one or none); `quality`'s: the largest count chosen so far (RESULTS)."""
        p = _Pass(container.Chunks(self.header.iterations), None)
        for i, box in enumerate(tiles.progress(self.boxes, show=self.progress, desc="encoding", unit="tile")):
            self._tile(p, box, first)
            if i + 1 < len(self.boxes):  # not after the last: a caller's next image would fault its pages in again
                release_memory()
        return p

    def _tile(self, p: _Pass, box: TileBox, first: bool) -> None:
        n, original = self.header.iterations, box.crop(self.pixels)
        # past the goal: the adaptive windows' top (MS-SSIM's one; `quality`: the first unchosen); whole iterations: one,
        # for a budget's partial next and a target's other tiles, whose counts may go beyond it; a target's only tile: none
        alone = self.rate.target is not None and not self.rate.adaptive and len(self.boxes) == 1  # a target alone, one tile
        past = (PAST if self.rate.target_ms_ssim is None and self.rate.slope is None else 1) if self.rate.adaptive else 1 - alone
        enc = TileEncoder(self.backend, None if first and self.rate.slope is not None else self.coder,  # `quality`: no sizes
                          np.ascontiguousarray(model_input(self.pixels, box)))  # before its counts are chosen
        recons, rows, size, met, states = [np.full(original.shape, 128, np.uint8)], [], 0, None, {}
        score = self.rate.target and (self.measure if len(self.boxes) == 1 else self.rate.scorer(original))  # one per tile
        for t in range(n):
            segment, bits = enc.step(first or t + 1 < n)  # the last iteration's image: only for the rate control
            p.chunks.add(t, segment, bits)
            if not first:
                continue
            size += len(segment)
            recons.append(to_uint8(enc.pixels(box).copy()))
            if met is None and self.rate.target and self.pixels[..., 0].size <= KEEP_STATES_PIXELS:  # the windows' lows
                states = {j: s for j, s in states.items() if j > t - 2 or j == FLOOR} | {t + 1: enc.state}
            if self.rate.slope is not None:  # `quality`'s goal: the counts chosen on the iterations so far
                rows.append(masked_error(np.stack(recons[-1:] if rows else recons), original))
                met = int(choose([window(np.concatenate(rows), 1, t + 1)], self.rate.slope)[0].max()) - 1
            else:
                met = t if met is None and self._met(score, recons[-1], size) else met
            # a target that one iteration of the image meets is met by the first pass's file alone; a target alone's candidates
            # all hold these iterations, which fall short: none beats a larger size's smallest file (`bound`) they outweigh
            if met is not None and (t >= met + past or met == 0 and self.rate.target and len(self.boxes) == 1) or \
                    alone and size > self.bound and all(self.measure(r) < self.rate.target for r in recons[1:]):
                break
        for rest in range(t + 1, n):
            p.chunks.add(rest, b"", np.zeros_like(bits))
        if first:
            p.bits.append([b for _, b in enc.coded])
            p.recons.append(np.stack(recons))
            p.tables += [np.concatenate(rows)] if rows else []
            p.states.append({j: s for j, s in states.items() if j <= (met if met is not None else t)})

    def coded(self, first: _Pass, counts: list[np.ndarray]) -> _Pass:
        """The chunks of `counts`: each block's first c of the first pass's bits, coded again without the stopped blocks'.
        No model step: a block's later bits beside a stopped one, computed as if it went on, cost no measurable quality."""
        p = _Pass(container.Chunks(self.header.iterations), counts)
        for bits, c in zip(first.bits, counts):
            session = self.coder.session(bits[0].shape)
            for t in range(self.header.iterations):
                mask = c > t
                kept = bits[t] * mask if mask.any() else np.zeros_like(bits[0])  # a stopped block's bits are 0
                p.chunks.add(t, session.encode(kept, None if mask.all() else mask) if mask.any() else b"", kept)
        return p

    def _met(self, score: Callable[[np.ndarray], float] | None, recon: np.ndarray, size: int) -> bool:
        """Whether a tile meets its target by `score` (a tile that is the image: as the image, once) or its budget share."""
        return (score(recon) >= self.rate.target + self.rate.margin[0] if self.rate.target is not None else
                self.budget is not None and size * self.header.width * self.header.height >= self.budget * recon[..., 0].size)

    def whole(self, first: _Pass, k: int) -> list[np.ndarray]:  # k iterations of every block (a tile's last, if fewer)
        return [np.full(-(-np.array(b.shape) // STRIDE), min(k, len(r) - 1), np.uint8) for b, r in zip(self.boxes, first.recons)]

    def compose(self, first: _Pass, counts: list[np.ndarray], decoded: bool = False) -> np.ndarray:
        """The image the first pass shows with each block after its count, or (`decoded`) its file decodes to (coded size)."""
        canvas = Canvas(self.header.height, self.header.width, self.header.overlap)
        for box, recons, bits, states, c in zip(self.boxes, first.recons, first.bits, first.states, counts):
            index = np.repeat(np.repeat(c, STRIDE, 0), STRIDE, 1)[: box.shape[0], : box.shape[1]]
            canvas.add(box, tile_pixels(self.backend, decode_counts(self.backend, states, bits, c), box) if decoded else
                       recons[(index, *np.indices(index.shape))] / np.float32(255) - np.float32(0.5))
        return canvas.result()

    def framed(self, counts: list[np.ndarray] | None) -> container.Header:
        return self.header if counts is None else replace(self.header, blocks=container.pack_blocks(counts))

    def sizes(self, p: _Pass, top: int) -> list[int]:  # the bytes of the file of p's first 1…top iterations
        return container.prefix_sizes(self.framed(p.counts), [(container.join_segments(s), 0) for s in p.chunks.segments[:top]])

    def estimate(self, first: _Pass, counts: list[np.ndarray]) -> float:  # these counts' bytes, from the first pass's
        return container.estimated_size(self.header, first.chunks.segments, counts)

    def file(self, p: _Pass, k: int = 0) -> Encoded:  # p's first k iterations (default: all its counts give)
        k = k or max(int(c.max()) for c in p.counts)
        return Encoded(p.chunks.file(self.framed(p.counts), k), k, None)

    def code(self) -> tuple[Encoded, bool, bool]:
        """The file at this size (a first pass, the counts chosen on it, coded and checked), whether it meets the goal,
        and whether a smaller size might meet it in fewer bytes."""
        n = self.header.iterations
        if not self.rate.chooses:
            return self.file(self.run(), n), True, False
        first = self.run(first=True)
        if self.rate.slope is not None:  # the first pass stopped on `quality`'s tables
            return self.file(self.coded(first, choose([window(d, 1, n) for d in first.tables], self.rate.slope))), True, False
        done = (max if self.rate.target else min)(len(r) - 1 for r in first.recons)  # a target's tiles: each its own
        whole = self._whole(first, done)
        if self.rate.target is not None:
            encoded, quality = self._target(first, whole, done)
            met = quality >= self.rate.target  # then smaller, where this size needs few iterations: a smaller needs more
            return encoded, met, met and (whole or done) <= TRY_SMALLER_UP_TO
        low, high = (1, n) if self.rate.adaptive else (whole, whole + 1)
        counts = search(self._plans(first, whole, [(low, high)])[0], lambda c: self.estimate(first, c) <= 0.98 * self.budget,
                        False)  # its entropy: near
        coded, top = (None, 0) if counts is None else (self.coded(first, counts), int(max(c.max() for c in counts)))
        fit = max((k for k, size in enumerate(self.sizes(coded, top) if top else [], 1) if size <= self.budget), default=0)
        encoded = self.file(coded, fit) if fit > whole else self.file(first, whole)
        return encoded, True, REDUCE_BELOW * container.prefix_sizes(*container.read(encoded.data))[0] > self.budget

    def _whole(self, first: _Pass, done: int) -> int | None:
        """The first pass's whole iterations that meet the goal (a target's fewest, a budget's most), or None."""
        if self.rate.target is not None:
            return next((k for k in range(1, done + 1)
                         if self.measure(self.compose(first, self.whole(first, k))) >= self.rate.target), None)
        sizes = self.sizes(first, done)
        self.rate.check_budget(sizes[0], self.original[..., 0].size)
        return max(k for k, size in enumerate(sizes, 1) if size <= self.budget)

    def _plans(self, first: _Pass, k: int, windows: list[tuple[int, int]]) -> list[list[np.ndarray]]:
        """Each window's tables, each tile's d_b(c): squared error, or an MS-SSIM target's change from k − 1 (ms_ssim_change)."""
        if self.rate.target_ms_ssim is None:
            tables = [squared_error(r, b.crop(self.pixels)) for r, b in zip(first.recons, self.boxes)]
        else:  # by the gradients at the whole iterations the windows span
            score, span = self.score if self.pixels is self.original else self.rate.scorer(self.pixels), np.array(windows)
            grads = {c: score.gradient(self.compose(first, self.whole(first, c))) for c in range(span.min(), span.max() + 1)}
            tables = [ms_ssim_change(r, min(max(k - 1, 1), len(r) - 1), {min(c, len(r) - 1): b.crop(g) for c, g in grads.items()})
                      for r, b in zip(first.recons, self.boxes)]  # a tile that stopped before k − 1: from its last
        return [[window(d, lo, hi) for d in tables] for lo, hi in windows]

    def _target(self, first: _Pass, whole: int | None, done: int) -> tuple[Encoded, float]:
        """The smallest file found that meets the target: the first pass's k whole iterations, or the counts `meet` finds
        in a window: k − 1 or k (a partial last iteration) and, with `adaptive`, more (for MS-SSIM up to the first pass's k + 1,
        and FLOOR at least: a flat block coded once shows its square). Cheapest estimate first, each checked
        on its decoding while its estimate beats the best file yet (any size), coded if it passes, else aimed once more."""
        rate, k = self.rate, whole or done
        full = self.file(first, k) if k < min(map(len, first.recons)) else self.file(self.coded(first, self.whole(first, k)))
        best = full, self.measure(self.compose(first, self.whole(first, k)))
        own = (1, self.header.iterations) if rate.target_ms_ssim is None else (FLOOR if k > FLOOR else 1, k + 1)
        windows = [own, (k - 1, k)] if rate.adaptive else [(k - 1, k)]
        plans = self._plans(first, k, windows) if k == whole > 1 else []

        def aimed(i: int, aim: float) -> list[np.ndarray] | None:
            return meet(plans[i], lambda c: self.measure(self.compose(first, c)), aim, rate.margin[1])

        chosen = [aimed(i, rate.target + rate.margin[0]) for i in range(len(plans))]
        tries = sorted((i for i, c in enumerate(chosen) if c is not None), key=lambda i: self.estimate(first, chosen[i]))
        for i, again in [(i, again) for i in tries for again in (True, False)]:
            if chosen[i] is None or self.estimate(first, chosen[i]) >= min(len(best[0].data), self.bound):
                continue
            got = self.measure(self.compose(first, chosen[i], decoded=True))  # what its file decodes to
            if got >= rate.target:
                best, chosen[i] = min(best, (self.file(self.coded(first, chosen[i])), got), key=lambda b: len(b[0].data)), None
            elif again:
                aim = self.measure(self.compose(first, chosen[i]))
                chosen[i] = aimed(i, aim + 1.5 * (aim - got))
        rate.check_reached(best[0].iterations, best[1])
        return best


def compress(image: RGBImage | Image.Image | np.ndarray | str | Path, rate: Rate | None = None, *, alpha: str = "keep",
             background: str | tuple[int, ...] = "white", **options) -> bytes:
    """Compress an image (a path, a PIL image or an H×W×3 or ×4 uint8 array) to .rnc bytes, at the
    rate `rate` or the rate options given as keywords (`rate.Rate`), with encode's other options.
    Transparency is kept losslessly, or with `alpha="drop"` flattened onto `background`."""
    return encode(as_rgb(image, alpha, background), rate, **options).data
