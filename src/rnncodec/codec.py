"""The pipeline: image → tiles → pad → encoder → binarizer → bits → payload coder → container, and back."""
from __future__ import annotations

import contextlib
import ctypes
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from . import container
from .entropy import BitCoder, CoderSession, explain_failure
from .errors import BudgetError, FormatError, Note, OptionError
from .image import DEFAULT_MAX_PIXELS, DOWNSCALES, RGBImage, from_pil, read_image, resized
from .models.rnn_codec import STRIDE, RNNCodec, Step
from .precision import resolve, resolve_device, resolve_for
from .quality import gaussian_window, ms_ssim_gradient, ms_ssim_rgb, psnr_rgb, ssim_map
from .tiles import DEFAULT_OVERLAP, DEFAULT_TILE, Canvas, TileBox, check_tiling, model_input, plan_tiles, to_uint8
from .zoo import ImageModel, coder_by_id, default_coder, image_model_by_id, load_image_model, on_device


@dataclass
class Encoded:
    data: bytes
    iterations: int
    reconstruction: np.ndarray | None  # H×W×3 uint8 a decoder of `data` must produce (if asked for)


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


@lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc; elsewhere there is no such call
    except (AttributeError, OSError):
        return None


def _release_memory() -> None:
    """Hand the heap's freed pages back to the system between tiles. glibc keeps them, and the
    next tile's activations land beside them rather than in them, so a large image's peak memory
    crept up tile by tile (issue 14: 6000×4000 pixels must encode within 1 GiB)."""
    if (trim := _malloc_trim()) is not None:
        trim(0)


def _tile_pixels(recon: torch.Tensor, box: TileBox) -> np.ndarray:
    """A tile's reconstruction without its padding, H×W×3 float in [−0.5, 0.5]."""
    return recon[0].permute(1, 2, 0).cpu().numpy()[: box.shape[0], : box.shape[1]]


@dataclass(frozen=True)
class RateControl:
    """When encoding stops: after `iterations`, when the real size (header included) fills `bpp`,
    or at the first iteration whose reconstruction reaches `psnr` (dB) or `ms_ssim`; or, with
    `quality`, block by block where one more iteration stops paying for itself (`slope`). At most
    one; with none, after `iterations` (default: all). For an image of one tile, the last iteration
    of `bpp`, `psnr` and `ms_ssim` codes only some blocks (`_Encoding`)."""

    iterations: int | None = None
    bpp: float | None = None
    psnr: float | None = None
    ms_ssim: float | None = None
    quality: float | None = None  # 0–100: a constant rate–distortion slope, as a JPEG quality is roughly one
    adaptive: bool | None = None  # spatially adaptive: each block its own iteration count (`_Allocation`); None: with a target
    reference: np.ndarray | None = None  # for an image coded at reduced size: the original, which targets are judged on

    def __post_init__(self) -> None:
        if sum(v is not None for v in (self.iterations, self.bpp, self.psnr, self.ms_ssim, self.quality)) > 1:
            raise OptionError("give one of iterations, bpp, target_psnr, target_ms_ssim or quality")
        if self.quality is not None and not 0 <= self.quality <= 100:
            raise OptionError("quality lies between 0 and 100")
        if self.bpp is not None and self.bpp <= 0:
            raise OptionError("bpp must be positive")
        if self.ms_ssim is not None and not 0 < self.ms_ssim < 1:
            raise OptionError("a target MS-SSIM lies between 0 and 1")
        if self.psnr is not None and not self.psnr > 0:
            raise OptionError("a target PSNR is a positive number of dB")
        if self.quality is not None and self.adaptive is False:
            raise OptionError("quality is spatially adaptive by definition: each block stops on its own")
        if self.adaptive and self.psnr is None and self.ms_ssim is None and self.quality is None:
            raise OptionError("adaptive bit rates need a quality target (target_psnr or target_ms_ssim) or a quality")
        if self.adaptive is None:  # the default wherever it can be: it codes a target for less (docs/RESULTS.md)
            object.__setattr__(self, "adaptive", self.targets_quality or self.quality is not None)

    @property
    def slope(self) -> float | None:
        """λ for `quality`: a block gets one more iteration while that lowers its mean squared error
        (pixels in [−0.5, 0.5]) by more than λ. Quality 0 is 10⁻², where most blocks stop after one
        iteration; 100 is 10⁻⁷, where almost none stops before the model's last."""
        return None if self.quality is None else 10.0 ** (-2.0 - 5.0 * self.quality / 100)

    @property
    def target(self) -> float | None:
        return self.psnr if self.psnr is not None else self.ms_ssim

    @property
    def targets_quality(self) -> bool:
        return self.target is not None

    def measure(self, original: np.ndarray, recon: np.ndarray) -> float:
        """The targeted quality of an 8-bit reconstruction; of an image coded at reduced size, as the
        decoder shows it (upscaled) against the original."""
        if self.reference is not None:
            original, recon = self.reference, resized(recon, self.reference.shape[1], self.reference.shape[0])
        return psnr_rgb(original, recon) if self.psnr is not None else ms_ssim_rgb(original, recon)

    def check_reached(self, iterations: int, quality: float) -> None:
        """A target the model cannot reach is no error: the file has all it can give, and says so."""
        if quality < self.target:
            name = "PSNR" if self.psnr is not None else "MS-SSIM"
            warnings.warn(f"target {name} {self.target:g} out of reach: stopped at {iterations} iterations at "
                          f"{quality:.4f}", Note, stacklevel=3)

    def check_budget(self, size: int, pixels: int) -> None:
        """A budget below one iteration is an error: no file can meet it."""
        if size * 8 / pixels > self.bpp:
            raise BudgetError(f"{self.bpp:g} bpp is below what one iteration costs for this image "
                              f"({size * 8 / pixels:.3f} bpp)", size * 8 / pixels)


