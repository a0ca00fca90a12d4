"""`rnncodec plot`: RD curves as PNGs, measured codecs solid and published anchors dashed."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .curves import LABELS, Curve

PLOT_METRICS = ("ms-ssim-rgb-db", "psnr-rgb", "psnr-hvs")


def plot_metric(curves: list[Curve], metric: str, path: Path, max_bpp: float = 2.25, title: str = "Kodak") -> None:
    """One metric against bpp for every curve that has it; y-limits fit the part shown. `title`
    names the images the curves were measured on."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6), dpi=120)
    shown: list[np.ndarray] = []
    for c in curves:
        if metric not in c.metrics:
            continue
        order = np.argsort(c.bpp)
        x, y = c.bpp[order], c.metrics[metric][order]
        style = dict(linestyle="--", marker="x", alpha=0.8) if c.anchor else dict(marker="o", markersize=3)
        width = 2.5 if c.name.startswith("rnncodec") else 1.5
        ax.plot(x, y, label=f"{c.name} (published)" if c.anchor else c.name, linewidth=width, **style)
        shown.append(y[(x <= max_bpp) & np.isfinite(y)])
    values = np.concatenate(shown) if shown else np.array([0.0, 1.0])
    pad = 0.03 * (values.max() - values.min() + 1e-9)
    ax.set(xlim=(0, max_bpp), ylim=(values.min() - pad, values.max() + pad), xlabel="bits per pixel",
           ylabel=LABELS[metric], title=f"{title}: {LABELS[metric]} against rate")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_all(results: list[Curve], anchors: list[Curve], out: Path) -> list[Path]:
    """One PNG per plotted metric, named after it."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for metric in PLOT_METRICS:
        path = out / f"kodak_{metric}.png"
        plot_metric(results + anchors, metric, path)
        paths.append(path)
    return paths
