"""The `rnncodec` command line. Exit codes: see EXIT_CODES (and README.md)."""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from .codec import DEFAULT_OVERLAP, DEFAULT_TILE
from .config import CELLS, FRAMEWORKS
from .errors import BatchError, FormatError, ImageError, ModelError, Note, OptionError, OutputError, RNNCodecError
from .eval.cli import register as register_eval
from .image import ALPHA_CHOICES, DEFAULT_MAX_PIXELS
from .train.config import EntropyTrainConfig, QuantiseConfig, RunConfig, TrainConfig, add_flags, from_args

EXIT_CODES = {FormatError: 3, ImageError: 4, ModelError: 5, OutputError: 6, BatchError: 7}  # 1: other, 2: usage


def _compress(args: argparse.Namespace) -> None:
    from .codec import encode, make_coder
    from .fileio import atomic_write
    from .image import read_image
    from .models.store import load_image_model

    if args.iterations is not None and args.iterations < 1:
        raise OptionError("--iterations must be at least 1")
    if args.bpp is not None and args.bpp <= 0:
        raise OptionError("--bpp must be positive")
    src, out = Path(args.input), Path(args.output)
    model = load_image_model(args.model)
    if args.iterations is not None and args.iterations > model.cfg.iterations:
        raise OptionError(f"--iterations must be at most {model.cfg.iterations} for this model")
    options = dict(iterations=args.iterations, bpp=args.bpp, tile=args.tile, overlap=args.overlap)
    reading = dict(max_pixels=args.max_pixels, alpha=args.alpha, background=args.background)
    if src.is_dir():
        from .batch import compress_folder

        failures = compress_folder(src, out, args.jobs, args.force, args.model, args.coder, reading, **options)
        if failures:
            raise BatchError(f"{failures} file(s) failed")
        return
    if out.exists() and not args.force:
        raise OutputError(f"{out} exists (use --force to overwrite)")
    enc = encode(read_image(src, **reading), model=model, coder=make_coder(args.coder, model), progress=sys.stderr.isatty(),
                 **options)
    atomic_write(out, lambda f: f.write(enc.data), args.force)


def _model_lookup(path: str | None):
    from .models.store import image_model_by_id, load_image_model

    if path is None:
        return image_model_by_id

    def lookup(model_id: bytes):
        model = load_image_model(path)
        if model.model_id != model_id:
            raise ModelError(f"{path} is model {model.model_id.hex()}, but the file needs {model_id.hex()}")
        return model

    return lookup


def _read_stream(path: str) -> bytes:
    from .fileio import reading

    with reading(path, FormatError):
        return Path(path).read_bytes()


def _decompress(args: argparse.Namespace) -> None:
    from PIL import Image

    from .codec import decode
    from .fileio import atomic_write

    if args.iterations is not None and args.iterations < 1:
        raise OptionError("--iterations must be at least 1")
    out = Path(args.output)
    fmt = Image.registered_extensions().get(out.suffix.lower())
    if fmt is None:
        raise OutputError(f"{out}: unknown image file extension (use .png)")
    if out.exists() and not args.force:
        raise OutputError(f"{out} exists (use --force to overwrite)")
    dec = decode(_read_stream(args.input), args.iterations, _model_lookup(args.model), progress=sys.stderr.isatty(),
                 max_pixels=args.max_pixels)
    im = dec.to_pil()  # RGBA when the file holds an alpha plane
    extra = {"icc_profile": dec.icc_profile} if dec.icc_profile else {}  # not every plugin reads im.info's
    atomic_write(out, lambda f: im.save(f, format=fmt, **extra), args.force)


