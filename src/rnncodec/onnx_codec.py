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
weights: their weights are initializers whose data is external, in a file named WEIGHTS_FILE that
no disk holds: `weights_data` lays it out from the weights file, and each session takes it from
memory. Being initializers, not inputs, they are constants to ONNX Runtime, which folds them and
packs the convolutions' weights in its own layout once, when the session is built. Not offsets into
the .safetensors itself: its header, which the model id does not cover, may place the tensors
elsewhere in another copy of the same model.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .config import STRIDE, ModelConfig
from .errors import ModelError
from .stored import StoredWeights
from .zoo import IMAGE, cached, find_by_id, find_graphs, graph_name, stored_weights

NEXT = "next_"  # an output named NEXT + an input's name is that input's value at the next iteration
MODEL_ID = "model_id"  # the graphs' metadata key naming the model whose weights they take
WEIGHTS_FILE = "weights"  # the external data file the graphs' weights name (weights_data; web/imagemodel.js too)
SESSIONS = 12  # a model's sessions kept: its three encoding graphs at a tiled image's four tile sizes


def free_dims(name: str) -> tuple[str, str]:
    """The names of an input's free height and width in the graphs (onnx_export), which a session fixes."""
    return f"{name}_height", f"{name}_width"


def weights_data(tensors: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, tuple[int, int]]]:
    """WEIGHTS_FILE's bytes: a weights file's tensors in fp32 (their fp16 values, as the torch model
    computes with), one after another in the order of their names; and each one's (offset, length)
    in it, which the exporter writes into the graphs."""
    names = sorted(tensors)
    arrays = [np.ascontiguousarray(tensors[name], np.float32).reshape(-1) for name in names]
    ends = np.cumsum([a.nbytes for a in arrays]).tolist()
    places = {name: (end - a.nbytes, a.nbytes) for name, a, end in zip(names, arrays, ends)}
    return np.concatenate(arrays).view(np.uint8), places


