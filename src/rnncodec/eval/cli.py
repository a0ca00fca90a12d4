"""The `eval` and `plot` subcommands."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import OptionError

DEFAULT_ANCHORS = Path(__file__).parent / "anchors"  # published curves, shipped with the package


def _eval(args: argparse.Namespace) -> None:
    from .runner import default_codecs, evaluate

    known = default_codecs()
    codecs = args.codecs.split(",") if args.codecs else known
    unknown = [c for c in codecs if c not in known]
    if unknown:
        raise OptionError(f"unknown or unavailable codecs {unknown}; available: {known}")
    summaries = evaluate(args.dataset, args.out, codecs, args.model, args.jobs, args.limit)
    for name, doc in summaries.items():
        res = doc["results"]
        print(f"{name:10s} {len(res['bpp']):3d} points, {min(res['bpp']):.3f}–{max(res['bpp']):.3f} bpp")
    print(f"results in {args.out}; next: rnncodec plot {args.out}")


def _plot(args: argparse.Namespace) -> None:
    from .curves import load_anchors, load_results
    from .plot import plot_all
    from .report import summary

    results = load_results(args.results)
    if not results:
        raise OptionError(f"no results files in {args.results}")
    anchors = load_anchors(args.anchors) if Path(args.anchors).is_dir() else []
    out = Path(args.out or args.results)
    for path in plot_all(results, anchors, out):
        print(path)
    (out / "summary.md").write_text(summary(results, anchors))
    print(out / "summary.md")


def register(sub: argparse._SubParsersAction) -> None:
    """Add `eval` and `plot` to the rnncodec command line."""
    e = sub.add_parser("eval", help="rate–distortion of rnncodec and classical codecs over a folder of images")
    e.add_argument("dataset", help="folder of lossless images (e.g. Kodak PNGs)")
    e.add_argument("-o", "--output", "--out", dest="out", default="runs/eval",
                   help="results folder (its cache/ makes a rerun resume)")
    e.add_argument("--codecs", help="comma-separated subset (default: rnncodec and every available classical codec)")
    e.add_argument("--model", help="rnncodec image model weights (.safetensors); default: the packaged model")
    e.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: all cores)")
    e.add_argument("--limit", type=int, help="only the first N images (smoke tests)")
    e.set_defaults(func=_eval)

    p = sub.add_parser("plot", help="RD plots and BD-rate / AUC tables from `rnncodec eval` results")
    p.add_argument("results", help="folder holding the <codec>.json results")
    p.add_argument("--anchors", default=DEFAULT_ANCHORS, help="folder of published kodak_*.csv curves to overlay")
    p.add_argument("-o", "--output", "--out", dest="out",
                   help="where to write the PNGs and summary.md (default: the results folder)")
    p.set_defaults(func=_plot)
