"""How many bits an image gets: the rate options (`Rate`), and the one way they are met (`choose`).

Every rate control chooses the grid of iteration counts, one per 16×16 block of each tile, that the header stores
(after Johnston et al. 2018). A first pass records each block's distortion d_b(c) after c iterations (quality.py's
block measures); each block's count minimises d_b(c) + λ·c, one λ over every tile: `quality`'s, a budget's smallest
whose estimated file fits (`search`), or a target's, found in a few measurements (`meet`). Fixed iterations choose nothing.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from .errors import BudgetError, Note, OptionError
from .image import DOWNSCALES
from .quality import MsSsim, psnr_rgb


def _option(help: str, **argparse: Any) -> Any:  # a rate option: its help, and argparse's keywords
    return field(default=None, metadata={"help": help, **argparse})


# The rate a user who gives none gets: on training photos, the highest quality whose files beat JPEG
# 4:2:0 at their size on PSNR and MS-SSIM for every image (bench/default_rate.py; docs/RESULTS.md).
DEFAULT_QUALITY = 24


@dataclass(frozen=True)
class Rate:
    """The rate options, each written once: encode(), `compress`'s flags, `Image.save`'s keywords,
    eval and the batch runner take this value. At most one goal (the first five); none is
    `quality=DEFAULT_QUALITY`, or with `adaptive=False` every iteration the model has."""

    iterations: int | None = _option("iterations to code, every block all of them", type=int, metavar="N", short="-i")
    bpp: float | None = _option("largest real rate in bits per pixel, header included", type=float)
    target_psnr: float | None = _option("the fewest bits whose PSNR reaches DB", type=float, metavar="DB")
    target_ms_ssim: float | None = _option("the fewest bits whose MS-SSIM reaches X", type=float, metavar="X")
    quality: float | None = _option("0–100, as for JPEG: each 16×16 block stops where one more iteration improves "
                                    "it too little for its bits, the same trade in every image "
                                    f"(without any rate option: {DEFAULT_QUALITY})", type=float, metavar="Q")
    adaptive: bool | None = _option("with a target or a budget (the default there): each 16×16 block gets its own "
                                    "number of iterations; --no-adaptive: whole iterations, the last one in part",
                                    type=bool)
    downscale: int | None = _option("code the image at 1/N of its width and height, which the decoder upscales; "
                                    "default: full size, unless a smaller size meets the budget or target in fewer bytes",
                                    type=int, choices=DOWNSCALES)

    GOALS = ("iterations", "bpp", "target_psnr", "target_ms_ssim", "quality")

    def __post_init__(self) -> None:
        goals = sum(getattr(self, goal) is not None for goal in self.GOALS)
        if goals > 1:
            raise OptionError("give one of iterations, bpp, target_psnr, target_ms_ssim or quality")
        if goals == 0 and self.adaptive is not False:
            object.__setattr__(self, "quality", DEFAULT_QUALITY)
        for name, bad, why in (*((n, lambda v: not math.isfinite(v), "must be a finite number") for n in self.GOALS[1:]),
                               ("iterations", lambda v: v < 1, "must be at least 1"),
                               ("bpp", lambda v: v <= 0, "must be positive"),
                               ("target_psnr", lambda v: v <= 0, "is a positive number of dB"),
                               ("target_ms_ssim", lambda v: not 0 < v < 1, "lies between 0 and 1"),
                               ("quality", lambda v: not 0 <= v <= 100, "lies between 0 and 100"),
                               ("downscale", lambda v: v not in DOWNSCALES, f"is one of {', '.join(map(str, DOWNSCALES))}")):
            if getattr(self, name) is not None and bad(getattr(self, name)):
                raise OptionError(f"{name} {why}")
        if self.quality is not None and self.adaptive is False:
            raise OptionError("quality is adaptive by definition: each block stops on its own")
        if self.adaptive and not self.chooses:
            raise OptionError("adaptive bit rates need a quality target (target_psnr or target_ms_ssim), a budget (bpp) "
                              "or a quality")
        if self.adaptive is None:
            object.__setattr__(self, "adaptive", self.chooses)

    @classmethod
    def options(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @property
    def chooses(self) -> bool:
        """Whether block counts are chosen: for anything but a fixed number of iterations."""
        return any(getattr(self, goal) is not None for goal in self.GOALS[1:])

    @property
    def target(self) -> float | None:
        return self.target_psnr or self.target_ms_ssim

    @property
    def slope(self) -> float | None:
        """λ for `quality`, on `masked_error`: 10^−2.4 at 0, where most blocks stop after one
        iteration, to 10^−7.4 at 100, where almost none stops early (docs/RESULTS.md)."""
        return None if self.quality is None else 10.0 ** (-2.4 - 5.0 * self.quality / 100)

    @property
    def margin(self) -> tuple[float, float]:
        """How far above the target the counts aim (their file decodes near, not on, the composition
        they are chosen on), and how far above that a composition may land (MS-SSIM's cost to measure)."""
        return (0.03, 0.03) if self.target_psnr is not None else (0.0002, 0.0006)

    def scorer(self, original: np.ndarray) -> Callable[[np.ndarray], float]:  # the target's metric against `original`
        return (lambda decoded: psnr_rgb(original, decoded)) if self.target_psnr else MsSsim(original, np.float32)

    def check_reached(self, iterations: int, quality: float) -> None:  # no error: the file has all it can give
        if quality < self.target:
            warnings.warn(f"target {'PSNR' if self.target_psnr else 'MS-SSIM'} {self.target:g} out of reach: stopped at "
                          f"{iterations} iterations at {quality:.4f}", Note, stacklevel=4)

    def check_budget(self, size: int, pixels: int) -> None:  # an error: no file can meet it
        if size * 8 / pixels > self.bpp:
            raise BudgetError(f"{self.bpp:g} bpp is below what one iteration costs for this image "
                              f"({size * 8 / pixels:.3f} bpp)", size * 8 / pixels)


def choose(tables: list[np.ndarray], lam: float) -> list[np.ndarray]:
    """Each tile's counts: each block's c minimising d_b(c) + λ·c (d_b(c) = inf: c not allowed)."""
    return [np.argmin(d + lam * np.arange(len(d))[:, None, None], axis=0).astype(np.uint8) for d in tables]


def search(tables: list[np.ndarray], fits: Callable[[list[np.ndarray]], bool], fewest: bool,
           steps: int = 16) -> list[np.ndarray] | None:
    """`choose` at about the largest λ whose counts fit (`fewest`, as a target's: fewer iterations
    as λ grows) or the smallest (a budget's), by bisection on log λ; None when none tried fits."""
    lo, hi, best = -14.0, 2.0, None
    for _ in range(steps):
        counts = choose(tables, 10.0 ** ((lo + hi) / 2))
        ok = fits(counts)
        best, lo, hi = counts if ok else best, (lo + hi) / 2 if ok == fewest else lo, hi if ok == fewest else (lo + hi) / 2
    return best


def meet(tables: list[np.ndarray], quality: Callable[[list[np.ndarray]], float], aim: float, tolerance: float,
         tries: int = 8) -> list[np.ndarray] | None:
    """About the fewest iterations whose `quality` reaches `aim` (None: not even the most), in few
    measurements: `search`'s counts for a bound on D = Σ d_b(c_b), which the quality falls with,
    the bound by regula falsi (Illinois) from the tables' ends until one lands within `tolerance`."""
    def total(counts: list[np.ndarray]) -> float:
        return float(sum(np.take_along_axis(d, c[None].astype(np.intp), 0).sum() for d, c in zip(tables, counts)))

    best, fewest = choose(tables, 1e-14), choose(tables, 1e2)  # every block at its most, and at its fewest
    fit, miss = [(total(c), quality(c)) for c in (best, fewest)]
    if fit[1] < aim or miss[1] >= aim:
        return None if fit[1] < aim else fewest
    for _ in range(tries):
        bound = fit[0] + (aim - fit[1]) * (miss[0] - fit[0]) / (miss[1] - fit[1])
        counts = search(tables, lambda c, bound=bound: total(c) <= bound, True)
        if counts is None:
            break
        d, q = total(counts), quality(counts)
        if q < aim:
            miss, fit = (d, q), (fit[0], aim + (fit[1] - aim) / 2)
        elif q < aim + tolerance:
            return counts
        else:
            best, fit, miss = counts, (d, q), (miss[0], aim + (miss[1] - aim) / 2)
    return best


def window(table: np.ndarray, low: int, high: int) -> np.ndarray:
    """The table with counts outside [low, high] (and 0) not allowed; a tile that stopped below `low` keeps its last."""
    high = max(min(high, len(table) - 1), 1)
    out, low = np.full_like(table, np.inf), min(max(low, 1), high)
    out[low : high + 1] = table[low : high + 1]
    return out
