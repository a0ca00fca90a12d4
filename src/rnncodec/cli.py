"""The `rnncodec` command line. Exit codes: see EXIT_CODES (and README.md)."""
from __future__ import annotations

import argparse
import io
import json
import os
import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import fields
from pathlib import Path
from typing import BinaryIO

from .backend import DEFAULT_ENGINE, ENGINES
from .config import CELLS, FRAMEWORKS
from .errors import (
    BatchError,
    FormatError,
    ImageError,
    ModelError,
    Note,
    OptionError,
    OutputError,
    ResourceError,
    RNNCodecError,
    Stopped,
)
from .eval.cli import register as register_eval
from .fileio import STOP_SIGNALS, atomic_write, check_output, decoded_name, output_name
from .image import ALPHA_CHOICES, DEFAULT_MAX_PIXELS, RGBImage, writer_format
from .precision import PRECISIONS
from .rate import Rate
from .tiles import DEFAULT_OVERLAP, DEFAULT_TILE, check_tiling
from .train.config import EntropyTrainConfig, QuantiseConfig, RunConfig, TrainConfig, add_flags, from_args

EXIT_CODES = {FormatError: 3, ImageError: 4, ModelError: 5, OutputError: 6, BatchError: 7, ResourceError: 8}
# 1: other, 2: usage; a stop by a signal: 128 + its number (SIGHUP 129, SIGINT 130, SIGTERM 143)
# the extra that installs what a command needs beyond the codec (torch, its metrics and plots)
EXTRAS = {"train": "train", "train-entropy": "train", "quantise-entropy": "train", "export": "train", "export-onnx": "train",
          "eval": "eval", "plot": "eval", "compare": "eval"}


STDIO = "-"  # as input: standard input; as output: standard output
# how decompress writes a format: zlib's level 4 for PNG, whose files are about as small as its
# default's (6), in much less time (docs/RESULTS.md, "Install and start-up")
WRITE_OPTIONS = {"PNG": {"compress_level": 4}}


def _progress(args: argparse.Namespace) -> bool:
    """Progress bars only on a terminal, and not with -q."""
    return sys.stderr.isatty() and not args.quiet


def _check_output(out: str | Path, force: bool) -> None:
    """Refuse an output before any work is done: binary data bound for a terminal, or a file that
    cannot be written (fileio.check_output: exists without --force, missing folder, …)."""
    if str(out) == STDIO:
        if sys.stdout.isatty():
            raise OutputError("refusing to write binary data to a terminal (redirect standard output, or use -o FILE)")
    else:
        check_output(out, force)


def _write_output(out: str | Path, write: Callable[[BinaryIO], None], force: bool) -> None:
    """Write a file atomically, or standard output in one piece once the data is complete, so an
    error never leaves half an output behind either way."""
    if str(out) != STDIO:
        atomic_write(out, write, force)
        return
    buf = io.BytesIO()
    write(buf)
    sys.stdout.buffer.write(buf.getvalue())
    sys.stdout.buffer.flush()


def _compress(args: argparse.Namespace) -> None:
    from PIL import Image

    from .image import read_image

    options = dict(rate=Rate(**{name: getattr(args, name) for name in Rate.options()}), tile=args.tile,
                   overlap=args.overlap, precision=args.precision)
    check_tiling(args.tile, args.overlap)  # before any image is read
    reading = dict(max_pixels=args.max_pixels, alpha=args.alpha, background=args.background)
    Image.MAX_IMAGE_PIXELS = args.max_pixels  # the application sets Pillow's cap; read_image applies ours
    if args.input != STDIO and Path(args.input).is_dir():
        _compress_folder(args, reading, options)
        return
    out = args.output or (STDIO if args.input == STDIO else output_name(Path(args.input)))
    _check_output(out, args.force)  # before the model loads
    encode = _encoder(args, options)
    data = encode(read_image(sys.stdin.buffer if args.input == STDIO else Path(args.input), **reading))
    _write_output(out, lambda f: f.write(data), args.force)


def _encoder(args: argparse.Namespace, options: dict) -> Callable[[RGBImage], bytes]:
    """codec.encode with the image model in the runtime --engine names (backend.py)."""
    from .backend import load_backend
    from .codec import encode
    from .zoo import make_coder

    backend = load_backend(args.engine, args.model, args.precision)
    backend.cfg.coded_iterations(args.iterations)  # too many: refused before the image is read
    coder = make_coder(args.coder, backend.model_id)
    return lambda rgb: encode(rgb, model=backend, coder=coder, progress=_progress(args), **options).data


