"""The ONNX Runtime backend: the exported graphs against the torch model, the packaged graphs against
the packaged weights, and the codec's commands on the onnx engine, the default, without torch."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import entropy_bits, smooth_image
from PIL import Image

from rnncodec import codec, onnx_codec, zoo
from rnncodec.backend import as_backend
from rnncodec.cli import main
from rnncodec.config import preset
from rnncodec.models import RNNCodec
from rnncodec.onnx_export import export_graphs
from rnncodec.quality import psnr_rgb
from rnncodec.stored import load_weights, save_weights
from rnncodec.tiles import TileBox, model_input
from rnncodec.zoo import PACKAGE_WEIGHTS, load_image_model

# the CLI in a fresh interpreter, saying on stderr its exit code and whether torch was imported, and
# tqdm, whose import reads the installed packages' metadata: it loads only to show a progress bar
CLI = ("import json, sys; from rnncodec.cli import main; rc = main(sys.argv[1:]); "
       "print(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules, 'tqdm': 'tqdm' in sys.modules}), file=sys.stderr)")


def _steps(backend, x: np.ndarray, n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A backend's bits and x̂ of each of n iterations, the last without the decoder."""
    bits, recons, state = [], [], backend.begin(x)
    for t in range(n):
        b, state = backend.step(state, t + 1 < n)
        bits.append(b)
        recons.append(backend.reconstruction(state) if t + 1 < n else None)
    return bits, recons


def _decoded(backend, bits: list[np.ndarray], masks: list) -> list[np.ndarray]:
    """A backend's x̂ after each decoding step of these bits (a stopped block's are 0)."""
    recons, state = [], None
    for b, mask in zip(bits, masks):
        signed = b.astype(np.float32) * 2 - 1
        state = backend.decode_step(state, signed if mask is None else signed * mask, mask)
        recons.append(backend.reconstruction(state))
    return recons


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
    x = np.ascontiguousarray(model_input(smooth_image(48, 80), TileBox(0, 48, 0, 80)))
    mask = np.arange(15).reshape(3, 5) % 3 > 0  # some blocks stopped
    masks = [None, mask, mask]  # decoding: first, next (masked), next again
    torch_bits, torch_recons = _steps(as_backend(model, "fp32"), x, 3)  # first, next, next-bits
    bits, recons = _steps(onnx_codec.OnnxImageModel(load_weights(path), tmp_path), x, 3)
    assert [b.tolist() for b in bits] == [b.tolist() for b in torch_bits]
    for recon, expected in zip(recons[:2], torch_recons[:2]):
        np.testing.assert_allclose(recon, expected, atol=1e-5)
    decoded = _decoded(onnx_codec.OnnxImageModel(load_weights(path), tmp_path), torch_bits, masks)
    torch_decoded = _decoded(as_backend(model, "fp32"), torch_bits, masks)
    for recon, expected in zip(decoded, torch_decoded):
        np.testing.assert_allclose(recon, expected, atol=1e-5)
    for expected, encoded in zip(_decoded(as_backend(model, "fp32"), torch_bits, [None] * 3), torch_recons[:2]):
        np.testing.assert_array_equal(expected, encoded)  # torch's decoder replays its encoder exactly


