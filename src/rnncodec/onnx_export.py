"""The image model's steps as ONNX graphs, for the torch-free backend (onnx_codec.py).

    rnncodec export-onnx [WEIGHTS] -o FOLDER     (default: the packaged model)

`EncodeStep` and `DecodeStep` are one iteration of `RNNCodec.step` and `RNNCodec.decode_step`
with their recurrent states spelled out as tensors, traced once on a small image with height
and width left free. The weights stay out of the graphs: each tensor of the model's weights file
is an initializer of that name whose data is external, at its place in onnx_codec's WEIGHTS_FILE,
which onnx_codec lays out from the .safetensors, so that a model's graphs add some 0.1 MB to the
package rather than its weights again. Needs `onnx` (and `onnxscript`, which torch.onnx imports).
"""
from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path

import onnx
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .fileio import atomic_write
from .layers.cells import ConvGRU, ResidualGRU
from .models.rnn_codec import Decoder, RNNCodec, Step
from .onnx_codec import MODEL_ID, NEXT, WEIGHTS_FILE, free_dims, weights_data
from .zoo import DECODER_VARIANTS, GRAPH_VARIANTS, ImageModel, graph_name

OPSET = 17
EXAMPLE = (64, 96)  # the traced image's height and width: small, and not square, so no side stands in for the other


def _flat(states: list) -> list[Tensor]:
    return [s for layer in states for s in layer]


def _nest(flat: list[Tensor], sizes: list[int]) -> list[tuple[Tensor, ...]]:
    """Flat state tensors back into one tuple per layer, `sizes` tensors each."""
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return [tuple(flat[s : s + n]) for s, n in zip(starts, sizes)]


def _gate(conv: nn.Conv2d, x: Tensor, gate: int, size: int) -> Tensor:
    """One gate's maps of a convolution that computes several: its rows of the weights, which the
    graph slices from the weights file's tensor and ONNX Runtime folds into a weight of its own."""
    rows = slice(gate * size, (gate + 1) * size)
    return F.conv2d(x, conv.weight[rows], None if conv.bias is None else conv.bias[rows], conv.stride, conv.padding)


class _GraphGRU(ConvGRU):
    """ConvGRU's step as the graph computes it: a convolution per gate rather than one whose maps
    are sliced into gates. ONNX Runtime computes convolutions in a blocked layout, and a slice is no
    op of that layout: each reordered the maps back. A gate's own maps stay blocked through its sum
    and its activation."""

    def forward(self, x: Tensor, state: tuple[Tensor, ...] | None) -> tuple[Tensor, tuple[Tensor, ...]]:
        xz, xr, xn = (_gate(self.conv_x, x, g, self.hidden) for g in range(3))
        if state is None:
            h = torch.sigmoid(xz) * torch.tanh(xn)
        else:
            h = state[0]
            z, r = (torch.sigmoid(g + _gate(self.conv_h, h, i, self.hidden)) for i, g in enumerate((xz, xr)))
            h = (1 - z) * h + z * torch.tanh(xn + self.conv_rh(r * h))
        return h, (h,)


class _GraphResidualGRU(ResidualGRU):
    def forward(self, x: Tensor, state: tuple[Tensor, ...] | None) -> tuple[Tensor, tuple[Tensor, ...]]:
        h, new_state = _GraphGRU.forward(self, x, state)
        return h + self.skip(x), new_state


class _GraphDecoder(Decoder):
    """The decoder's step as the graph computes it: the output convolution and its tanh before the
    last depth-to-space rather than after it, as one 1×1 convolution whose map o·4 + s reads maps
    c·4 + s alone (its weights times the identity of the four sub-pixels s). The same sums, with
    the last depth-to-space moving the three colours' maps rather than the last layer's, at full size."""

    def _after(self, i: int, x: Tensor) -> Tensor:
        if i + 1 < len(self.rnns):
            return super()._after(i, x)
        w = self.out.weight[:, None, :, None, 0, 0] * torch.eye(4)[None, :, None, :]  # [o, s, c, s'] = W[o, c]·δ(s, s')
        weight = w.reshape(w.shape[0] * 4, w.shape[2] * 4, 1, 1)
        return F.pixel_shuffle(torch.tanh(F.conv2d(x, weight, self.out.bias.repeat_interleave(4))) / 2, 2)


_GRAPH_FORMS = {ConvGRU: _GraphGRU, ResidualGRU: _GraphResidualGRU, Decoder: _GraphDecoder}


def _graph_friendly(net: RNNCodec) -> RNNCodec:
    """A copy of `net` whose cells and decoder compute as the graphs should (the graph forms above),
    with the same weights under the same names."""
    net = copy.deepcopy(net)
    for module in net.modules():
        module.__class__ = _GRAPH_FORMS.get(type(module), type(module))
    return net