def _rate_flags(p: argparse.ArgumentParser) -> None:
    """One flag per rate option (`Rate`, which holds their help); the goals exclude each other."""
    goals = p.add_mutually_exclusive_group()
    for option in fields(Rate):
        meta = dict(option.metadata)
        flags = [*filter(None, [meta.pop("short", None)]), "--" + option.name.replace("_", "-")]
        kind = meta.pop("type")
        how = {"action": argparse.BooleanOptionalAction} if kind is bool else {"type": kind}
        (goals if option.name in Rate.GOALS else p).add_argument(*flags, **how, **meta)


def _compress_folder(args: argparse.Namespace, reading: dict, options: dict) -> None:
    """Every image below the folder, into OUTPUT (default: the folder's name plus .rnc, beside it)."""
    from tqdm import tqdm

    from .batch import compress_files, plan_folder

    src = Path(args.input)
    if args.output == STDIO:
        raise OptionError("a folder compresses into a folder, not to standard output")
    tasks, skipped = plan_folder(src, Path(args.output) if args.output else output_name(src.resolve()))
    failures, finished = 0, []
    results = compress_files(tasks, force=args.force, model_path=args.model, coder=args.coder, reading=reading,
                             options=options, processes=args.jobs, engine=args.engine)
    outputs = dict(tasks)
    try:
        with closing(results):  # leaving early stops the workers at once (batch.compress_files)
            for image, error in tqdm(results, total=len(tasks), desc="compressing", unit="image", delay=1.0,
                                     disable=not _progress(args)):
                if error:
                    failures += 1
                    tqdm.write(f"rnncodec: error: {error}", file=sys.stderr)
                else:
                    finished.append(outputs[image])
    except (KeyboardInterrupt, Stopped):
        print(f"rnncodec: stopped after {len(finished)} of {len(tasks)} file(s); finished:", file=sys.stderr)
        for path in finished:
            print(f"  {path}", file=sys.stderr)
        raise
    for path in skipped if args.verbose else []:
        print(f"rnncodec: skipped (not an image file): {path}", file=sys.stderr)
    if skipped and not args.verbose:
        warnings.warn(f"skipped {len(skipped)} file(s) that are not images (-v lists them)", Note, stacklevel=1)
    if failures:
        raise BatchError(f"{failures} of {len(tasks)} file(s) failed")


def _model_lookup(args: argparse.Namespace):
    """The model --model names, in --engine's runtime, checked against the file's; None: the
    file's own, found by id."""
    if args.model is None:
        return None

    def lookup(model_id: bytes):
        from .backend import load_backend

        backend = load_backend(args.engine, args.model, args.precision)
        if backend.model_id != model_id:
            raise ModelError(f"{args.model} is model {backend.model_id.hex()}, but the file needs {model_id.hex()}")
        return backend

    return lookup


@contextmanager
def _read_stream(path: str) -> Iterator[BinaryIO]:
    """An .rnc input as a binary stream, which `container.read` reads no further than it announces
    (never whole before its magic is checked: /dev/zero, a huge file of junk)."""
    from .fileio import reading

    if path == STDIO:
        yield sys.stdin.buffer
        return
    with reading(path, FormatError):
        f = open(path, "rb")  # noqa: SIM115  (closed below; `reading` must not see the decoder's errors)
    with f:
        yield f


def _decompress(args: argparse.Namespace) -> None:
    from .codec import decode

    if args.iterations is not None and args.iterations < 1:
        raise OptionError("--iterations must be at least 1")
    out = args.output or (STDIO if args.input == STDIO else decoded_name(Path(args.input)))
    fmt = "PNG" if out == STDIO else writer_format(out)
    if fmt is None:
        raise OutputError(f"{out}: unknown image file extension (use .png)")
    _check_output(out, args.force)
    with _read_stream(args.input) as f:
        dec = decode(f, args.iterations, _model_lookup(args), progress=_progress(args),
                     max_pixels=args.max_pixels, precision=args.precision, device=args.device, engine=args.engine,
                     strict=args.strict)
    im = dec.to_pil()  # RGBA when the file holds an alpha plane
    extra = {"icc_profile": dec.icc_profile} if dec.icc_profile else {}  # not every plugin reads im.info's
    extra |= WRITE_OPTIONS.get(fmt, {})
    _write_output(out, lambda f: im.save(f, format=fmt, **extra), args.force)


