"""Rate–distortion curves: rnncodec's and the classical codecs' results files, and the anchors.

Results files follow CompressAI's schema, `{name, description, results: {bpp: [...], <metric>:
[...]}}`; anchor CSVs (eval/anchors/) carry `bpp,ms_ssim_rgb,psnr_rgb`.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .metrics import to_db

METRICS = ("psnr-rgb", "ms-ssim-rgb", "ms-ssim-rgb-db", "psnr-hvs", "psnr-hvs-m")
LABELS = {"psnr-rgb": "PSNR-RGB [dB]", "ms-ssim-rgb": "MS-SSIM (RGB)", "ms-ssim-rgb-db": "MS-SSIM (RGB) [dB]",
          "psnr-hvs": "PSNR-HVS (luma) [dB]", "psnr-hvs-m": "PSNR-HVS-M (luma) [dB]"}


@dataclass
class Curve:
    name: str
    bpp: np.ndarray
    metrics: dict[str, np.ndarray]
    description: str = ""
    anchor: bool = False  # a published curve, not measured here
    quality: list[float] = field(default_factory=list)


def load_results(folder: str | Path) -> list[Curve]:
    """Every `<codec>.json` results file in `folder`, rnncodec first, then by name."""
    curves = []
    for path in sorted(Path(folder).glob("*.json")):
        doc = json.loads(path.read_text())
        res = doc.get("results", {})
        if "bpp" not in res:
            continue
        curves.append(Curve(doc["name"], np.asarray(res["bpp"], float),
                            {m: np.asarray(res[m], float) for m in METRICS if m in res},
                            doc.get("description", ""), quality=list(res.get("quality", []))))
    return sorted(curves, key=lambda c: (c.name != "rnncodec", c.name))


def load_anchors(folder: str | Path) -> list[Curve]:
    """The published curves in `folder` (kodak_<system>.csv), with MS-SSIM also in dB."""
    curves = []
    for path in sorted(Path(folder).glob("kodak_*.csv")):
        with path.open() as f:
            rows = list(csv.DictReader(f))
        msssim = np.array([float(r["ms_ssim_rgb"]) for r in rows])
        curves.append(Curve(path.stem.removeprefix("kodak_"), np.array([float(r["bpp"]) for r in rows]),
                            {"ms-ssim-rgb": msssim, "ms-ssim-rgb-db": np.array([to_db(v) for v in msssim]),
                             "psnr-rgb": np.array([float(r["psnr_rgb"]) for r in rows])},
                            f"published ({path.name})", anchor=True))
    return curves
