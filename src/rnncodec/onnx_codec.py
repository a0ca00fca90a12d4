"""The image model in ONNX Runtime: the default backend (backend.py), which encodes and decodes
without torch.

The codec's default engine runs the image model here, for an image model whose graphs were
exported (`rnncodec export-onnx`, onnx_export.py; the packaged models ship theirs). It computes
in fp32; the tile loop and the rate control above it are codec.py's, the decoding loop
decoder.py's, the same for every backend, and any rnncodec decodes its files.

An encoding graph is one iteration of `RNNCodec.step`, with x̂, the iteration, the blocks coded
(`mask`) and the recurrent states as inputs, and the bits, x̂ and the states after as outputs. A
model has four (`zoo.GRAPH_VARIANTS`): the first iteration, whose states are none (its cells skip
their hidden convolutions, as torch's do) and whose blocks are all coded, and a later one; each
with the decoder, or the bits only, for a last iteration whose x̂ nobody looks at. A decoding
graph is one iteration of `RNNCodec.decode_step`: the bits, x̂, the iteration, the mask and the
decoder's states in, x̂ and the states after out; the first and a later one. The graphs hold no
weights: each names the weights file's tensors, and they are the inputs that the weights file
fills.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from .config import STRIDE, ModelConfig
from .errors import ModelError
from .stored import StoredWeights
from .zoo import IMAGE, find_by_id, find_graphs, graph_name, stored_weights

NEXT = "next_"  # an output named NEXT + an input's name is that input's value at the next iteration
MODEL_ID = "model_id"  # the graphs' metadata key naming the model whose weights they take


class OnnxImageModel:
    """An image model's encoding steps in ONNX Runtime: its graphs, with its weights in fp32
    (their fp16 values, as the torch model computes with). Sessions are built when first used.
    A backend (backend.py): `begin`, `step`, `reconstruction`."""

    precision = "onnx-fp32"  # as the header records it (container.PRECISION_BYTES)
    threads = 0  # ONNX Runtime's intra-op threads; 0: its default, one per physical core

    def __init__(self, weights: StoredWeights, folder: Path) -> None:
        self.model_id, self.cfg, self.folder = weights.model_id, ModelConfig.from_json(weights.config), folder
        self._weights = {name: t.astype(np.float32) for name, t in weights.tensors.items()}
        self._sessions: dict[str, ort.InferenceSession] = {}

    def _session(self, name: str) -> ort.InferenceSession:
        if name not in self._sessions:
            path = self.folder / name
            options = ort.SessionOptions()
            options.log_severity_level = 3  # errors only: the CLI's stderr is for its own notes
            # every fusion ORT knows: the graphs are exported unoptimised (no constant folding)
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.intra_op_num_threads = self.threads
            # idle threads sleep rather than spin: a spinning thread slows a process sharing the cores
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            # tiles of one size reuse the arena's blocks; a large image's first tile sets its size
            options.enable_cpu_mem_arena = True
            try:
                session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime's errors have no common base class
                raise ModelError(f"{path}: not a graph of this model ({str(exc).splitlines()[0]})") from None
            if session.get_modelmeta().custom_metadata_map.get(MODEL_ID) != self.model_id.hex():
                raise ModelError(f"{path} was exported for another model than {self.model_id.hex()}")
            self._sessions[name] = session
        return self._sessions[name]

    def run(self, name: str, values: dict[str, np.ndarray], t: int) -> dict[str, np.ndarray]:
        """Iteration t's graph `name`, from x (or the bits), the mask and the outputs of the one
        before (named as its inputs) in `values`: its outputs by name (bits; with the decoder,
        NEXT + "recon" and the states too)."""
        session = self._session(name)
        feeds = {**self._weights, **values, "t": np.array(t, np.int64)}
        inputs = [i.name for i in session.get_inputs()]
        if "mask" not in feeds and "mask" in inputs:
            feeds["mask"] = np.ones((1, 1, *(s // STRIDE for s in values["recon"].shape[2:])), np.float32)
        if "mask" in values and "mask" not in inputs:
            raise ModelError(f"{self.folder}: graphs exported without block masks: export them again (rnncodec export-onnx)")
        outputs = session.run(None, {name: feeds[name] for name in inputs})
        return dict(zip((o.name for o in session.get_outputs()), outputs))

    def begin(self, x: np.ndarray) -> tuple[int, dict[str, np.ndarray]]:
        return 0, {"x": np.ascontiguousarray(x)}

    def step(self, state: tuple[int, dict[str, np.ndarray]], mask: np.ndarray | None,
             decode: bool) -> tuple[np.ndarray, tuple[int, dict[str, np.ndarray]]]:
        t, values = state
        values = {k: v for k, v in values.items() if k != "mask"}
        if mask is not None and t > 0 and not mask.all():  # the first iteration codes every block
            values["mask"] = mask[None, None].astype(np.float32)
        outputs = self.run(graph_name(self.model_id, t == 0, decode), values, t)
        values.update((name.removeprefix(NEXT), v) for name, v in outputs.items() if name.startswith(NEXT))
        return (outputs["bits"][0] > 0).astype(np.uint8), (t + 1, values if decode else {"x": values["x"]})

    def decode_step(self, state: tuple[int, dict[str, np.ndarray]] | None, bits: np.ndarray,
                    mask: np.ndarray | None) -> tuple[int, dict[str, np.ndarray]]:
        t, values = state or (0, {"recon": np.zeros((1, 3, *(s * STRIDE for s in bits.shape[1:])), np.float32)})
        values = {**{k: v for k, v in values.items() if k != "mask"}, "bits": bits[None]}
        if mask is not None and t > 0 and not mask.all():
            values["mask"] = mask[None, None].astype(np.float32)
        outputs = self.run(graph_name(self.model_id, t == 0, decoder=True), values, t)
        values.update((name.removeprefix(NEXT), v) for name, v in outputs.items() if name.startswith(NEXT))
        return t + 1, values

    def reconstruction(self, state: tuple[int, dict[str, np.ndarray]]) -> np.ndarray:
        return state[1]["recon"]


def load(path: str | Path | None = None) -> OnnxImageModel | None:
    """The image model in `path` (default: the packaged one) in ONNX Runtime; None where the
    weights are not an image model's or its graphs were not exported (torch serves it). A path
    with no weights is the ModelError the torch path would give."""
    return _with_graphs(stored_weights(IMAGE, path))


def by_id(model_id: bytes) -> OnnxImageModel | None:
    """The model a file names, found by id (zoo.find_by_id); None where its graphs are missing."""
    return _with_graphs(find_by_id(model_id, IMAGE))


def _with_graphs(weights: StoredWeights) -> OnnxImageModel | None:
    folder = find_graphs(weights.model_id) if weights.kind == IMAGE else None
    return None if folder is None else OnnxImageModel(weights, folder)