def _describe(f: BinaryIO, max_pixels: int | None = None) -> dict:
    """What `info` shows of an .rnc stream: header fields, optional sections, and each chunk with
    the size and rate of the file cut after it (a prefix, as --iterations K writes it)."""
    from . import container
    from .zoo import image_model_source

    header, chunks = container.read(f, max_pixels, strict=False)  # a cut file: its complete chunks, and a note
    size = container.size(header, chunks)
    width, height = header.display_size
    pixels = width * height
    return {"bytes": size, "bpp": size * 8 / pixels, "width": width, "height": height,
            "coded_width": header.width, "coded_height": header.height,
            "model_id": header.model_id.hex(), "model": image_model_source(header.model_id),
            "coder_id": header.coder_id, "entropy_id": header.entropy_id.hex(), "encoder": ENCODERS[header.precision],
            "tile": header.tile, "overlap": header.overlap, "iterations": header.iterations,
            "icc_profile_bytes": len(header.icc_profile or b""), "alpha_bytes": len(header.alpha or b""),
            "block_counts_bytes": len(header.blocks or b""),
            "chunks": [{"iteration": t, "bytes": len(payload), "prefix_bytes": size, "prefix_bpp": size * 8 / pixels}
                       for t, ((payload, _), size) in enumerate(zip(chunks, container.prefix_sizes(header, chunks)), 1)]}


# the engine and arithmetic the header's precision byte records (docs/FORMAT.md)
ENCODERS = {None: "not recorded", "fp32": "fp32 (torch, or onnx before it was recorded)", "bf16": "bf16 (torch)",
            "onnx-fp32": "fp32 (onnx)"}


def _info(args: argparse.Namespace) -> None:
    with _read_stream(args.input) as f:
        d = {"file": args.input, **_describe(f, args.max_pixels)}
    if args.json:
        print(json.dumps(d, indent=1))
        return
    sections = "".join(f", {name} ({d[key]} bytes)" for name, key in (
        ("ICC profile", "icc_profile_bytes"), ("alpha plane", "alpha_bytes"),
        ("adaptive: block iteration counts", "block_counts_bytes")) if d[key])
    print(f"file:        {d['file']} ({d['bytes']} bytes, {d['bpp']:.4f} bpp)")
    coded = f", coded at {d['coded_width']}×{d['coded_height']}" if (d["coded_width"], d["coded_height"]) != (
        d["width"], d["height"]) else ""
    print(f"image:       {d['width']}×{d['height']}{coded}{sections}")
    where = d["model"] or "not found here: its weights belong on $RNNCODEC_MODEL_PATH"
    print(f"model id:    {d['model_id']} ({where})")
    print(f"coder:       {d['coder_id']} (entropy model {d['entropy_id']})")
    print(f"encoder:     {d['encoder']}")
    print(f"tiles:       {d['tile']} px, overlap {d['overlap']} px")
    print(f"iterations:  {len(d['chunks'])} of {d['iterations']} written")
    for c in d["chunks"]:
        print(f"  {c['iteration']:2d}: {c['bytes']:8d} bytes   prefix {c['prefix_bytes']:8d} bytes = {c['prefix_bpp']:.4f} bpp")


def _train(args: argparse.Namespace) -> None:
    from .train.loop import Trainer

    overrides = {k: v for k, v in (("encoder_cell", args.cell), ("decoder_cell", args.cell), ("framework", args.framework),
                                    ("iterations", args.model_iterations), ("width", args.width),
                                    ("priming", args.priming), ("tail_width", args.tail_width)) if v is not None}
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
    t.add_argument("-o", "--output", "--out", dest="out", required=True,
                   help="run folder: checkpoint.pt, best.safetensors, log.jsonl")
    add_flags(t, cls)
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    return t


def _export_onnx(args: argparse.Namespace) -> None:
    from .onnx_export import export_graphs
    from .zoo import load_image_model

    model = load_image_model(args.weights)
    for path in export_graphs(model, Path(args.output), args.force):
        print(path)


def _export(args: argparse.Namespace) -> None:
    from .train.export import export_checkpoint

    out = Path(args.output)
    if out.exists() and not args.force:
        raise OutputError(f"{out} exists (use --force to overwrite)")
    model_id = export_checkpoint(Path(args.checkpoint), out)
    print(f"{out}: model id {model_id.hex()}")


# Options that several commands take, each written once.
def _precision_flag(p: argparse.ArgumentParser, more: str = "") -> None:
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="the torch engine's arithmetic; auto: bf16 where the CPU has it natively, else fp32" + more)


def _engine_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE, help="the image model's runtime: onnx (ONNX "
                   "Runtime, fp32) or torch (PyTorch, the [torch] extra: bf16, GPUs). Engines differ in float rounding: "
                   "the files they write, and the pixels they decode a file to; any file's bits decode exactly anywhere")