def test_packaged_graphs_are_the_packaged_models():
    """The graphs shipped are those of the named models shipped, the default and wide (regenerate
    them with `rnncodec export-onnx [weights] -o src/rnncodec/weights` when one changes)."""
    model_ids = [load_weights(path).model_id for path in zoo.NAMED_MODELS.values()]
    assert all(zoo.find_graphs(model_id) == PACKAGE_WEIGHTS for model_id in model_ids)
    assert sorted(p.name for p in PACKAGE_WEIGHTS.glob("*.onnx")) == sorted(  # no other model's left behind
        name for model_id in model_ids for name in zoo.graph_names(model_id))
    pixels = smooth_image(64, 96)
    x = np.ascontiguousarray(model_input(pixels, TileBox(0, 64, 0, 96)))
    mask = np.arange(24).reshape(4, 6) % 4 > 0
    for name in zoo.NAMED_MODELS:
        model, reference = onnx_codec.load(name), as_backend(load_image_model(name), "fp32")
        bits, expected = _steps(reference, x, 3)
        got_bits, got = _steps(model, x, 3)
        assert [b.tolist() for b in got_bits] == [b.tolist() for b in bits], name  # equal bits on a test image
        for recon, want in zip(got[:2], expected[:2]):
            np.testing.assert_allclose(recon, want, atol=1e-4, err_msg=name)  # max abs difference
        for recon, want in zip(_decoded(model, bits, [None, mask, mask]), _decoded(reference, bits, [None, mask, mask])):
            np.testing.assert_allclose(recon, want, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("rate", [dict(iterations=4), dict(quality=50), dict(target_psnr=30)])
def test_both_backends_write_files_that_decode_alike(rate):
    """One tile loop and one rate control over either backend: files that any decoder reads, of
    equal bits but where the two encoders' float rounding parts them."""
    pixels = smooth_image(64, 96)
    tiling = dict(tile=48, overlap=16)  # 2×2 tiles of three sizes
    data = codec.encode(pixels, **tiling, **rate).data
    reference = codec.encode(pixels, precision="fp32", engine="torch", **tiling, **rate).data
    assert np.mean(entropy_bits(data) == entropy_bits(reference)) > 0.999
    for engine in ("onnx", "torch"):  # each decodes either file, to pixels of about the same quality
        decoded = [psnr_rgb(pixels, codec.decode(d, precision="fp32", engine=engine).pixels) for d in (data, reference)]
        assert abs(decoded[0] - decoded[1]) < 0.05


def test_a_backend_codes_sizes_past_its_sessions_as_a_fresh_one():
    """Sessions are built for one tile size each, and a long-lived backend (folder mode, a server)
    keeps the latest ones: after more sizes than it keeps, a size it dropped codes and decodes as
    it did the first time."""
    backend = onnx_codec.OnnxImageModel(zoo.stored_weights(zoo.IMAGE, None), PACKAGE_WEIGHTS)
    sizes = [(16 * (1 + i % 3), 16 * (2 + i)) for i in range(onnx_codec.SESSIONS // 2)]
    coded = [(codec.encode(smooth_image(h, w, seed=i), iterations=2, model=backend).data) for i, (h, w) in enumerate(sizes)]
    decoded = [codec.decode(d, model_lookup=lambda _: backend).pixels for d in coded]
    assert codec.encode(smooth_image(*sizes[0], seed=0), iterations=2, model=backend).data == coded[0]
    np.testing.assert_array_equal(codec.decode(coded[0], model_lookup=lambda _: backend).pixels, decoded[0])


def test_cli_compresses_without_torch(tmp_path):
    pixels = smooth_image(40, 56)
    png, rnc = tmp_path / "in.png", tmp_path / "out.rnc"
    Image.fromarray(pixels).save(png)
    args = ["compress", "--engine", "onnx", "-i", "3"]
    r = subprocess.run([sys.executable, "-c", CLI, *args, png, "-o", rnc], capture_output=True, text=True)
    assert json.loads(r.stderr.splitlines()[-1]) == {"rc": 0, "torch": False, "tqdm": False}, r.stderr
    piped = subprocess.run([sys.executable, "-c", CLI, *args, "-"], input=png.read_bytes(), capture_output=True)
    assert piped.stdout == rnc.read_bytes()
    data, reference = rnc.read_bytes(), codec.encode(pixels, iterations=3, precision="fp32", engine="torch").data
    for k in (1, 2, 3):  # every prefix decodes, as torch's encoding of the image does
        psnr = [psnr_rgb(pixels, codec.decode(d, k, precision="fp32", engine="torch").pixels) for d in (data, reference)]
        assert abs(psnr[0] - psnr[1]) < 0.01
    for args in (["decompress", rnc, "-o", tmp_path / "out.png"], ["info", rnc]):
        r = subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True)
        assert json.loads(r.stderr.splitlines()[-1]) == {"rc": 0, "torch": False, "tqdm": False}, r.stderr
    assert "encoder:     fp32 (onnx)" in r.stdout
    decoded = np.asarray(Image.open(tmp_path / "out.png"))
    assert np.abs(decoded.astype(int) - codec.decode(data, precision="fp32", engine="torch").pixels).max() <= 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_compresses_as_its_parent(tmp_path):
    """A process that compressed, then forked (a preforking server, multiprocessing's default on
    Linux): the child's compress gives the parent's bytes, and finishes."""
    script = """
import os, signal, sys
import numpy as np
import rnncodec
pixels = np.load(sys.argv[1])
data = rnncodec.compress(pixels, iterations=2)
pid = os.fork()
if pid == 0:
    signal.alarm(60)
    os._exit(0 if rnncodec.compress(pixels, iterations=2) == data else 3)
sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""
    np.save(tmp_path / "pixels.npy", smooth_image(40, 56))
    r = subprocess.run([sys.executable, "-c", script, tmp_path / "pixels.npy"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_the_engine_is_what_the_command_names(tmp_path):
    """The runtime is --engine's, whatever the rate options: onnx by default, torch where asked;
    a model without graphs, or bf16, is refused by onnx rather than served by torch."""
    pixels = smooth_image(40, 56)
    png = tmp_path / "in.png"
    Image.fromarray(pixels).save(png)
    for engine, extra, uses_torch in (("torch", ["--engine", "torch"], True), ("onnx", ["--target-ms-ssim", "0.9"], False),
                                      ("onnx", ["--tile", "32", "--overlap", "16", "--quality", "50"], False)):
        r = subprocess.run([sys.executable, "-c", CLI, "compress", png, "-o", tmp_path / f"{engine}.rnc", "-f", *extra],
                           capture_output=True, text=True)
        got = json.loads(r.stderr.splitlines()[-1])
        assert got["rc"] == 0 and got["torch"] == uses_torch and (uses_torch or not got["tqdm"]), r.stderr
    torch.manual_seed(1)
    net = RNNCodec(preset("tiny"))
    save_weights(tmp_path / "bare.safetensors", "image", net.cfg.to_json(), net.state_dict())  # no graphs exported
    for bad, code in ((["--model", str(tmp_path / "bare.safetensors")], 5), (["--precision", "bf16"], 1)):
        assert main(["compress", str(png), "-o", str(tmp_path / "x.rnc"), *bad]) == code


def test_export_command(tmp_path, model_dir, monkeypatch, capsys):
    tiny = model_dir / "tiny.safetensors"
    assert main(["export-onnx", str(tiny), "-o", str(tmp_path)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(zoo.graph_names(b""))
    assert main(["export-onnx", str(tiny), "-o", str(tmp_path)]) == 6  # exists, without --force
    monkeypatch.setenv("RNNCODEC_MODEL_PATH", str(tmp_path))
    assert onnx_codec.load(tiny).folder == tmp_path


def test_graphs_that_take_their_weights_as_inputs_are_refused(tmp_path, model_dir, monkeypatch, capsys):
    """Graphs exported before the weights became their external data name the weights as inputs:
    the engine says to export them again rather than failing at a run."""
    import onnx

    tiny = model_dir / "tiny.safetensors"
    monkeypatch.setenv("RNNCODEC_MODEL_PATH", str(tmp_path))  # these graphs before the fixture's
    export_graphs(load_image_model(tiny), tmp_path)
    for path in tmp_path.glob("*.onnx"):
        graph = onnx.load(path, load_external_data=False)
        weights = [i for i in graph.graph.initializer if i.data_location == onnx.TensorProto.EXTERNAL]
        graph.graph.input.extend(onnx.helper.make_tensor_value_info(i.name, i.data_type, i.dims) for i in weights)
        for i in weights:
            graph.graph.initializer.remove(i)
        onnx.save(graph, path)
    png = tmp_path / "in.png"
    Image.fromarray(smooth_image(32, 48)).save(png)
    assert main(["compress", str(png), "-o", str(tmp_path / "x.rnc"), "--model", str(tiny)]) == 5
    assert "export them again" in capsys.readouterr().err
