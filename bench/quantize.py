"""int8 and fp16 image-model graphs in ONNX Runtime against the shipped fp32 ones: time and quality.

    python bench/quantize.py --kodak DIR --calibration DIR [--image kodim23] [--iterations 4 16]
        [--quality-iterations 16] [--images 24] [--repeats 3] [--threads 1]

Needs the `dev` extra (onnx; onnxruntime's quantisation and float16 tools ship with it). Variants
of the packaged model's six graphs, written to a temporary folder, each made from the graphs with
the weights moved into them and constant subgraphs folded, as the quantisers need them:
- fp32: the graphs as shipped, the weights their external data (the baseline);
- int8 dynamic: `quantize_dynamic` of the convolutions (ConvInteger: int8 weights, activations
  quantised to uint8 per call);
- int8 QDQ: `quantize_static` of the convolutions in QDQ form (per-channel int8 weights, uint8
  activations with fixed min–max scales), calibrated on --calibration's first CALIBRATION_IMAGES
  images (training images, not Kodak), center crops coded at CALIBRATION_ITERATIONS;
- fp16: `float16.convert_float_to_float16`, fp32 in and out. Where the CPU execution provider
  has no fp16 kernel for an op, ONNX Runtime casts around it and computes it in fp32.
Time: `codec.encode` and `codec.decode` of IMAGE with the variant as the backend, best of
--repeats per iteration count, all variants in turn in one process, ONNX Runtime at --threads.
Quality: PSNR-RGB of the reconstruction after --quality-iterations encoding steps (the forward
pass through the graphs, no entropy coding), mean over the first --images Kodak images, and its
difference from the baseline's. It prints one markdown table.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxruntime.transformers.float16 import convert_float_to_float16

from rnncodec import codec
from rnncodec.image import as_rgb, read_image
from rnncodec.onnx_codec import OnnxImageModel
from rnncodec.quality import psnr_rgb
from rnncodec.tiles import TileBox, model_input
from rnncodec.zoo import IMAGE, find_graphs, graph_names, stored_weights

CALIBRATION_IMAGES = 8
CALIBRATION_CROP = 256
CALIBRATION_ITERATIONS = 16


class Recording(OnnxImageModel):
    """The model, keeping every feed each of its graphs is run on: calibration data."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.feeds: dict[str, list[dict[str, np.ndarray]]] = {}

    def _session(self, name: str, dims: tuple[tuple[str, int], ...]) -> ort.InferenceSession:
        session = super()._session(name, dims)
        if not hasattr(session, "recorded"):  # a session per graph and tile size: each records into its graph's list
            session.recorded, run = self.feeds.setdefault(name, []), session.run
            session.run = lambda outputs, feed: session.recorded.append(feed) or run(outputs, feed)
        return session


class Feeds(CalibrationDataReader):
    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.feeds, None)