def _model_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="image model weights (.safetensors), or a packaged model's name: default, or wide (the "
                   "decoder's last layer twice as wide: better at high rates, slower); default: the packaged "
                   "default, or when decompressing the one the file names (found by id; weights given must be that model)")


def _max_pixels_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="refuse images of more pixels, read or claimed by an .rnc file (decompression bombs)")


def _force_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="overwrite the output")


def _rnc_input(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help=".rnc file, or - for standard input")


def _weights_output(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", required=True, help="output .safetensors")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rnncodec", description="Lossy image compression with recurrent neural networks.")
    p.add_argument("--version", action=_Version, help="show the version and the packaged models' ids, and exit")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compress", help="compress an image to .rnc")
    c.add_argument("input", help="image file (any format Pillow opens), - for standard input, or a folder of images")
    c.add_argument("-o", "--output", help="output .rnc file, - for standard output (default: INPUT.rnc beside the input, "
                   "e.g. photo.png.rnc; standard output for -); for a folder, the output folder (default: FOLDER.rnc)")
    c.add_argument("-j", "--jobs", type=int, default=1, help="parallel processes for a folder")
    c.add_argument("-v", "--verbose", action="store_true", help="for a folder: list the files skipped as not images")
    _max_pixels_flag(c)
    _rate_flags(c)
    _model_flag(c)
    c.add_argument("--coder", choices=("raw", "arithmetic", "integer"),
                   help="payload coder: raw bits (0), the float context model (1, not portable) or the integer one "
                   "(2); default: the integer one, else the float one, fitted to the image model, else raw")
    c.add_argument("--tile", type=int, default=DEFAULT_TILE, help="tile size in pixels (multiple of 16)")
    _precision_flag(c)
    _engine_flag(c)
    c.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help="tile overlap in pixels (multiple of 16)")
    c.add_argument("--alpha", choices=ALPHA_CHOICES, default="keep",
                   help="transparency: keep codes it losslessly beside the colour; drop flattens onto --background")
    c.add_argument("--background", default="white", help="colour (a name or #rrggbb) that fully transparent pixels take, "
                   "and that --alpha drop flattens onto")
    _force_flag(c)
    c.set_defaults(func=_compress)

    d = sub.add_parser("decompress", help="decompress an .rnc file to an image")
    _rnc_input(d)
    d.add_argument("-o", "--output", help="output image (.png recommended), - for PNG on standard output (default: INPUT "
                   "without .rnc, as .png: photo.rnc and photo.png.rnc give photo.png; standard output for -)")
    d.add_argument("-i", "--iterations", type=int, help="decode only the first K iterations")
    d.add_argument("--strict", action="store_true", help="refuse a file cut inside an iteration (by default its "
                   "complete iterations decode, with a note)")
    d.add_argument("--device", default="cpu", help="where the image model runs: cpu, or with --engine torch cuda[:N] in "
                   "fp32 (the bits are decoded on the CPU either way; the pixels may differ by rounding)")
    _max_pixels_flag(d)
    _model_flag(d)
    _precision_flag(d)
    _engine_flag(d)
    _force_flag(d)
    d.set_defaults(func=_decompress)

    i = sub.add_parser("info", help="describe an .rnc file")
    _rnc_input(i)
    i.add_argument("--json", action="store_true", help="machine-readable: header fields, sections, chunks and prefixes")
    _max_pixels_flag(i)
    i.set_defaults(func=_info)

    t = _run_parser(sub, "train", "train an image model on folders of images", TrainConfig)
    t.add_argument("--cell", choices=CELLS, help="recurrent cell of encoder and decoder (default: the preset's)")
    t.add_argument("--framework", choices=FRAMEWORKS, help="reconstruction framework (default: the preset's)")
    t.add_argument("--width", type=float, help="layer width relative to the paper's (default: the preset's)")
    t.add_argument("--model-iterations", type=int, help="most iterations a file may hold")
    t.add_argument("--priming", type=int, help="extra decoder steps on the first iteration's bits (Johnston 2018)")
    t.add_argument("--tail-width", type=float, help="width of the decoder's last conv-RNN layer (default: --width); "
                   "with --init-from a narrower model, it grows into it computing what it did")
    t.add_argument("--resume-from", metavar="CKPT", help="continue from this checkpoint (e.g. checkpoints/default.pt)")
    t.set_defaults(func=_train)

    te = _run_parser(sub, "train-entropy", "train coder 1's context model on an image model's codes", EntropyTrainConfig)
    for name in CONTEXT_CHANNELS:
        te.add_argument(f"--{name}", type=int, help=f"context model: {name} channels")
    te.set_defaults(func=_train_entropy)

    q = sub.add_parser("quantise-entropy", help="fit coder 2's integer context model to a float context model")
    q.add_argument("float_model", help="float context model (.safetensors from train-entropy)")
    q.add_argument("--calib", nargs="+", required=True, help="folders of training images (PNG, JPEG)")
    _weights_output(q)
    add_flags(q, QuantiseConfig)
    q.set_defaults(func=_quantise_entropy)

    e = sub.add_parser("export", help="export a training checkpoint as fp16 release weights")
    e.add_argument("checkpoint", help="checkpoint.pt from `rnncodec train`")
    _weights_output(e)
    _force_flag(e)
    e.set_defaults(func=_export)

    o = sub.add_parser("export-onnx", help="export an image model's encoding and decoding steps as ONNX graphs, for "
                       "the onnx engine (needs the [train] extra)")
    o.add_argument("weights", nargs="?", help="image model weights (.safetensors); default: the packaged model")
    o.add_argument("-o", "--output", required=True, help="output folder: the packaged weights' (src/rnncodec/weights) or "
                   "one on $RNNCODEC_MODEL_PATH, where compress finds them by the model's id")
    _force_flag(o)
    o.set_defaults(func=_export_onnx)
    register_eval(sub)
    for command in sub.choices.values():
        command.add_argument("-q", "--quiet", action="store_true", help="no notes or progress bars, only errors")
    return p