class OnnxImageModel:
    """An image model's encoding steps in ONNX Runtime: its graphs, with its weights in fp32
    (weights_data). Sessions are built when first used, one for each graph and tile size, and the
    latest SESSIONS kept. A backend (backend.py): `begin`, `step`, `reconstruction`."""

    precision = "onnx-fp32"  # as the header records it (container.PRECISION_BYTES)
    # ONNX Runtime's intra-op threads. It reads no environment variable of its own, so the one
    # that sets torch's and the BLAS libraries' threads sets its too, and one setting caps the
    # whole process (several codec processes sharing a machine each ask for one); unset, 0: its
    # default, one per physical core. Folder mode's workers set 1.
    threads = int(os.environ["OMP_NUM_THREADS"]) if os.environ.get("OMP_NUM_THREADS", "").isdigit() else 0

    def __init__(self, weights: StoredWeights, folder: Path) -> None:
        self.model_id, self.cfg, self.folder = weights.model_id, ModelConfig.from_json(weights.config), folder
        self._weights_data, self._weight_names = weights_data(weights.tensors)[0], set(weights.tensors)
        self._sessions: dict[tuple[str, tuple[tuple[str, int], ...]], ort.InferenceSession] = {}

    def _session(self, name: str, dims: tuple[tuple[str, int], ...]) -> ort.InferenceSession:
        """Graph `name`'s session for one tile's size: `dims`, each free dimension's size."""
        key = name, dims
        if key in self._sessions:
            self._sessions[key] = self._sessions.pop(key)  # the most recently used last
            return self._sessions[key]
        path = self.folder / name
        try:
            session = ort.InferenceSession(str(path), self._options(dims), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's errors have no common base class
            raise ModelError(f"{path}: not a graph of this model ({str(exc).splitlines()[0]})") from None
        if session.get_modelmeta().custom_metadata_map.get(MODEL_ID) != self.model_id.hex():
            raise ModelError(f"{path} was exported for another model than {self.model_id.hex()}")
        if any(i.name in self._weight_names for i in session.get_inputs()):
            raise ModelError(f"{path}: graphs that take their weights as inputs: export them again (rnncodec export-onnx)")
        if len(self._sessions) == SESSIONS:  # each holds its own packed weights: a folder of many sizes keeps the latest
            del self._sessions[next(iter(self._sessions))]
        self._sessions[key] = session
        return session

    def _options(self, dims: tuple[tuple[str, int], ...]) -> ort.SessionOptions:
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: the CLI's stderr is for its own notes
        # every rewrite ORT knows, layout ones included: the graphs are exported unoptimised, and
        # each level up is faster. Rewrites change rounding, not determinism: one machine and
        # ORT version write the same bits at any thread count, and any decoder decodes them exactly
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # the tile's size fixed: with every shape known, ORT proves the two sums of a gate the same
        # shape and folds their sum and the gate's activation into a convolution, which it cannot
        # do for free sizes. A session serves one size, and an image has few (its tiles' and the
        # smaller sizes a target tries)
        for dim, size in dims:
            options.add_free_dimension_override_by_name(dim, size)
        options.intra_op_num_threads = self.threads
        # one graph at a time: the steps are chains of convolutions, with nothing to run beside them
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # idle threads sleep rather than spin: a spinning thread slows a process sharing the cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # one arena for every session of the process, which keeps the activations' blocks between
        # runs: every iteration of a tile, and every tile, reuses them instead of asking the system
        # again. A session's own arena would hold its largest tile's blocks beside the other
        # steps' arenas. It holds the largest tile's blocks until the process ends, which the
        # tile size bounds
        _share_arena()
        options.add_session_config_entry("session.use_env_allocators", "1")
        # no memory pattern: it plans one block for a whole run per input shape, which the arena
        # then keeps for each shape seen (an image's edge tiles are other shapes), and it saves
        # no time here; freed blocks go back to the arena for the next tensor of any shape
        options.enable_mem_pattern = False
        options.add_external_initializers_from_files_in_memory([WEIGHTS_FILE], [self._weights_data],
                                                               [self._weights_data.size])
        return options

    def run(self, name: str, values: dict[str, np.ndarray], t: int) -> dict[str, np.ndarray]:
        """Iteration t's graph `name`, from x (or the bits), the mask and the outputs of the one
        before (named as its inputs) in `values`: its outputs by name (bits; with the decoder,
        NEXT + "recon" and the states too)."""
        feeds = {**values, "t": np.array(t, np.int64)}
        if "mask" not in feeds:  # every block; fixed in size, as every input the graph may take
            pixels = next(values[k] for k in ("recon", "x") if k in values).shape[2:]
            feeds["mask"] = np.ones((1, 1, *(s // STRIDE for s in pixels)), np.float32)
        session = self._session(name, tuple((dim, v.shape[axis]) for key, v in sorted(feeds.items()) if v.ndim == 4
                                            for axis, dim in zip((2, 3), free_dims(key))))
        inputs = [i.name for i in session.get_inputs()]
        if "mask" in values and "mask" not in inputs:
            raise ModelError(f"{self.folder}: graphs exported without block masks: export them again (rnncodec export-onnx)")
        outputs = session.run(None, {name: feeds[name] for name in inputs})
        return dict(zip((o.name for o in session.get_outputs()), outputs))

    def begin(self, x: np.ndarray) -> tuple[int, dict[str, np.ndarray]]:
        return 0, {"x": np.ascontiguousarray(x)}

    def step(self, state: tuple[int, dict[str, np.ndarray]],
             decode: bool) -> tuple[np.ndarray, tuple[int, dict[str, np.ndarray]]]:
        t, values = state
        outputs = self.run(graph_name(self.model_id, t == 0, decode), values, t)
        if not decode:
            return (outputs["bits"][0] > 0).astype(np.uint8), (t + 1, {"x": values["x"]})
        values = {**values, **{name.removeprefix(NEXT): v for name, v in outputs.items() if name.startswith(NEXT)}}
        return (outputs["bits"][0] > 0).astype(np.uint8), (t + 1, values)

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


@functools.cache
def _share_arena() -> None:
    """The process's CPU arena, which sessions asking for the environment's allocators share. It
    grows by powers of two, ORT's default, and splits its regions: a tile of another shape (an
    image's edge tiles) fits in what the last one freed, where regions grown by what each
    allocation asked left gaps that no later block fitted, and the peak crept up tile by tile."""
    cpu = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(cpu, ort.OrtArenaCfg(0, 0, -1, -1))  # no cap, powers of two, ORT's defaults


@cached(4)
def load(path: str | Path | None = None) -> OnnxImageModel | None:
    """The image model in `path` (default: the packaged one) in ONNX Runtime; None where the
    weights are not an image model's or its graphs were not exported (torch serves it). A path
    with no weights is the ModelError the torch path would give. Kept, as the torch models are
    (zoo), with the sessions it built: each session packs the weights again."""
    return _with_graphs(stored_weights(IMAGE, path))


@cached(4)
def by_id(model_id: bytes) -> OnnxImageModel | None:
    """The model a file names, found by id (zoo.find_by_id); None where its graphs are missing."""
    return _with_graphs(find_by_id(model_id, IMAGE))


if hasattr(os, "register_at_fork"):  # a forked child builds its own sessions: their pools' threads stay in the parent
    os.register_at_fork(before=lambda: (load.cache_clear(), by_id.cache_clear()))


def _with_graphs(weights: StoredWeights) -> OnnxImageModel | None:
    folder = find_graphs(weights.model_id) if weights.kind == IMAGE else None
    return None if folder is None else OnnxImageModel(weights, folder)
