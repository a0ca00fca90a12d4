"""The torch-free encoder: the exported graphs against the torch model, the packaged graphs against
the packaged weights, and the CLI's choice between the two paths."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import entropy_bits, smooth_image
from PIL import Image

import rnncodec
from rnncodec import codec, onnx_codec, zoo
from rnncodec.cli import _onnx_encoder, build_parser, main
from rnncodec.config import preset
from rnncodec.image import RGBImage
from rnncodec.models import RNNCodec
from rnncodec.onnx_export import export_graphs
from rnncodec.quality import psnr_rgb
from rnncodec.stored import load_weights, save_weights
from rnncodec.tiles import TileBox, model_input
from rnncodec.zoo import PACKAGE_WEIGHTS, default_coder, load_image_model

# the CLI in a fresh interpreter, saying on stderr its exit code and whether torch was imported
CLI = ("import json, sys; from rnncodec.cli import main; rc = main(sys.argv[1:]); "
       "print(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules}), file=sys.stderr)")


def _torch_steps(model, x: np.ndarray, iterations: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The torch model's bits and x̂ of each iteration, in fp32."""
    xt = torch.from_numpy(x)
    bits, recons, at = [], [], model.net.begin(xt)
    with torch.inference_mode():
        for _ in range(iterations):
            b, at = model.net.step(xt, at)
            bits.append(b.numpy())
            recons.append(at.recon.numpy())
    return bits, recons


@pytest.mark.parametrize("overrides", [
    dict(framework="iteration_gain"),  # the shipped model's kind
    dict(encoder_cell="lstm", decoder_cell="lstm", framework="residual_scaling", priming=1),  # (h, c) states, a gain net
    dict(encoder_cell="assoc_lstm", decoder_cell="gru", framework="oneshot"),  # 5-D states, an unstored buffer
])
def test_graphs_compute_the_torch_steps(tmp_path, overrides):
    torch.manual_seed(0)
    net = RNNCodec(preset("tiny", **overrides))
    if net.log_gain is not None:
        with torch.no_grad():
            net.log_gain.uniform_(0, 1)
    path = tmp_path / "model.safetensors"
    save_weights(path, "image", net.cfg.to_json(), net.state_dict())
    model = load_image_model(path)
    export_graphs(model, tmp_path)
    onnx_model = onnx_codec.OnnxImageModel(load_weights(path), tmp_path)
    x = np.ascontiguousarray(model_input(smooth_image(48, 80), TileBox(0, 48, 0, 80)))
    bits, recons = _torch_steps(model, x, 3)
    assert [b.tolist() for b in onnx_model.encode_steps(x, 3)] == [b.tolist() for b in bits]  # next-bits last
    assert next(onnx_model.encode_steps(x, 1)).tolist() == bits[0].tolist()  # first-bits
    first = onnx_model.step({"x": x}, 0, decode=True)
    later = onnx_model.step({"x": x, **{k.removeprefix(onnx_codec.NEXT): v for k, v in first.items()}}, 1, decode=True)
    for out, recon in ((first, recons[0]), (later, recons[1])):
        np.testing.assert_allclose(out[onnx_codec.NEXT + "recon"], recon, atol=1e-5)


def test_packaged_graphs_are_the_packaged_models():
    """The graphs shipped are those of the named models shipped, the default and wide (regenerate
    them with `rnncodec export-onnx [weights] -o src/rnncodec/weights` when one changes)."""
    model_ids = [load_weights(path).model_id for path in zoo.NAMED_MODELS.values()]
    assert all(zoo.find_graphs(model_id) == PACKAGE_WEIGHTS for model_id in model_ids)
    assert sorted(p.name for p in PACKAGE_WEIGHTS.glob("*.onnx")) == sorted(  # no other model's left behind
        zoo.graph_name(model_id, *v) for model_id in model_ids for v in zoo.GRAPH_VARIANTS)
    model, pixels = onnx_codec.load(), smooth_image(64, 96)
    x = np.ascontiguousarray(model_input(pixels, TileBox(0, 64, 0, 96)))
    _, recons = _torch_steps(load_image_model(), x, 1)
    np.testing.assert_allclose(model.step({"x": x}, 0, decode=True)[onnx_codec.NEXT + "recon"], recons[0], atol=1e-5)
    tiling = dict(tile=48, overlap=16)  # 2×2 tiles of three sizes
    data = onnx_codec.encode(RGBImage(pixels), model, default_coder(model.model_id), 4, **tiling)  # checks the graphs' ids
    reference = codec.encode(pixels, iterations=4, precision="fp32", **tiling).data
    assert np.mean(entropy_bits(data) == entropy_bits(reference)) > 0.999
    decoded = [psnr_rgb(pixels, codec.decode(d, precision="fp32").pixels) for d in (data, reference)]
    assert abs(decoded[0] - decoded[1]) < 0.01