class _Version(argparse.Action):
    """--version: the package version and the ids of the models it ships, read only when asked."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_) -> None:
        from . import __version__
        from .zoo import packaged_weights

        print(f"rnncodec {__version__}")
        weights = packaged_weights()
        for kind, label in _KINDS.items():
            for path, meta in weights:
                if meta.get("kind") == kind:
                    print(f"  {label}: {meta.get('model_id')} ({path.name})")
        parser.exit()


_KINDS = {"image": "image model", "entropy": "context model, coder 1 (float)", "entropy-int": "context model, coder 2 (integer)"}


def _show_note(message, category, filename, lineno, file=None, line=None) -> None:
    """Notes as one line on stderr; other warnings as Python shows them."""
    if issubclass(category, Note):
        print(f"rnncodec: note: {message}", file=sys.stderr)
    else:
        _show_warning(message, category, filename, lineno, file, line)


_show_warning = warnings.showwarning


def _stop(signum: int, _frame: object) -> None:
    raise Stopped(signum)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.showwarning = _show_note
    warnings.simplefilter("ignore" if args.quiet else "always", Note)
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum in (signal.SIGTERM, signal.SIGHUP):  # as ^C raises KeyboardInterrupt: cleanups run on the way out
        if signal.getsignal(signum) == signal.SIG_DFL:  # one ignored (nohup) stays ignored
            signal.signal(signum, _stop)
    try:
        try:
            args.func(args)
        except MemoryError:
            raise ResourceError("out of memory: the work needs more than this machine gives (a smaller "
                                "--max-pixels or --tile refuses or splits such inputs)") from None
    except RNNCodecError as exc:
        print(f"rnncodec: error: {exc}", file=sys.stderr)
        return next((code for kind, code in EXIT_CODES.items() if isinstance(exc, kind)), 1)
    except ModuleNotFoundError as exc:  # a command of an extra that is not installed
        extra = EXTRAS.get(args.command, "torch")
        print(f"rnncodec: error: {args.command} needs {exc.name}: pip install 'rnncodec[{extra}]'", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"rnncodec: error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Stopped) as exc:
        signum = exc.signum if isinstance(exc, Stopped) else signal.SIGINT
        print(f"rnncodec: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + signum
    except BrokenPipeError:  # the reader left (`rnncodec info k.rnc | head`): quiet, as SIGPIPE would end a C tool
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the flush at exit does not fail again
        return 141
    except Exception as exc:  # a bug: still one line, unless debugging
        if os.environ.get("RNNCODEC_DEBUG"):
            raise
        print(f"rnncodec: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        for signum, handler in previous.items():
            # The process's own command (no argv): the work is over, and a signal now would only cut
            # the interpreter's exit short (ignored dispositions survive it). A caller's: as it was.
            if argv is None or handler is not None:  # None: a handler not set from Python, left alone
                signal.signal(signum, signal.SIG_IGN if argv is None else handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