TRY_SMALLER_UP_TO = 3  # a target that this many full-size iterations reach is tried at smaller sizes too (docs/RESULTS.md)
REDUCE_BELOW = 1.25  # a budget under this many first iterations' cost is coded at a smaller size (`_Coding.within_budget`)


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
    target_psnr: float | None = None,
    target_ms_ssim: float | None = None,
    precision: str = "auto",
    adaptive: bool | None = None,
    downscale: int | None = None,
    quality: float | None = None,
) -> Encoded:
    """Encode an image, iteration by iteration, until the rate control says stop (`RateControl`).

    An image of one tile stops computing as soon as its rate or quality is reached. Over several
    tiles every tile runs to the most iterations allowed and the file is cut after: the quality of
    the whole is then judged from the tiles' (PSNR from their summed squared error, MS-SSIM as
    their area-weighted mean), which is close to, not exactly, the decoded image's.

    With `reconstruct`, also return the encoder's own reconstruction; that keeps a full-size
    canvas per iteration, so it is off for plain compression, whose memory stays per tile.
    `precision`: the image model's arithmetic (`precision.PRECISIONS`; auto: bf16 where native).
    `adaptive` (with a quality target, and the default there): each 16×16 block gets its own number
    of iterations, where they buy the most quality (spatially adaptive bit rates, after Johnston et
    al. 2018; `_Allocation`): on Kodak 7.9 % (MS-SSIM) and 16 % (PSNR) less rate than the target
    alone, for 4–7× the encode time; False codes the target alone, faster. An image of one tile
    also codes the target alone and keeps the smaller file, so adaptive never costs more.
    `downscale` (one of DOWNSCALES) codes the image at 1/downscale of its width and height, which
    the decoder upscales: rates below what one full-size iteration costs. By default (None), full
    size, except for a `bpp` under 1.25 full-size iterations (then the largest size whose first
    iteration takes under 1/1.25 of it), and a target the first three full-size iterations pass
    (then the smallest file of the sizes that reach it).
    `quality` (0–100) stops each block where one more iteration lowers its squared error by less
    than a fixed amount (`RateControl.slope`): no target per image, the same trade everywhere,
    as a JPEG quality makes it; best for PSNR per byte over many images.
    """
    rate = RateControl(iterations, bpp, target_psnr, target_ms_ssim, quality, adaptive)
    if downscale is not None and downscale not in DOWNSCALES:
        raise OptionError(f"downscale is one of {', '.join(map(str, DOWNSCALES))}")
    rgb = _as_rgb(image)
    model = model or load_image_model()
    coder = coder or default_coder(model)
    check_tiling(tile, overlap)
    coding = _Coding(rgb, rate, model, coder, tile, overlap, resolve(precision), reconstruct, progress)
    if downscale is not None:
        return coding.at(downscale)[0]
    if bpp is not None:
        return coding.within_budget()
    best, quality = coding.at(1)
    if not rate.targets_quality or quality is None or quality < rate.target or best.iterations > TRY_SMALLER_UP_TO:
        return best
    for scale in DOWNSCALES[1:]:  # a target the first full-size iterations pass: fewer bits at a smaller size?
        if not coding.one_tile(scale):
            break
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Note)  # a smaller size that misses the target is not kept, nor reported
            smaller, quality = coding.at(scale)
        if quality is None or quality < rate.target or len(smaller.data) >= len(best.data):
            break
        best = smaller
    return best