class EncodeStep(nn.Module):
    """An encoding iteration: (x, x̂, t, mask, encoder states, decoder states) -> (bits, x̂', states').
    The first iteration takes x alone (no states: the cells' shortcut for none; every block
    coded); without the decoder, the step needs no decoder states and gives the bits alone."""

    def __init__(self, net: RNNCodec, sizes: tuple[list[int], list[int]], first: bool, decode: bool) -> None:
        super().__init__()
        self.net, self.sizes, self.first, self.decode = net, sizes, first, decode

    def forward(self, x: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
        mask = None
        if self.first:
            at = self.net.begin(x)
        else:
            recon, t, mask, *states = rest
            n_enc = sum(self.sizes[0])
            dec = _nest(states[n_enc:], self.sizes[1]) if self.decode else [None] * len(self.sizes[1])
            at = Step(t, _nest(states[:n_enc], self.sizes[0]), dec, recon)
        bits, after = self.net.step(x, at, mask=mask, decode=self.decode)
        return (bits, after.recon, *_flat(after.enc), *_flat(after.dec)) if self.decode else (bits,)


class DecodeStep(nn.Module):
    """A decoding iteration: (bits, x̂, t, mask, decoder states) -> (x̂', states'); the first takes
    (bits, x̂ = 0) alone (every block coded)."""

    def __init__(self, net: RNNCodec, sizes: list[int], first: bool) -> None:
        super().__init__()
        self.net, self.sizes, self.first = net, sizes, first

    def forward(self, bits: Tensor, recon: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
        if self.first:
            t, mask, dec = 0, None, [None] * len(self.sizes)
        else:
            t, mask, dec = rest[0], rest[1], _nest(list(rest[2:]), self.sizes)
        recon, dec = self.net.decode_step(bits, dec, recon, t, mask)
        return (recon, *_flat(dec))


def export_step(model: ImageModel, step: nn.Module, inputs: dict[str, Tensor], outputs: list[str]) -> onnx.ModelProto:
    """`step` traced on `inputs` as a graph of free height and width that names its model and
    takes the model's weights from outside (the module docstring)."""
    example = tuple(inputs.values())
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # `t == 0` in a later step is False: traced as such
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter, which traces the shortcuts as run
        warnings.filterwarnings("ignore", "TF32 acceleration", UserWarning)  # from switching oneDNN off and on
        with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):  # plain convolutions
            results = step.eval()(*example)
            ndim = {n: t.ndim for n, t in [*inputs.items(), *zip(outputs, results)]}
            torch.onnx.export(step, example, buf, dynamo=False, opset_version=OPSET, input_names=list(inputs),
                              output_names=outputs, do_constant_folding=False,
                              dynamic_axes={n: dict(zip((d - 2, d - 1), free_dims(n))) for n, d in ndim.items() if d >= 4})
    graph = onnx.load_from_string(buf.getvalue())
    _weights_outside(graph, model)
    onnx.helper.set_model_props(graph, {MODEL_ID: model.model_id.hex(), "config": model.cfg.to_json()})
    return graph


def _weights_outside(graph: onnx.ModelProto, model: ImageModel) -> None:
    """The initializers that the model's weights file holds take their data from WEIGHTS_FILE,
    under the file's names."""
    places = weights_data({k: v.numpy() for k, v in model.net.state_dict().items()})[1]
    renamed = {}
    for init in graph.graph.initializer:
        name = init.name.removeprefix("net.")  # the step module's own prefix
        if name in places:  # not the others: computed while tracing, or a buffer not stored (the associative LSTM's permutations)
            renamed[init.name] = name
            init.name = name
            init.ClearField("raw_data")
            init.ClearField("float_data")
            init.data_location = onnx.TensorProto.EXTERNAL
            offset, length = places[name]
            for key, value in (("location", WEIGHTS_FILE), ("offset", str(offset)), ("length", str(length))):
                init.external_data.add(key=key, value=value)
    for node in graph.graph.node:
        node.input[:] = [renamed.get(i, i) for i in node.input]


def export_graphs(model: ImageModel, folder: Path, force: bool = False) -> list[Path]:
    """Write the model's graphs for onnx_codec (`zoo.graph_names`) into `folder`; their paths."""
    x = torch.rand(1, 3, *EXAMPLE, generator=torch.Generator().manual_seed(0)) - 0.5
    with torch.inference_mode():
        bits, at = model.net.step(x, model.net.begin(x))
    net = _graph_friendly(model.net)
    sizes = [len(s) for s in at.enc], [len(s) for s in at.dec]  # tensors per layer's state: the cell's (1 for a GRU)
    enc = {f"enc_{i}": s.clone() for i, s in enumerate(_flat(at.enc))}
    dec = {f"dec_{i}": s.clone() for i, s in enumerate(_flat(at.dec))}
    folder.mkdir(parents=True, exist_ok=True)
    mask = (torch.rand(1, 1, EXAMPLE[0] // 16, EXAMPLE[1] // 16, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    paths = []
    for first, decode in GRAPH_VARIANTS:
        inputs = {"x": x} if first else {"x": x, "recon": at.recon.clone(), "t": torch.tensor(1), "mask": mask, **enc,
                                         **(dec if decode else {})}
        outputs = ["bits", *(NEXT + n for n in ("recon", *enc, *dec) if decode)]
        graph = export_step(model, EncodeStep(net, sizes, first, decode), inputs, outputs)
        paths.append(_write(graph, folder / graph_name(model.model_id, first, decode), force))
    for first in DECODER_VARIANTS:
        inputs = {"bits": bits.clone(), "recon": torch.zeros_like(x) if first else at.recon.clone(),
                  **({} if first else {"t": torch.tensor(1), "mask": mask, **dec})}
        outputs = [NEXT + n for n in ("recon", *dec)]
        graph = export_step(model, DecodeStep(net, sizes[1], first), inputs, outputs)
        paths.append(_write(graph, folder / graph_name(model.model_id, first, decoder=True), force))
    return paths


def _write(graph: onnx.ModelProto, path: Path, force: bool) -> Path:
    atomic_write(path, lambda f: f.write(graph.SerializeToString()), force)
    return path
