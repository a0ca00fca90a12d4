"""The image model in ONNX Runtime: a backend (backend.py) that encodes without torch.

Starting torch is slow beside ONNX Runtime with numpy (docs/RESULTS.md, "ONNX Runtime against
torch"), so `rnncodec compress --engine onnx` runs the image model here, for an image model whose
graphs were exported (`rnncodec export-onnx`, onnx_export.py). It computes in fp32; the tile loop
and the rate control above it are codec.py's, the same for every backend, and any rnncodec
decodes its files.

A graph is one iteration of `RNNCodec.step`, with x̂, the iteration, the blocks coded (`mask`)
and the recurrent states as inputs, and the bits, x̂ and the states after as outputs. A model has
four (`zoo.GRAPH_VARIANTS`): the first iteration, whose states are none (its cells skip their
hidden convolutions, as torch's do) and whose blocks are all coded, and a later one; each with
the decoder, or the bits only, for a last iteration whose x̂ nobody looks at. The graphs hold no
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
from .zoo import IMAGE, find_graphs, graph_name, stored_weights

NEXT = "next_"  # an output named NEXT + an input's name is that input's value at the next iteration
MODEL_ID = "model_id"  # the graphs' metadata key naming the model whose weights they take


class OnnxImageModel:
    """An image model's encoding steps in ONNX Runtime: its graphs, with its weights in fp32
    (their fp16 values, as the torch model computes with). Sessions are built when first used.
    A backend (backend.py): `begin`, `step`, `reconstruction`."""

    precision = "fp32"

    def __init__(self, weights: StoredWeights, folder: Path) -> None:
        self.model_id, self.cfg, self.folder = weights.model_id, ModelConfig.from_json(weights.config), folder
        self._weights = {name: t.astype(np.float32) for name, t in weights.tensors.items()}
        self._sessions: dict[tuple[bool, bool], ort.InferenceSession] = {}

    def _session(self, first: bool, decode: bool) -> ort.InferenceSession:
        if (first, decode) not in self._sessions:
            path = self.folder / graph_name(self.model_id, first, decode)
            options = ort.SessionOptions()
            options.log_severity_level = 3  # errors only: the CLI's stderr is for its own notes
            # idle threads sleep rather than spin: a spinning thread slows a process sharing the cores
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            try:
                session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime's errors have no common base class
                raise ModelError(f"{path}: not a graph of this model ({str(exc).splitlines()[0]})") from None
            if session.get_modelmeta().custom_metadata_map.get(MODEL_ID) != self.model_id.hex():
                raise ModelError(f"{path} was exported for another model than {self.model_id.hex()}")
            self._sessions[first, decode] = session
        return self._sessions[first, decode]

    def run(self, values: dict[str, np.ndarray], t: int, decode: bool) -> dict[str, np.ndarray]:
        """Iteration t's graph, from x, the mask and the outputs of the one before (named as its
        inputs) in `values`: its outputs by name (bits; with `decode`, NEXT + "recon" and the
        states too)."""
        session = self._session(t == 0, decode)
        feeds = {**self._weights, **values, "t": np.array(t, np.int64)}
        inputs = [i.name for i in session.get_inputs()]
        if "mask" not in feeds and "mask" in inputs:
            feeds["mask"] = np.ones((1, 1, *(s // STRIDE for s in values["x"].shape[2:])), np.float32)
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
        outputs = self.run(values, t, decode)
        values.update((name.removeprefix(NEXT), v) for name, v in outputs.items() if name.startswith(NEXT))
        return (outputs["bits"][0] > 0).astype(np.uint8), (t + 1, values if decode else {"x": values["x"]})

    def reconstruction(self, state: tuple[int, dict[str, np.ndarray]]) -> np.ndarray:
        return state[1]["recon"]


def load(path: str | Path | None = None) -> OnnxImageModel | None:
    """The image model in `path` (default: the packaged one) in ONNX Runtime; None where the
    weights are not an image model's or its graphs were not exported (torch serves it). A path
    with no weights is the ModelError the torch path would give."""
    weights = stored_weights(IMAGE, path)
    folder = find_graphs(weights.model_id) if weights.kind == IMAGE else None
    return None if folder is None else OnnxImageModel(weights, folder)