class _Coding:
    """One image's encode at one size or another (`encode`'s `downscale`)."""

    def __init__(self, rgb: RGBImage, rate: RateControl, model: ImageModel, coder: BitCoder, tile: int, overlap: int,
                 arithmetic: str, reconstruct: bool, progress: bool) -> None:
        self.rgb, self.rate, self.model, self.coder, self.tile, self.overlap = rgb, rate, model, coder, tile, overlap
        self.arithmetic, self.reconstruct, self.progress = arithmetic, reconstruct, progress
        self.n_iter = model.cfg.coded_iterations(rate.iterations)
        self.alpha = None if rgb.alpha is None else container.pack_alpha(rgb.alpha)  # at the display size, any scale

    def size(self, scale: int) -> tuple[int, int]:
        """(height, width) coded at 1/scale size."""
        h, w = self.rgb.pixels.shape[:2]
        return -(-h // scale), -(-w // scale)

    def one_tile(self, scale: int) -> bool:
        return len(plan_tiles(*self.size(scale), self.tile, self.overlap)) == 1

    def within_budget(self) -> Encoded:
        """The file that fills the budget at the largest size whose first iteration takes under
        1/REDUCE_BELOW of it: just above one iteration's cost, a smaller size's several iterations
        look better than one and a part (docs/RESULTS.md, "Below one iteration")."""
        budget = self.rate.bpp * self.rgb.pixels.shape[0] * self.rgb.pixels.shape[1] / 8
        for scale in DOWNSCALES[:-1]:
            with contextlib.suppress(BudgetError):
                encoded, _ = self.at(scale)
                if REDUCE_BELOW * container.prefix_sizes(*container.read(encoded.data))[0] <= budget:
                    return encoded
        try:
            return self.at(DOWNSCALES[-1])[0]
        except BudgetError as exc:
            raise BudgetError(f"{self.rate.bpp:g} bpp is below what one iteration costs for this image, even coded at "
                              f"1/{DOWNSCALES[-1]} size ({exc.cost:.4f} bpp)", exc.cost) from None

    def at(self, scale: int) -> tuple[Encoded, float | None]:
        """The file coded at 1/scale size, with the quality its rate control measured (None where
        it measured none)."""
        h, w = self.size(scale)
        pixels, rate, display = self.rgb.pixels, self.rate, None
        if scale > 1:
            if rate.targets_quality and not self.one_tile(scale):
                raise OptionError("a quality target at reduced size needs the reduced image to fit one tile (--tile)")
            pixels, rate = resized(pixels, w, h), replace(rate, reference=pixels)
            display = container.pack_display(self.rgb.pixels.shape[1], self.rgb.pixels.shape[0])
        boxes = plan_tiles(h, w, self.tile, self.overlap)
        header = container.Header(self.coder.coder_id, self.model.model_id, self.coder.model_id, w, h, self.tile,
                                  self.overlap, self.n_iter, self.rgb.icc_profile, self.alpha, precision=self.arithmetic,
                                  display=display)
        bf16 = self.arithmetic == "bf16"
        run = _code(pixels, header, rate, boxes, self.model, self.coder, bf16, self.reconstruct, self.progress)
        encoded, quality = run.finish(), run.quality if rate.targets_quality else None
        if run.allocated and len(boxes) == 1:  # never more than the target alone: on an image whose first
            # iterations move it far, mixes of counts can cost more for the target (docs/RESULTS.md)
            alone = _code(pixels, header, replace(rate, adaptive=False), boxes, self.model, self.coder, bf16,
                          self.reconstruct, self.progress)
            other = alone.finish()
            if len(other.data) < len(encoded.data):
                encoded, quality = other, alone.quality
        if display and encoded.reconstruction is not None:
            encoded.reconstruction = resized(encoded.reconstruction, *self.rgb.pixels.shape[1::-1])
        return encoded, quality


def _code(pixels: np.ndarray, header: container.Header, rate: RateControl, boxes: list[TileBox], model: ImageModel,
          coder: BitCoder, bf16: bool, reconstruct: bool, progress: bool) -> _Encoding:
    """Every tile through one encoding, before `finish` cuts the file."""
    run = _Encoding(pixels, header, rate, len(boxes) > 1, reconstruct)
    with torch.inference_mode():
        for i, box in enumerate(tqdm(boxes, desc="encoding", unit="tile", disable=not progress, delay=1.0)):
            run.code_tile(model, coder, box, bf16)
            if i + 1 < len(boxes):  # not after the last: a caller's next image would fault its pages in again
                _release_memory()
    return run


class _Encoding:
    """One encode's state: each iteration's tile segments and bits CRC, and what the rate control
    watches. An image of one tile is the whole image, so its tile stops as soon as the rate
    control says so; over several tiles, each runs to the end and `finish` cuts the file."""

    def __init__(self, pixels: np.ndarray, header: container.Header, rate: RateControl, tiled: bool,
                 reconstruct: bool) -> None:
        self.pixels, self.header, self.rate, self.tiled, self.reconstruct = pixels, header, rate, tiled, reconstruct
        self.shown = header.display_size[0] * header.display_size[1]  # the pixels a rate is counted over
        self.budget = None if rate.bpp is None else rate.bpp * self.shown / 8
        self._start()

    def _start(self) -> None:
        n, h, w = self.header.iterations, self.header.height, self.header.width
        self.chunks = container.Chunks(n)
        self.segments = self.chunks.segments  # what the rate control sizes
        self.canvases = [Canvas(h, w, self.header.overlap) for _ in range(n)] if self.reconstruct else []
        self.whole = _TiledQuality(self.rate, n)
        self.counts: list[np.ndarray] = []  # each tile's blocks' iteration counts
        self.blocks = self.rate.adaptive  # whether the file stores them
        self.keep, self.quality = n, 0.0
        self.allocated = False  # whether an image of one tile met its target with an allocation's counts

    def code_tile(self, model: ImageModel, coder: BitCoder, box: TileBox, bf16: bool, raise_aim: float = 0.0,
                  tries: int = 3) -> None:
        """Code one tile. With `adaptive`, `tries` is how many allocations may still be tried, each
        aiming higher than the last fell short; at none left, the target alone codes the tile."""
        n = self.header.iterations
        original = self.pixels[box.y0 : box.y1, box.x0 : box.x1]
        x = torch.from_numpy(model_input(self.pixels, box))
        alloc = None
        if self.rate.adaptive and tries > 0:
            margin = 0.03 if self.rate.psnr is not None else 0.0002  # what the coding pass may lose to the prediction
            aim = self.rate.target + margin + raise_aim if self.rate.targets_quality else None
            alloc = _Allocation(model.net, x, original, lambda recon: self._measure(original, recon, box), self.rate, n,
                                bf16, aim)
            if not alloc.reachable:  # aimed past what the model reaches: the target alone lands what can be
                alloc = None
        counts = alloc.counts if alloc else np.full((x.shape[2] // STRIDE, x.shape[3] // STRIDE), n, np.uint8)
        self.counts.append(counts)
        last = int(counts.max())
        # a fixed number of iterations, nothing reconstructed: the last one's x̂ is never looked at
        bits_only = not (self.rate.targets_quality or self.budget is not None or alloc or self.canvases)
        # the tile's pixels only where something looks at them: a canvas, or a target judged over tiles
        pixels_wanted = self.canvases or (self.tiled and self.rate.targets_quality)
        session, at = None, model.net.begin(x)
        for t in range(last):
            before = at
            bits, at = model.net.step(x, before, bf16, alloc.mask(t) if alloc else None,
                                      decode=not (bits_only and t + 1 == last))
            reached = False
            if not self.tiled and self.rate.targets_quality and not alloc:
                quality, self.quality = self.quality, self._measure(original, at.recon, box)
                reached = self.quality >= self.rate.target
                if reached and t > 0:
                    bits, at = self._finer_last(model.net, x, original, box, before, (bits, at), quality, counts, bf16)
            b = (bits[0] > 0).to(torch.uint8).numpy()
            session = session or coder.session(b.shape)
            coded = counts > t
            segment = session.encode(b, None if coded.all() else coded)
            if self._overflows(t, segment):
                session.undo()
                part = self._fit_budget(model.net, x, before, at, counts, session, bf16, len(segment))
                if part is None:
                    self.keep = t
                    return
                (bits, at), reached = part, True
                b = (bits[0] > 0).to(torch.uint8).numpy()
                segment = session.encode(b, counts > t)  # fewer blocks now: `_fit_budget` cut the counts
            self.chunks.add(t, segment, b)
            pixels = None if at.recon is None or not pixels_wanted else _tile_pixels(at.recon.float(), box)
            if self.canvases:
                self.canvases[t].add(box, pixels)
            if self.tiled:
                self.whole.add(t, original, pixels)
                for rest in range(t + 1, n) if t + 1 == last else ():  # every block has stopped: no more bits
                    self.chunks.add(rest, b"", np.zeros_like(b))
                    self.whole.add(rest, original, pixels)
                    if self.canvases:
                        self.canvases[rest].add(box, pixels)
            elif reached:
                self.keep = t + 1
                return
        if not alloc or self.tiled:
            return
        self.keep = last
        if not self.rate.targets_quality:  # `quality`: the counts alone are the rate control, no target to check
            return
        self.quality = self._measure(original, at.recon, box)
        short = self.rate.target - self.quality
        if short > 0:  # the coding pass fell short: aim higher, or at the last try let the target alone land it
            self._start()
            self.code_tile(model, coder, box, bf16, raise_aim + 2 * short, tries - 1)
        else:
            self.allocated = True

    def _measure(self, original: np.ndarray, recon: torch.Tensor, box: TileBox) -> float:
        return self.rate.measure(original, to_uint8(_tile_pixels(recon.float(), box).copy()))

    def _overflows(self, t: int, segment: bytes) -> bool:
        """For an image of one tile with a budget: whether iteration t, coded whole as `segment`,
        would pass it. Not even the first fitting is an error."""
        if self.tiled or self.budget is None or _size(self.header, self.segments[:t] + [[segment]]) <= self.budget:
            return False
        if t == 0:
            self.rate.check_budget(_size(self.header, [[segment]]), self.shown)
        return True

    def _finer_last(self, net: RNNCodec, x: torch.Tensor, original: np.ndarray, box: TileBox, before: Step,
                    full: tuple[torch.Tensor, Step], quality_before: float, counts: np.ndarray,
                    bf16: bool) -> tuple[torch.Tensor, Step]:
        """The iteration that reaches the target codes only the blocks it needs to: those it helps
        most, as few as bring the whole image to the target. Whole iterations step the quality by
        up to 0.03 MS-SSIM or 1.5 dB; this lands close above it, for fewer bits. The choice is
        made on x̂_(t−1) and x̂_t mixed block by block, then checked by redoing the iteration with
        only those blocks (their neighbours' zero bits change them a little); if the check falls
        short, more blocks, and at worst the whole iteration."""
        last = _BlockOrder(self.rate.psnr is not None, x, before, full[1], counts)

        def mixed(k: int) -> float:
            keep = F.interpolate(last.mask(k), scale_factor=STRIDE, mode="nearest")
            return self._measure(original, keep * full[1].recon + (1 - keep) * before.recon, box)

        size, target = last.size, self.rate.target
        aim = target + 0.02 * (self.quality - quality_before)  # a little above: the check sees the neighbours' zero bits
        lo, hi, q_lo, q_hi = 0, size, quality_before, self.quality
        moved: list[bool] = []
        close = 0.05 * (self.quality - quality_before)  # near enough above the aim to stop searching
        for _ in range(10):  # regula falsi on the blocks' summed gain, which the quality roughly follows;
            if hi - lo <= 1 or q_hi - aim <= close:  # a bisection when it stalls on one side
                break
            goal = last.cumulative[lo] + (aim - q_lo) / max(q_hi - q_lo, 1e-12) * (last.cumulative[hi] - last.cumulative[lo])
            k = int(np.clip(np.searchsorted(last.cumulative, goal), lo + 1, hi - 1))
            if moved[-2:] in ([True, True], [False, False]):
                k = (lo + hi) // 2
            if (q := mixed(k)) >= aim:
                hi, q_hi = k, q
            else:
                lo, q_lo = k, q
            moved.append(hi == k)
        for k in dict.fromkeys((hi, hi + size // 32, hi + size // 8, (hi + size) // 2)):
            if k >= size:
                break
            bits, at = net.step(x, before, bf16, last.mask(k))
            if (quality := self._measure(original, at.recon, box)) >= target:
                last.keep_only(k)
                self.quality, self.blocks = quality, True
                return bits, at
        return full

    def _fit_budget(self, net: RNNCodec, x: torch.Tensor, before: Step, after: Step, counts: np.ndarray,
                    session: CoderSession, bf16: bool, whole: int) -> tuple[torch.Tensor, Step] | None:
        """When iteration t does not fit whole (`whole` bytes), code only the blocks it helps most
        (in squared error), as many as the budget's rest holds: a file that fills its budget instead
        of stopping up to 0.125 bpp short. Each guess is coded and measured, then undone (the caller
        codes the one that fits); None when not even a few blocks fit."""
        t = before.t
        spent = _size(self.header, self.segments[:t])
        overhead = _size(self.header, self.segments[:t] + [[b""]]) - spent
        last = _BlockOrder(True, x, before, after, counts)
        k = int(0.97 * (self.budget - spent - overhead) / (whole / last.size))
        for _ in range(4):
            k = min(k, last.size - 1)
            if k < 1:
                return None
            bits, at = net.step(x, before, bf16, last.mask(k))
            trial = last.counts_with(k)
            segment = session.encode((bits[0] > 0).to(torch.uint8).numpy(), trial > t)
            session.undo()
            header = replace(self.header, blocks=container.pack_blocks([trial]))
            size = _size(header, self.segments[:t] + [[segment]])
            if size <= self.budget:
                last.keep_only(k)
                self.blocks = True
                return bits, at
            fixed = _size(header, self.segments[:t] + [[b""]])  # all but this iteration's bits
            k = int(0.97 * k * (self.budget - fixed) / max(size - fixed, 1))
        return None

    def finish(self) -> Encoded:
        """The file, cut where the rate control says (over several tiles, decided here)."""
        header, n = self.header, self.header.iterations
        if self.tiled and self.budget is not None:
            self.rate.check_budget(_size(header, self.segments[:1]), self.shown)
            self.keep = next((t for t in range(1, n) if _size(header, self.segments[: t + 1]) > self.budget), n)
        elif self.tiled and self.rate.targets_quality:
            self.keep, self.quality = self.whole.first_reaching()
        if self.rate.targets_quality:
            self.rate.check_reached(self.keep, self.quality)
        if self.blocks:
            header = replace(header, blocks=container.pack_blocks(self.counts))
        recon = self.canvases[self.keep - 1].result() if self.canvases else None
        return Encoded(self.chunks.file(header, self.keep), self.keep, recon)


class _BlockOrder:
    """The blocks still coded in iteration t (`counts` > t), those the iteration improves most
    first: in squared error, or in SSIM. For a last iteration that codes only some of them."""

    def __init__(self, squared_error: bool, x: torch.Tensor, before: Step, after: Step, counts: np.ndarray) -> None:
        if squared_error:
            quality = [-F.avg_pool2d((x - r.float()).square().mean(1, keepdim=True), STRIDE)
                       for r in (before.recon, after.recon)]
        else:
            window = gaussian_window()
            quality = [F.avg_pool2d(ssim_map(x, r.float().clamp(-0.5, 0.5), window).mean(1, keepdim=True), STRIDE)
                       for r in (before.recon, after.recon)]
        self.t, self.counts, self.may = before.t, counts, counts > before.t
        gains = (quality[1] - quality[0])[0, 0].numpy()[self.may]
        self.order = np.flatnonzero(self.may)[np.argsort(-gains, kind="stable")]
        self.size = len(self.order)
        self.cumulative = np.concatenate([[0.0], np.cumsum(np.maximum(np.sort(gains)[::-1], 0))])

    def mask(self, k: int) -> torch.Tensor:
        """The k first blocks, as the model's 1×1×h×w mask."""
        m = np.zeros(self.counts.size, bool)
        m[self.order[:k]] = True
        return torch.from_numpy(m.reshape(self.counts.shape))[None, None].float()

    def counts_with(self, k: int) -> np.ndarray:
        """The counts if iteration t codes the k first blocks only: the others' end at t."""
        counts = self.counts.copy()
        counts[self.may & ~self.mask(k)[0, 0].numpy().astype(bool)] = self.t
        return counts

    def keep_only(self, k: int) -> None:
        self.counts[...] = self.counts_with(k)


def _size(header: container.Header, segments: list[list[bytes]]) -> int:
    """Bytes of the file holding these iterations' tile segments."""
    return container.prefix_sizes(header, [(container.join_segments(seg), 0) for seg in segments])[-1]


class _Allocation:
    """Spatially adaptive bit rates for one tile (after Johnston et al. 2018): each 16×16 block's
    iteration count, chosen before the tile is coded.

    A first pass codes every block until the tile reaches the aim, and a few iterations past it;
    a block's reconstruction after c iterations is then taken from it (`compose`). The counts are
    the fewest block-iterations found whose composition meets the aim:
    - PSNR: the squared error adds up over blocks, so counts minimising d_b(c) + λ·c block by
      block, for the largest λ that meets the aim, are that optimum (a bisection on log λ).
    - A `quality` gives λ itself (`RateControl.slope`), with no aim: the first pass runs every
      iteration, and the same counts follow in one step. One λ for every block of every image is
      what makes the mean of many files best for their mean rate, the way one JPEG quality is.
    - MS-SSIM pools contrast and structure over windows and five scales, and does not add up
      over blocks: of the block proxies tried in its place (per-block SSIM, a local-variance-
      normalised error, a 4×4-averaged error), the best still cost 3.8 % more rate than whole
      iterations on Kodak. So a local search on the real MS-SSIM, from one iteration fewer than
      the uniform count that meets the aim: each round
      prices one iteration more and one fewer in every block by MS-SSIM's gradient, moves each
      block by one at most (up where the gain passes λ, else down where the loss is under it),
      bisects λ on the composition's real MS-SSIM, and keeps the move while it saves
      block-iterations. Moves of two did worse on training images: the gradient does not hold
      that far.
    The coding pass lands close to the composed prediction (stopped blocks keep their pixels;
    their zero bits change their neighbours a little), so the aim is a little above the target."""

    PAST = 4  # first-pass iterations after the one that reaches the target: the counts' headroom
    ROUNDS = 8  # of the MS-SSIM search, at most; most stop sooner, when a round saves nothing

    def __init__(self, net: RNNCodec, x: torch.Tensor, original: np.ndarray, measure: Callable[[torch.Tensor], float],
                 rate: RateControl, iterations: int, bf16: bool, aim: float | None) -> None:
        recons, at, reached = [torch.zeros_like(x)], net.begin(x), None
        while at.t < iterations and (reached is None or at.t < reached + self.PAST):
            _, at = net.step(x, at, bf16)
            recons.append(at.recon.float().clamp(-0.5, 0.5))
            if reached is None and aim is not None and measure(recons[-1]) >= aim:
                reached = at.t
        self.recons = torch.cat(recons)  # (T+1)×3×H×W
        if rate.slope is not None or rate.psnr is not None:  # each block's mean squared error after c iterations
            self.errors = torch.stack([F.avg_pool2d((x - r).square().mean(1, keepdim=True), STRIDE)[0, 0]
                                       for r in recons]).numpy()
            self.errors[0] = np.inf  # every block gets an iteration
        if rate.slope is not None:
            self.reachable, self.counts = True, self._by_slope(rate.slope).astype(np.uint8)
            return
        self.reachable = reached is not None
        self.counts = np.full((x.shape[2] // STRIDE, x.shape[3] // STRIDE), reached or iterations, np.uint8)
        if not self.reachable:
            return

        def fits(counts: np.ndarray) -> bool:
            return measure(self.compose(counts)) >= aim

        if rate.psnr is not None:
            best = _largest_fitting(lambda log_lam: self._by_slope(10.0**log_lam), fits, -12.0, 2.0, 12)
            self.counts = self.counts if best is None else best.astype(np.uint8)
        else:
            # every block two iterations, unless two whole ones pass the target: a flat block coded
            # once shows its square, which MS-SSIM sees
            floor = 2 if reached > 2 else 1
            self._search(original, fits, floor, max(reached - 1, floor))

    def _search(self, original: np.ndarray, fits: Callable[[np.ndarray], bool], floor: int, start: int) -> None:
        """The MS-SSIM local search (class docstring), from one iteration fewer than the uniform
        counts that fit: its first round adds where iterations are worth most, as a partial last
        iteration would, so that a target between two whole iterations lands close."""
        c, found = np.full(self.counts.shape, start, np.int64), None
        for _ in range(self.ROUNDS):
            better = self._round(original, c, fits, floor)
            if better is None or (found is not None and better.sum() >= found.sum()):
                break
            c = found = better
        if found is not None:
            self.counts = found.astype(np.uint8)

    def _round(self, original: np.ndarray, c: np.ndarray, fits: Callable[[np.ndarray], bool],
               floor: int) -> np.ndarray | None:
        """One round of the search: counts at most one away from c, or None if none fits."""
        top, now = len(self.recons) - 1, self.compose(c)
        slope = ms_ssim_gradient(original, now)

        def worth(step: int) -> np.ndarray:
            """Each block's first-order change in MS-SSIM with `step` iterations more."""
            change = slope * (self.compose(np.clip(c + step, 1, top)) - now)
            return F.avg_pool2d(change.sum(1, keepdim=True), STRIDE)[0, 0].numpy()

        gain = np.where(c < top, worth(1), 0.0)
        loss = np.where(c > floor, -worth(-1), np.inf)

        def moved(log_lam: float) -> np.ndarray:
            up = gain > 10.0**log_lam
            return c + up - (~up & (loss < 10.0**log_lam))

        return _largest_fitting(moved, fits, -12.0, -2.0, 9)

    def _by_slope(self, lam: float) -> np.ndarray:
        """Each block's count minimising d_b(c) + λ·c over the first pass (d_b: `errors`)."""
        return np.argmin(self.errors + lam * np.arange(len(self.errors))[:, None, None], axis=0)

    def compose(self, counts: np.ndarray) -> torch.Tensor:
        """The first pass's reconstruction of each block after its count of iterations."""
        idx = torch.from_numpy(np.kron(counts, np.ones((STRIDE, STRIDE), np.uint8))).long()
        return torch.gather(self.recons, 0, idx[None, None].expand(1, 3, *idx.shape))

    def mask(self, t: int) -> torch.Tensor | None:
        """The blocks coded at iteration t, as the model's 1×1×h×w mask (None at t = 0: all)."""
        return None if t == 0 else torch.from_numpy(self.counts > t)[None, None].float()


def _largest_fitting(counts_at: Callable[[float], np.ndarray], fits: Callable[[np.ndarray], bool], lo: float,
                     hi: float, steps: int) -> np.ndarray | None:
    """`counts_at(log λ)` for about the largest λ in [lo, hi] whose counts fit (a bisection: fewer
    iterations as λ grows); None when no λ tried fits."""
    best = None
    for _ in range(steps):
        mid = (lo + hi) / 2
        counts = counts_at(mid)
        lo, hi, best = (mid, hi, counts) if fits(counts) else (lo, mid, best)
    return best


class _TiledQuality:
    """The quality of the whole image after each iteration, from its tiles: PSNR from their summed
    squared error, MS-SSIM as their area-weighted mean (overlaps counted in each tile)."""

    def __init__(self, rate: RateControl, iterations: int) -> None:
        self.rate = rate
        self.sse, self.ms_ssim, self.pixels = np.zeros(iterations), np.zeros(iterations), np.zeros(iterations)

    def add(self, t: int, original: np.ndarray, pixels: np.ndarray | None) -> None:
        if not self.rate.targets_quality or pixels is None:
            return
        decoded = to_uint8(pixels.copy())
        area = decoded.shape[0] * decoded.shape[1]
        self.pixels[t] += area
        self.sse[t] += np.sum((decoded.astype(np.float64) - original) ** 2)
        if self.rate.ms_ssim is not None:
            self.ms_ssim[t] += ms_ssim_rgb(original, decoded) * area

    def first_reaching(self) -> tuple[int, float]:
        """The first iteration count whose quality meets the target (else all), with that quality."""
        if self.rate.psnr is not None:
            quality = 10 * np.log10(255.0**2 * 3 * self.pixels / np.maximum(self.sse, 1e-9))
        else:
            quality = self.ms_ssim / self.pixels
        keep = next((t + 1 for t in range(len(quality)) if quality[t] >= self.rate.target), len(quality))
        return keep, float(quality[keep - 1])


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
    data: bytes | BinaryIO,
    iterations: int | None = None,
    model_lookup: Callable[[bytes], ImageModel] = image_model_by_id,
    coder_lookup: Callable[[int, bytes], BitCoder] = coder_by_id,
    progress: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    precision: str = "auto",
    device: str = "cpu",
) -> Decoded:
    """Decode the first `iterations` chunks (default: all the file holds) of an .rnc stream (bytes,
    or a binary file, read no further than the stream's header and chunks announce and checked
    as it is read: `container.read`); `precision` as encode's,
    on the CPU (`auto` follows the encoder's, recorded in the header, where it can); `device`
    (cuda, cuda:N) runs the image model on a GPU instead, in fp32.

    The lookups turn the header's ids into the image model (by model id) and the payload coder (by
    coder id and entropy model id); by default zoo's, which find the weights by id."""
    header, chunks = container.read(data, max_pixels)  # a header over the cap: refused before its chunks are read
    width, height = header.display_size  # at least the coded size
    if not chunks:
        raise FormatError("the file holds no iterations")
    if iterations is not None and not 1 <= iterations:
        raise ValueError("iterations must be at least 1")
    n_iter = len(chunks) if iterations is None else min(iterations, len(chunks))
    if n_iter < (iterations or 0):
        warnings.warn(f"{iterations} iterations asked for, the file holds {n_iter}: decoded {n_iter}", Note, stacklevel=2)
    alpha = container.alpha_plane(header)
    dev = resolve_device(device)
    model = on_device(model_lookup(header.model_id), dev)
    if header.iterations > model.cfg.iterations:
        raise FormatError(f"the file claims {header.iterations} iterations; its model has at most {model.cfg.iterations}")
    coder = coder_lookup(header.coder_id, header.entropy_id)
    boxes = plan_tiles(header.height, header.width, header.tile, header.overlap)
    payloads = [container.split_segments(chunks[t][0], len(boxes)) for t in range(n_iter)]
    try:
        canvas = _decode_tiles(model, coder, header, boxes, payloads, [crc for _, crc in chunks[:n_iter]], progress,
                               resolve_for(precision, header.precision) == "bf16" and dev.type == "cpu")
    except FormatError as exc:
        raise explain_failure(header.coder_id, exc) from None
    pixels = canvas.result()
    if header.display:  # coded at reduced size: shown at the original's
        pixels = resized(pixels, width, height)
    return Decoded(pixels, n_iter, header.icc_profile, alpha)


def _decode_tiles(model: ImageModel, coder: BitCoder, header: container.Header, boxes: list[TileBox],
                  payloads: list[list[bytes]], chunk_crcs: list[int], progress: bool, bf16: bool) -> Canvas:
    """Entropy-decode (on the CPU) and reconstruct (on the model's device) every tile, then check
    each chunk's bits CRC. On a GPU, cuDNN runs without TF32 and deterministically: TF32's 10-bit
    mantissas would move the pixels far more than the CPU's kernels do."""
    n_iter = len(payloads)
    dev = next(model.net.parameters()).device
    crcs = [container.bits_crc(t) for t in range(n_iter)]
    canvas = Canvas(header.height, header.width, header.overlap)
    bits_shape = (model.cfg.bits,)
    grids = [tuple(-(-s // STRIDE) for s in box.shape) for box in boxes]
    counts = container.block_counts(header, grids)
    gpu = (torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False)
           if dev.type == "cuda" else contextlib.nullcontext())
    with torch.inference_mode(), gpu:
        bar = tqdm(total=len(boxes) * n_iter, desc="decoding", unit="iteration", disable=not progress, delay=1.0)
        for i, box in enumerate(boxes):
            session = coder.session(bits_shape + grids[i])
            c = None if counts is None else counts[i]
            active = None if c is None else lambda t, c=c: torch.from_numpy(c > t)[None, None].to(dev, torch.float32)

            def tile_bits(session: CoderSession, i: int, c: np.ndarray | None, active: Callable | None) -> Iterator[torch.Tensor]:
                """This tile's bits, iteration by iteration, entropy-decoded as the model asks for them;
                a stopped block's bits are 0."""
                for t in range(n_iter):
                    b = session.decode(payloads[t][i], None if c is None else c > t)
                    crcs[t] = container.bits_crc_update(b, crcs[t])
                    bits = torch.from_numpy(b)[None].to(dev).float() * 2 - 1
                    yield bits if active is None else bits * active(t)

            for recon in model.net.decode(tile_bits(session, i, c, active), bf16, active):  # noqa: B007  (the last is the tile's)
                bar.update(1)
            canvas.add(box, _tile_pixels(recon, box))
            if i + 1 < len(boxes) and boxes[i + 1].y0 != box.y0:  # a row of tiles is done above the next
                canvas.finish(boxes[i + 1].y0)
            if i + 1 < len(boxes):  # as encode does: the next tile's activations land in the freed pages
                _release_memory()
        bar.close()
    for t in range(n_iter):
        if crcs[t] != chunk_crcs[t]:
            raise FormatError(f"chunk {t + 1} CRC mismatch: the file is corrupt or was coded with another model")
    return canvas


def compress(image: RGBImage | Image.Image | np.ndarray | str | Path, iterations: int | None = None,
             bpp: float | None = None, target_psnr: float | None = None, target_ms_ssim: float | None = None,
             alpha: str = "keep", background: str | tuple[int, ...] = "white", **kwargs) -> bytes:
    """Compress an image (a path, a PIL image or an H×W×3 or ×4 uint8 array) to .rnc bytes: `iterations`
    of 0.125 bpp each before entropy coding, or as many as fit `bpp` (real size, header included;
    the last in part), or the fewest bits that reach `target_psnr` (dB) or `target_ms_ssim`, or (`quality=`
    0–100) each block stopped where more bits stop paying. Transparency is kept losslessly, or with
    `alpha="drop"` flattened onto `background`."""
    return encode(_as_rgb(image, alpha, background), iterations=iterations, bpp=bpp, target_psnr=target_psnr,
                  target_ms_ssim=target_ms_ssim, **kwargs).data


def decompress(data: bytes, iterations: int | None = None) -> Image.Image:
    """Decode .rnc bytes to a PIL image (RGB, or RGBA if the file holds an alpha plane);
    `iterations` decodes a prefix at lower quality."""
    return decode(data, iterations).to_pil()