def _info(args: argparse.Namespace) -> None:
    from . import container

    data = _read_stream(args.input)
    header, chunks = container.read(data)
    pixels = header.width * header.height
    print(f"file:        {args.input} ({len(data)} bytes, {len(data) * 8 / pixels:.4f} bpp)")
    extras = ([", ICC profile"] if header.icc_profile else []) + ([f", alpha plane ({len(header.alpha)} bytes)"]
                                                                 if header.alpha else [])
    print(f"image:       {header.width}×{header.height}{''.join(extras)}")
    print(f"model id:    {header.model_id.hex()}")
    print(f"coder:       {header.coder_id} (entropy model {header.entropy_id.hex()})")
    print(f"tiles:       {header.tile} px, overlap {header.overlap} px")
    print(f"iterations:  {len(chunks)} of {header.iterations} written")
    for t, ((payload, _), size) in enumerate(zip(chunks, container.prefix_sizes(header, chunks)), 1):
        print(f"  {t:2d}: {len(payload):8d} bytes   prefix {size:8d} bytes = {size * 8 / pixels:.4f} bpp")


def _train(args: argparse.Namespace) -> None:
    from .train.loop import Trainer

    overrides = {k: v for k, v in (("encoder_cell", args.cell), ("decoder_cell", args.cell), ("framework", args.framework),
                                    ("iterations", args.model_iterations), ("width", args.width),
                                    ("priming", args.priming)) if v is not None}
    tc = from_args(TrainConfig, args, model_overrides=overrides)
    Trainer(tc, resume=Path(args.resume_from) if args.resume_from else args.resume).run()


def _train_entropy(args: argparse.Namespace) -> None:
    from .train.entropy import EntropyTrainer

    context = {k: getattr(args, k) for k in CONTEXT_CHANNELS if getattr(args, k) is not None}
    EntropyTrainer(from_args(EntropyTrainConfig, args, context=context), resume=args.resume).run()


def _quantise_entropy(args: argparse.Namespace) -> None:
    from .train.quantise import quantise

    qc = from_args(QuantiseConfig, args)
    r = quantise(Path(args.float_model), qc)
    print(f"{qc.output}: integer context model {r.model_id.hex()}; held-out bits per bit: float {r.float_bits_per_bit:.5f}, "
          f"integer after PTQ {r.ptq_bits_per_bit:.5f}, after QAT {r.bits_per_bit:.5f} ({r.seconds / 60:.1f} min)")


CONTEXT_CHANNELS = ("masked", "state", "row", "head")  # ContextConfig widths train-entropy can change


def _run_parser(sub: argparse._SubParsersAction, name: str, help: str, cls: type[RunConfig]) -> argparse.ArgumentParser:
    """A training subcommand: data folders, a run folder, and one flag per field of its config."""
    t = sub.add_parser(name, help=help)
    t.add_argument("data", nargs="+", help="folders of training images (PNG, JPEG)")
    t.add_argument("--out", required=True, help="run folder: checkpoint.pt, best.safetensors, log.jsonl")
    add_flags(t, cls)
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    return t


