"""Markdown tables of measured curves: each codec's rate points, and BD-rate / AUC against JPEG."""
from __future__ import annotations

import math
import warnings

import numpy as np

from .bd import auc, auc_range, bd_rate, by_rate, rising
from .curves import METRICS, Curve

REFERENCE = "jpeg"
SUMMARY_METRICS = ("ms-ssim-rgb-db", "psnr-rgb", "psnr-hvs")
_HEAD = {"psnr-rgb": "PSNR-RGB", "ms-ssim-rgb": "MS-SSIM", "ms-ssim-rgb-db": "MS-SSIM dB",
         "psnr-hvs": "PSNR-HVS", "psnr-hvs-m": "PSNR-HVS-M"}


def rd_table(curve: Curve) -> str:
    """One codec's averaged rate points: quality setting, bpp and every metric."""
    param = {"rnncodec": "iterations", "rnncodec-ms-ssim": "MS-SSIM target"}.get(curve.name, "quality")
    lines = [f"| {param} | bpp | " + " | ".join(_HEAD[m] for m in METRICS) + " |",
             "|" + "---:|" * (len(METRICS) + 2)]
    for i, b in enumerate(curve.bpp):
        q = curve.quality[i] if curve.quality else ""
        q = f"{q:g}" if isinstance(q, (int, float)) else q
        vals = [f"{curve.metrics[m][i]:.4f}" if m == "ms-ssim-rgb" else f"{curve.metrics[m][i]:.2f}" for m in METRICS]
        lines.append(f"| {q} | {b:.4f} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def _bd_cell(ref: Curve, curve: Curve, metric: str) -> str:
    """The BD-rate over each curve's rising points, marked † where points were dropped; n/a where
    it is undefined (no overlap)."""
    ref_points, points = rising(ref.bpp, ref.metrics[metric]), rising(curve.bpp, curve.metrics[metric])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a partial-overlap warning; the cell still stands
            value = bd_rate(*ref_points, *points)
    except ValueError:
        return "n/a"
    dropped = len(points[0]) < len(curve.bpp) or len(ref_points[0]) < len(ref.bpp)
    return f"{value:+.1f} %" + (" †" if dropped else "") if math.isfinite(value) else "n/a"


def bd_table(curves: list[Curve], metric: str) -> str:
    """BD-rate against JPEG and AUC over the bpp range all listed curves share within 0.125–2 bpp."""
    have = [c for c in curves if metric in c.metrics]
    ref = next((c for c in have if c.name == REFERENCE), None)
    if ref is None:
        return f"(no {REFERENCE} results: BD-rate needs them)"
    lo, hi = auc_range([(c.bpp, c.metrics[metric]) for c in have])
    lines = [f"| {_HEAD[metric]} | BD-rate vs JPEG | AUC {lo:.3f}–{hi:.3f} bpp |", "|---|---:|---:|"]
    for c in have:
        name = f"{c.name} (published)" if c.anchor else c.name
        lines.append(f"| {name} | {_bd_cell(ref, c, metric)} | {auc(c.bpp, c.metrics[metric], lo, hi):.4f} |")
    if any("†" in line for line in lines):
        lines.append("\n† over the points that beat every lower rate: later points, no better than an earlier one, are dropped.")
    return "\n".join(lines)


def _at(curve: Curve, metric: str, bpp: float) -> str:
    """The curve's metric at `bpp`, linearly interpolated; blank outside the rates it covers."""
    x, y = by_rate(curve.bpp, curve.metrics[metric])
    digits = 4 if metric == "ms-ssim-rgb" else 2
    return f"{np.interp(bpp, x, y):.{digits}f}" if x[0] <= bpp <= x[-1] else "–"


def equal_rate_table(results: list[Curve], anchors: list[Curve]) -> str:
    """rnncodec at each iteration count beside the others at the same real bpp (MS-SSIM, PSNR)."""
    ours = next((c for c in results if c.name == "rnncodec"), None)
    others = [c for c in results + anchors if c is not ours and "ms-ssim-rgb" in c.metrics]
    if ours is None:
        return "(no rnncodec results)"
    head = ["iterations", "bpp", "rnncodec MS-SSIM"] + [f"{c.name} MS-SSIM" for c in others]
    head += ["rnncodec PSNR"] + [f"{c.name} PSNR" for c in others if "psnr-rgb" in c.metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for i, b in enumerate(ours.bpp):
        row = [f"{ours.quality[i]:g}" if ours.quality else "", f"{b:.4f}", f"{ours.metrics['ms-ssim-rgb'][i]:.4f}"]
        row += [_at(c, "ms-ssim-rgb", b) for c in others]
        row += [f"{ours.metrics['psnr-rgb'][i]:.2f}"] + [_at(c, "psnr-rgb", b) for c in others if "psnr-rgb" in c.metrics]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def summary(results: list[Curve], anchors: list[Curve]) -> str:
    """The whole markdown summary: equal-rate and BD-rate / AUC tables, then one RD table per codec."""
    parts = ["## rnncodec against the others at the same real bpp", "",
             "Others interpolated linearly in bpp between their measured (or published) points.", "",
             equal_rate_table(results, anchors), "", "## BD-rate and AUC against JPEG", ""]
    for metric in SUMMARY_METRICS:
        parts += [bd_table(results + anchors, metric), ""]
    for c in results:
        parts += [f"## {c.name}", "", c.description, "", rd_table(c), ""]
    return "\n".join(parts)