def test_cli_compresses_without_torch(tmp_path):
    pixels = smooth_image(40, 56)
    png, rnc = tmp_path / "in.png", tmp_path / "out.rnc"
    Image.fromarray(pixels).save(png)
    r = subprocess.run([sys.executable, "-c", CLI, "compress", png, "-o", rnc, "-i", "3"], capture_output=True, text=True)
    assert json.loads(r.stderr.splitlines()[-1]) == {"rc": 0, "torch": False}, r.stderr
    piped = subprocess.run([sys.executable, "-c", CLI, "compress", "-", "-i", "3"], input=png.read_bytes(),
                           capture_output=True)
    assert piped.stdout == rnc.read_bytes()
    data, reference = rnc.read_bytes(), codec.encode(pixels, iterations=3, precision="fp32").data
    for k in (1, 2, 3):  # every prefix decodes, as torch's encoding of the image does
        psnr = [psnr_rgb(pixels, codec.decode(d, k, precision="fp32").pixels) for d in (data, reference)]
        assert abs(psnr[0] - psnr[1]) < 0.01


def test_cli_compresses_an_image_of_several_tiles_in_torch(tmp_path):
    """Several tiles: torch's encoder after all (its bf16 tiles hold half the memory), same file."""
    pixels = smooth_image(40, 56)
    png, rnc = tmp_path / "in.png", tmp_path / "out.rnc"
    Image.fromarray(pixels).save(png)
    args = ["compress", png, "-o", rnc, "-i", "2", "--tile", "32", "--overlap", "16"]
    r = subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True)
    assert json.loads(r.stderr.splitlines()[-1]) == {"rc": 0, "torch": True}, r.stderr
    assert rnc.read_bytes() == codec.encode(pixels, iterations=2, tile=32, overlap=16).data


@pytest.mark.parametrize("options", [["--precision", "bf16"], ["--bpp", "0.5"], ["--target-psnr", "30"],
                                     ["--coder", "integer"], ["--model", "tiny"]])
def test_other_options_take_the_torch_path(options, model_dir):
    options = [str(model_dir / "tiny.safetensors") if o == "tiny" else o for o in options]  # a model without graphs
    assert _onnx_encoder(build_parser().parse_args(["compress", "in.png", *options]), {}) is None
    assert _onnx_encoder(build_parser().parse_args(["compress", "in.png", "-i", "2"]), {}) is not None


def test_without_onnx_runtime_torch_serves(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    monkeypatch.delitem(sys.modules, "rnncodec.onnx_codec")
    monkeypatch.delattr(rnncodec, "onnx_codec")
    assert _onnx_encoder(build_parser().parse_args(["compress", "in.png"]), {}) is None


def test_export_command(tmp_path, model_dir, monkeypatch, capsys):
    tiny = model_dir / "tiny.safetensors"
    assert main(["export-onnx", str(tiny), "-o", str(tmp_path)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(zoo.GRAPH_VARIANTS)
    assert main(["export-onnx", str(tiny), "-o", str(tmp_path)]) == 6  # exists, without --force
    monkeypatch.setenv("RNNCODEC_MODEL_PATH", str(tmp_path))
    assert onnx_codec.load(tiny).folder == tmp_path