def _export(args: argparse.Namespace) -> None:
    from .train.export import export_checkpoint

    out = Path(args.output)
    if out.exists() and not args.force:
        raise OutputError(f"{out} exists (use --force to overwrite)")
    model_id = export_checkpoint(Path(args.checkpoint), out)
    print(f"{out}: model id {model_id.hex()}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rnncodec", description="Lossy image compression with recurrent neural networks.")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compress", help="compress an image to .rnc")
    c.add_argument("input", help="image file (PNG, JPEG, …), or a folder of them")
    c.add_argument("-o", "--output", required=True, help="output .rnc file (a folder when the input is one)")
    c.add_argument("-j", "--jobs", type=int, default=1, help="parallel processes for a folder")
    c.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger images (decompression bombs)")
    rate = c.add_mutually_exclusive_group()
    rate.add_argument("--iterations", type=int, help="iterations to code (0.125 bpp each before entropy coding)")
    rate.add_argument("--bpp", type=float, help="largest real rate, header included: keeps the longest prefix that fits")
    c.add_argument("--model", help="image model weights (.safetensors); default: the packaged model")
    c.add_argument("--coder", choices=("raw", "arithmetic", "integer"),
                   help="payload coder: raw bits (0), the float context model (1, not portable) or the integer one "
                   "(2); default: the integer one, else the float one, fitted to the image model, else raw")
    c.add_argument("--tile", type=int, default=DEFAULT_TILE, help="tile size in pixels (multiple of 16)")
    c.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help="tile overlap in pixels (multiple of 16)")
    c.add_argument("--alpha", choices=ALPHA_CHOICES, default="keep",
                   help="transparency: keep codes it losslessly beside the colour; drop flattens onto --background")
    c.add_argument("--background", default="white", help="colour under transparent pixels with --alpha drop (a name or #rrggbb)")
    c.add_argument("-f", "--force", action="store_true", help="overwrite the output")
    c.set_defaults(func=_compress)

    d = sub.add_parser("decompress", help="decompress an .rnc file to an image")
    d.add_argument("input")
    d.add_argument("-o", "--output", required=True, help="output image (.png recommended)")
    d.add_argument("--iterations", type=int, help="decode only the first K iterations")
    d.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse files claiming more pixels")
    d.add_argument("--model", help="weights to decode with, if not packaged (their id must match the file)")
    d.add_argument("-f", "--force", action="store_true", help="overwrite the output")
    d.set_defaults(func=_decompress)

    i = sub.add_parser("info", help="describe an .rnc file")
    i.add_argument("input")
    i.set_defaults(func=_info)

    t = _run_parser(sub, "train", "train an image model on folders of images", TrainConfig)
    t.add_argument("--cell", choices=CELLS, help="recurrent cell of encoder and decoder (default: the preset's)")
    t.add_argument("--framework", choices=FRAMEWORKS, help="reconstruction framework (default: the preset's)")
    t.add_argument("--width", type=float, help="layer width relative to the paper's (default: the preset's)")
    t.add_argument("--model-iterations", type=int, help="most iterations a file may hold")
    t.add_argument("--priming", type=int, help="extra decoder steps on the first iteration's bits (Johnston 2018)")
    t.add_argument("--resume-from", metavar="CKPT", help="continue from this checkpoint (e.g. checkpoints/default.pt)")
    t.set_defaults(func=_train)

    te = _run_parser(sub, "train-entropy", "train coder 1's context model on an image model's codes", EntropyTrainConfig)
    for name in CONTEXT_CHANNELS:
        te.add_argument(f"--{name}", type=int, help=f"context model: {name} channels")
    te.set_defaults(func=_train_entropy)

    q = sub.add_parser("quantise-entropy", help="fit coder 2's integer context model to a float context model")
    q.add_argument("float_model", help="float context model (.safetensors from train-entropy)")
    q.add_argument("--calib", nargs="+", required=True, help="folders of training images (PNG, JPEG)")
    q.add_argument("-o", "--output", required=True, help="output .safetensors")
    add_flags(q, QuantiseConfig)
    q.set_defaults(func=_quantise_entropy)

    e = sub.add_parser("export", help="export a training checkpoint as fp16 release weights")
    e.add_argument("checkpoint", help="checkpoint.pt from `rnncodec train`")
    e.add_argument("-o", "--output", required=True, help="output .safetensors")
    e.add_argument("-f", "--force", action="store_true")
    e.set_defaults(func=_export)
    register_eval(sub)
    return p


def _show_note(message, category, filename, lineno, file=None, line=None) -> None:
    """Notes as one line on stderr; other warnings as Python shows them."""
    if issubclass(category, Note):
        print(f"rnncodec: note: {message}", file=sys.stderr)
    else:
        _show_warning(message, category, filename, lineno, file, line)


_show_warning = warnings.showwarning


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.showwarning = _show_note
    try:
        args.func(args)
    except RNNCodecError as exc:
        print(f"rnncodec: error: {exc}", file=sys.stderr)
        return EXIT_CODES.get(type(exc), 1)
    except ValueError as exc:
        print(f"rnncodec: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rnncodec: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line, unless debugging
        if os.environ.get("RNNCODEC_DEBUG"):
            raise
        print(f"rnncodec: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