def calibration_feeds(folder: Path, calibration: Path) -> dict[str, list[dict[str, np.ndarray]]]:
    """Each graph's feeds over center crops of the calibration images, encoded and decoded (and
    encoded at one iteration, for the first iteration without the decoder)."""
    model = Recording(stored_weights(IMAGE, None), folder)
    for path in sorted(calibration.rglob("*.jpg"))[:CALIBRATION_IMAGES]:
        px = read_image(path).pixels
        y, x = (max(0, (s - CALIBRATION_CROP) // 2) for s in px.shape[:2])
        crop = as_rgb(np.ascontiguousarray(px[y : y + CALIBRATION_CROP, x : x + CALIBRATION_CROP]))
        codec.decode(codec.encode(crop, iterations=CALIBRATION_ITERATIONS, model=model).data, model_lookup=lambda _: model)
        codec.encode(crop, iterations=1, model=model)
    return model.feeds


def embedded(graph: onnx.ModelProto, tensors: dict[str, np.ndarray]) -> onnx.ModelProto:
    """The graph with its weights, external data (onnx_codec.WEIGHTS_FILE), moved into it."""
    for init in graph.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            init.CopyFrom(numpy_helper.from_array(tensors[init.name].astype(np.float32), init.name))
    return graph


def fold(path: Path) -> None:
    """The graph at `path` with its constant subgraphs folded (ONNX Runtime's basic level, which
    keeps the standard operators), in place: the gates' convolution weights, sliced from the
    weights file's tensors, become initializers, as the quantisers need them."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(path.with_suffix(".folded"))
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    path.with_suffix(".folded").replace(path)


def variants(work: Path, calibration: Path) -> dict[str, Path]:
    """A folder of the packaged model's six graphs per variant."""
    weights = stored_weights(IMAGE, None)
    shipped = find_graphs(weights.model_id)
    tensors = dict(weights.tensors)
    base = work / "fp32"
    folders = {name: work / sub for name, sub in (("int8 dynamic (convolutions)", "int8"),
                                                   ("int8 QDQ static (convolutions)", "qdq"), ("fp16", "fp16"))}
    for folder in (base, *folders.values()):
        folder.mkdir()
    for graph in graph_names(weights.model_id):
        onnx.save(embedded(onnx.load(shipped / graph, load_external_data=False), tensors), base / graph)
        fold(base / graph)
        quantize_dynamic(base / graph, folders["int8 dynamic (convolutions)"] / graph,
                         op_types_to_quantize=["Conv"], weight_type=QuantType.QInt8)
    feeds = calibration_feeds(base, calibration)
    for graph in graph_names(weights.model_id):
        quantize_static(base / graph, folders["int8 QDQ static (convolutions)"] / graph,
                        Feeds(feeds[graph]), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        half = convert_float_to_float16(onnx.load(base / graph), keep_io_types=True)
        onnx.save(half, folders["fp16"] / graph)
    return {"fp32 (shipped)": shipped, **folders}


def forward_psnr(model: OnnxImageModel, image: Path, iterations: int) -> float:
    """PSNR-RGB of the encoder's reconstruction after `iterations` steps, the image as one tile."""
    px = read_image(image).pixels
    state = model.begin(model_input(px, TileBox(0, px.shape[0], 0, px.shape[1])))
    for _ in range(iterations):
        _, state = model.step(state, None, decode=True)
    recon = model.reconstruction(state)[0].transpose(1, 2, 0)[: px.shape[0], : px.shape[1]]
    return psnr_rgb(px, np.clip(np.rint((recon + 0.5) * 255), 0, 255).astype(np.uint8))


def coding_seconds(model: OnnxImageModel, image: Path, iterations: int, repeats: int) -> tuple[float, float]:
    """Best-of `encode()` and `decode()` of the image at `iterations`, after one untimed run."""
    rgb = read_image(image)
    data = codec.encode(rgb, iterations=iterations, model=model).data
    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        start = time.perf_counter()
        data = codec.encode(rgb, iterations=iterations, model=model).data
        best[0] = min(best[0], time.perf_counter() - start)
        start = time.perf_counter()
        codec.decode(data, model_lookup=lambda _: model)
        best[1] = min(best[1], time.perf_counter() - start)
    return best[0], best[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kodak", type=Path, required=True)
    ap.add_argument("--calibration", type=Path, required=True, help="training images (JPEGs) to calibrate int8 QDQ on")
    ap.add_argument("--image", default="kodim23")
    ap.add_argument("--iterations", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--quality-iterations", type=int, default=16)
    ap.add_argument("--images", type=int, default=24, help="the first N Kodak images for the quality")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime's intra-op threads")
    args = ap.parse_args()
    OnnxImageModel.threads = args.threads
    weights = stored_weights(IMAGE, None)
    images = sorted(args.kodak.glob("kodim*.png"))[: args.images]
    work = Path(tempfile.mkdtemp())
    try:
        rows, base = [], None
        for name, folder in variants(work, args.calibration).items():
            model = OnnxImageModel(weights, folder)
            try:
                times = [coding_seconds(model, args.kodak / f"{args.image}.png", n, args.repeats) for n in args.iterations]
            except Exception as exc:  # onnxruntime's errors have no common base class
                rows.append(f"| {name} | not run by ONNX Runtime's CPU provider: {str(exc).splitlines()[0][:160]} |")
                continue
            psnr = float(np.mean([forward_psnr(model, image, args.quality_iterations) for image in images]))
            base = psnr if base is None else base
            cells = " | ".join(f"{enc:.3f} | {dec:.3f}" for enc, dec in times)
            rows.append(f"| {name} | {cells} | {psnr:.3f} | {psnr - base:+.3f} |")
            print(rows[-1], flush=True)
    finally:
        shutil.rmtree(work)
    heads = " | ".join(f"encode s ({n} it.) | decode s ({n} it.)" for n in args.iterations)
    print(f"\nONNX Runtime {ort.__version__}, {args.threads} intra-op thread(s), {args.image} best of {args.repeats}; "
          f"PSNR-RGB at {args.quality_iterations} iterations, mean of {len(images)} images\n")
    print(f"| graphs | {heads} | PSNR dB | Δ dB |\n|---|{'---:|' * (2 * len(args.iterations) + 2)}")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
