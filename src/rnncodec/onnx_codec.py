"""The torch-free encoder: the image model in ONNX Runtime, then the payload coder and the container.

Starting torch takes about a second; ONNX Runtime with numpy a tenth of that, and it runs the
image model as fast (docs/RESULTS.md, "ONNX Runtime against torch"). So `rnncodec compress`
takes this path where it serves (cli.py): a fixed number of iterations, the default coder, and
an image model whose graphs were exported (`rnncodec export-onnx`, onnx_export.py). It computes
in fp32; its files are those of torch's fp32 encoder to within rounding, and any rnncodec
decodes them.

A graph is one iteration of `RNNCodec.step`, with x̂, the iteration and the recurrent states
as inputs, and the bits, x̂ and the states after as outputs. A model has four (`zoo.GRAPH_VARIANTS`): the
first iteration, whose states are none (its cells skip their hidden convolutions, as torch's
do), and a later one; each with the decoder, or the bits only, for a last iteration whose x̂
nobody looks at. The graphs hold no weights: each names the weights file's tensors, and they
are the inputs that the weights file fills.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort

from . import container
from .config import STRIDE, ModelConfig
from .entropy import BitCoder
from .errors import ModelError
from .image import RGBImage
from .stored import StoredWeights
from .tiles import DEFAULT_OVERLAP, DEFAULT_TILE, check_tiling, model_input, plan_tiles
from .zoo import IMAGE, find_graphs, graph_name, stored_weights

NEXT = "next_"  # an output named NEXT + an input's name is that input's value at the next iteration
MODEL_ID = "model_id"  # the graphs' metadata key naming the model whose weights they take


class OnnxImageModel:
    """An image model's encoding steps in ONNX Runtime: its graphs, with its weights in fp32
    (their fp16 values, as the torch model computes with). Sessions are built when first used."""

    def __init__(self, weights: StoredWeights, folder: Path) -> None:
        self.model_id, self.cfg, self.folder = weights.model_id, ModelConfig.from_json(weights.config), folder
        self._weights = {name: t.astype(np.float32) for name, t in weights.tensors.items()}
        self._sessions: dict[tuple[bool, bool], ort.InferenceSession] = {}

    def _session(self, first: bool, decode: bool) -> ort.InferenceSession:
        if (first, decode) not in self._sessions:
            path = self.folder / graph_name(self.model_id, first, decode)
            options = ort.SessionOptions()
            options.log_severity_level = 3  # errors only: the CLI's stderr is for its own notes
            # idle threads sleep rather than spin: with another process busy on one of 2 cores, a
            # spinning thread took `rnncodec compress kodim23.png -i 4` from 1.08 to 1.39 s
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            try:
                session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime's errors have no common base class
                raise ModelError(f"{path}: not a graph of this model ({str(exc).splitlines()[0]})") from None
            if session.get_modelmeta().custom_metadata_map.get(MODEL_ID) != self.model_id.hex():
                raise ModelError(f"{path} was exported for another model than {self.model_id.hex()}")
            self._sessions[first, decode] = session
        return self._sessions[first, decode]

    def step(self, values: dict[str, np.ndarray], t: int, decode: bool) -> dict[str, np.ndarray]:
        """Iteration t, from x and the outputs of the one before (named as its inputs) in `values`:
        the graph's outputs by name (bits; with `decode`, NEXT + "recon" and the states too)."""
        session = self._session(t == 0, decode)
        feeds = {**self._weights, **values, "t": np.array(t, np.int64)}
        outputs = session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})
        return dict(zip((o.name for o in session.get_outputs()), outputs))

    def encode_steps(self, x: np.ndarray, iterations: int) -> Iterator[np.ndarray]:
        """Each iteration's bits (1×C×h×w, ±1) of a 1×3×H×W tile in [−0.5, 0.5] (C-contiguous)."""
        values = {"x": x}
        for t in range(iterations):
            outputs = self.step(values, t, t + 1 < iterations)
            values.update((name.removeprefix(NEXT), v) for name, v in outputs.items() if name.startswith(NEXT))
            yield outputs["bits"]


def load(path: str | Path | None = None) -> OnnxImageModel | None:
    """The image model in `path` (default: the packaged one) in ONNX Runtime; None where the
    weights are not an image model's or its graphs were not exported (torch serves it). A path
    with no weights is the ModelError the torch path would give."""
    weights = stored_weights(IMAGE, path)
    folder = find_graphs(weights.model_id) if weights.kind == IMAGE else None
    return None if folder is None else OnnxImageModel(weights, folder)


def encode(rgb: RGBImage, model: OnnxImageModel, coder: BitCoder, iterations: int | None = None,
           tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP, progress: bool = False) -> bytes:
    """`codec.encode` of a fixed number of iterations (default: all the model has): the file."""
    n = model.cfg.coded_iterations(iterations)
    check_tiling(tile, overlap)
    h, w = rgb.pixels.shape[:2]
    header = container.Header(coder.coder_id, model.model_id, coder.model_id, w, h, tile, overlap, n, rgb.icc_profile,
                              None if rgb.alpha is None else container.pack_alpha(rgb.alpha), precision="fp32")
    chunks = container.Chunks(n)
    boxes = plan_tiles(h, w, tile, overlap)
    if progress:
        from tqdm import tqdm

        boxes = tqdm(boxes, desc="encoding", unit="tile", delay=1.0)
    for box in boxes:
        x = np.ascontiguousarray(model_input(rgb.pixels, box))
        session = coder.session((model.cfg.bits, x.shape[2] // STRIDE, x.shape[3] // STRIDE))
        for t, bits in enumerate(model.encode_steps(x, n)):
            b = (bits[0] > 0).astype(np.uint8)
            chunks.add(t, session.encode(b), b)
    return chunks.file(header, n)
