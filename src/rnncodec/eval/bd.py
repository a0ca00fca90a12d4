"""Summaries of an RD curve against another: Bjøntegaard delta rate, and the area under the curve."""
from __future__ import annotations

import numpy as np
from bjontegaard import bd_rate as _bd_rate

AUC_RANGE = (0.125, 2.0)  # bpp; the paper's range: 1 to 16 iterations of 0.125 bpp


def bd_rate(anchor_bpp: np.ndarray, anchor_dist: np.ndarray, test_bpp: np.ndarray, test_dist: np.ndarray) -> float:
    """Average rate difference of `test` against `anchor` at equal quality, in percent (negative: smaller files).

    Akima interpolation of log-rate over quality (the `bjontegaard` package's recommended method),
    over the quality range both curves cover.
    """
    return float(_bd_rate(anchor_bpp, anchor_dist, test_bpp, test_dist, method="akima",
                          require_matching_points=False))


def by_rate(bpp: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A curve's points as float arrays in increasing bpp."""
    order = np.argsort(bpp)
    return np.asarray(bpp, float)[order], np.asarray(dist, float)[order]


def rising(bpp: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The points that beat every lower-rate point, in rate order: the part of a curve a user
    would pick from, and the monotone curve that BD-rate's interpolation needs."""
    x, y = by_rate(bpp, dist)
    keep = y > np.maximum.accumulate(np.concatenate(([-np.inf], y[:-1])))
    return x[keep], y[keep]


def auc_range(curves: list[tuple[np.ndarray, np.ndarray]], lo: float = AUC_RANGE[0],
              hi: float = AUC_RANGE[1]) -> tuple[float, float]:
    """[lo, hi] narrowed to the bpp range every curve covers, so that their areas compare."""
    lo = max([lo] + [float(np.min(b)) for b, _ in curves])
    hi = min([hi] + [float(np.max(b)) for b, _ in curves])
    if lo >= hi:
        raise ValueError("the curves share no bpp range")
    return lo, hi


def auc(bpp: np.ndarray, dist: np.ndarray, lo: float, hi: float) -> float:
    """Area under the piecewise-linear curve between lo and hi bpp (which it must cover)."""
    x, y = by_rate(bpp, dist)
    if lo < x[0] or hi > x[-1]:
        raise ValueError(f"the curve covers {x[0]:.3f}–{x[-1]:.3f} bpp, not {lo:.3f}–{hi:.3f}")
    grid = np.concatenate(([lo], x[(x > lo) & (x < hi)], [hi]))
    return float(np.trapezoid(np.interp(grid, x, y), grid))
