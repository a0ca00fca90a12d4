"""The `eval`, `plot` and `compare` subcommands."""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from ..errors import OptionError

DEFAULT_ANCHORS = Path(__file__).parent / "anchors"  # published curves, shipped with the package
DEFAULT_ITERATIONS = (1, 2, 4, 8)  # the comparison page's rates: 0.125 to 1 bpp before entropy coding


def _codecs(args: argparse.Namespace, modes: bool = False) -> list[str]:
    """--codecs, checked against what this installation can write (default: rnncodec and every
    classical codec); `modes` also allows the slow RNNCODEC_MODES, which only `eval` measures."""
    from .runner import default_codecs, known_codecs

    known = known_codecs() if modes else default_codecs()
    codecs = args.codecs.split(",") if args.codecs else default_codecs()
    unknown = [c for c in codecs if c not in known]
    if unknown:
        raise OptionError(f"unknown or unavailable codecs {unknown}; available: {known}")
    return codecs


def _eval(args: argparse.Namespace) -> None:
    from .runner import dataset_images, evaluate

    codecs = _codecs(args, modes=not args.html)  # the page matches the others to rnncodec's iterations
    if args.html:
        from .compare import check_iterations

        check_iterations(args.iterations, args.model)  # before the long run, not after
    summaries = evaluate(args.dataset, args.out, codecs, args.model, args.jobs, args.limit)
    for name, doc in summaries.items():
        res = doc["results"]
        print(f"{name:10s} {len(res['bpp']):3d} points, {min(res['bpp']):.3f}–{max(res['bpp']):.3f} bpp")
    print(f"results in {args.out}; next: rnncodec plot {args.out}")
    if args.html:
        from .compare import build_page

        out = Path(args.out)
        print(build_page(dataset_images(args.dataset, args.limit), out / "html", Path(args.dataset).resolve().name,
                         args.iterations, codecs, args.model, args.jobs, cache=out, force=True))


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


def _compare(args: argparse.Namespace) -> None:
    from .compare import build_page

    image = Path(args.image)
    with tempfile.TemporaryDirectory() as cache:  # the RD sweep's files: not part of the page
        print(build_page([image], Path(args.out), image.name, args.iterations, _codecs(args), args.model, args.jobs,
                         cache=Path(cache), force=args.force))


def _iteration_list(text: str) -> list[int]:
    try:
        return sorted({int(v) for v in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of iteration counts: {text!r}") from None


# Options that several commands take, each written once.
def _codecs_flag(p: argparse.ArgumentParser, more: str = "") -> None:
    p.add_argument("--codecs", help="comma-separated subset of rnncodec and every available classical codec "
                   f"(default: all of them){more}")


def _model_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="rnncodec image model weights (.safetensors) or a packaged model's name (default, wide); "
                   "default: the packaged default")


def _jobs_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: all cores)")


def _iterations_flag(p: argparse.ArgumentParser, when: str = "") -> None:
    p.add_argument("--iterations", type=_iteration_list, default=list(DEFAULT_ITERATIONS), metavar="K,K,…",
                   help=f"{when}the page's rates: rnncodec's iteration counts, the other codecs matched to each "
                   f"(default: {','.join(map(str, DEFAULT_ITERATIONS))})")


def register(sub: argparse._SubParsersAction) -> None:
    """Add `eval`, `plot` and `compare` to the rnncodec command line."""
    e = sub.add_parser("eval", help="rate–distortion of rnncodec and classical codecs over a folder of images")
    e.add_argument("dataset", help="folder of lossless images (e.g. Kodak PNGs)")
    e.add_argument("-o", "--output", "--out", dest="out", default="runs/eval",
                   help="results folder (its cache/ makes a rerun resume)")
    _codecs_flag(e, "; also rnncodec-ms-ssim and rnncodec-quality: the model coded as compress --target-ms-ssim "
                 "and --quality code it, one file per setting (slow)")
    _model_flag(e)
    _jobs_flag(e)
    e.add_argument("--limit", type=int, help="only the first N images (smoke tests)")
    e.add_argument("--html", action="store_true", help="also write a comparison web page of every image, "
                   "as `compare` does, with an image chooser and the dataset's RD plots: OUT/html/index.html")
    _iterations_flag(e, "with --html: ")
    e.set_defaults(func=_eval)

    p = sub.add_parser("plot", help="RD plots and BD-rate / AUC tables from `rnncodec eval` results")
    p.add_argument("results", help="folder holding the <codec>.json results")
    p.add_argument("--anchors", default=DEFAULT_ANCHORS, help="folder of published kodak_*.csv curves to overlay")
    p.add_argument("-o", "--output", "--out", dest="out",
                   help="where to write the PNGs and summary.md (default: the results folder)")
    p.set_defaults(func=_plot)

    c = sub.add_parser("compare", help="a web page of one image under rnncodec and the classical codecs at the same rates")
    c.add_argument("image", help="image file (any format Pillow opens)")
    c.add_argument("-o", "--output", "--out", dest="out", required=True,
                   help="folder for the page: index.html, and the pictures and files it shows")
    _iterations_flag(c)
    _codecs_flag(c)
    _model_flag(c)
    _jobs_flag(c)
    c.add_argument("-f", "--force", action="store_true", help="overwrite an existing page")
    c.set_defaults(func=_compare)
