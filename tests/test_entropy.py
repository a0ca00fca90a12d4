"""Coders 1 and 2: the context models, the range coder, their determinism, and train-entropy.

Coder 2's exactness across machines and its fitting are in test_portable.py."""
import json
import os
import subprocess
import sys
from functools import partial

import numpy as np
import pytest
import torch
from conftest import rowwise_probabilities, smooth_image
from PIL import Image

from rnncodec import codec, container
from rnncodec.cli import main
from rnncodec.codec import encode
from rnncodec.config import ContextConfig
from rnncodec.entropy import RawCoder
from rnncodec.entropy.range_coder import PROB_BITS, BitDecoder, encode_bits, quantise
from rnncodec.errors import FormatError, ModelError
from rnncodec.models.context_model import ContextModel
from rnncodec.stored import load_weights, save_weights
from rnncodec.zoo import MODEL_PATH_ENV, arithmetic_coder, default_coder

_CHILD = """
import sys
from pathlib import Path
import numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
from rnncodec.codec import decode, encode
from rnncodec.config import ContextConfig
from rnncodec import zoo
work, models, coder = Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5]
if sys.argv[2] == "encode":
    make_coder = getattr(zoo, f"{coder}_coder")
    enc = encode(np.load(work / "image.npy"), model=zoo.load_image_model(models / "tiny.safetensors"),
                 coder=make_coder(models / sys.argv[6]), tile=48, overlap=16)
    (work / "file.rnc").write_bytes(enc.data)
else:
    np.save(work / "decoded.npy", decode((work / "file.rnc").read_bytes(), engine="torch").pixels)
"""
CODERS = ["entropy_coder", "integer_coder"]  # coder 1 and coder 2, tiny models (conftest)
# these files' encoders run the torch module: its decoder reproduces them exactly (engines differ by rounding)
decode = partial(codec.decode, engine="torch")


def _child(threads: int, *args) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    subprocess.run([sys.executable, "-c", _CHILD, str(threads), *map(str, args)], check=True, env=env, timeout=120)


@pytest.mark.parametrize("name, weights, fixture", [("arithmetic", "tiny-entropy.safetensors", "entropy_coder"),
                                                    ("integer", "tiny-entropy-int.safetensors", "integer_coder")])
def test_round_trip_across_processes_and_thread_counts(tiny_model, model_dir, tmp_path, request, name, weights, fixture):
    coder = request.getfixturevalue(fixture)
    img = smooth_image(64, 96, seed=5)
    np.save(tmp_path / "image.npy", img)
    _child(1, "encode", tmp_path, model_dir, name, weights)
    _child(2, "decode", tmp_path, model_dir, name)
    torch.set_num_threads(2)
    here = encode(img, model=tiny_model, coder=coder, tile=48, overlap=16)
    assert (tmp_path / "file.rnc").read_bytes() == here.data  # the encoder itself is thread-count independent
    torch.set_num_threads(1)
    np.testing.assert_array_equal(np.load(tmp_path / "decoded.npy"), decode(here.data).pixels)
    header, _ = container.read(here.data)
    assert (header.coder_id, header.entropy_id) == (coder.coder_id, coder.model_id)


@pytest.mark.parametrize("fixture", CODERS)
def test_every_prefix_decodes(tiny_model, fixture, request):
    coder = request.getfixturevalue(fixture)
    img = smooth_image(48, 80, seed=1)
    enc = encode(img, model=tiny_model, coder=coder, tile=32, overlap=16)
    header, chunks = container.read(enc.data)
    for k in range(1, len(chunks) + 1):
        cut = container.write(header, chunks[:k])
        shorter = encode(img, iterations=k, model=tiny_model, coder=coder, tile=32, overlap=16).data
        assert shorter == container.write(container.read(shorter)[0], chunks[:k])  # chunk k needs only chunks 1…k
        np.testing.assert_array_equal(decode(cut).pixels, decode(enc.data, iterations=k).pixels)


@pytest.mark.parametrize("fixture", CODERS)
def test_corrupt_chunk_is_a_format_error(tiny_model, fixture, request):
    enc = encode(smooth_image(48, 64), iterations=3, model=tiny_model, coder=request.getfixturevalue(fixture))
    header, chunks = container.read(enc.data)
    payload, crc = chunks[1]
    rng = np.random.default_rng(0)
    for pos in rng.choice(np.arange(1, len(payload)), size=min(8, len(payload) - 1), replace=False):
        bad = bytearray(payload)
        bad[pos] ^= 1 << int(rng.integers(8))
        data = container.write(header, [chunks[0], (bytes(bad), crc), *chunks[2:]])
        with pytest.raises(FormatError):
            decode(data)


def test_unknown_entropy_model_is_a_model_error(tiny_model, entropy_coder):
    enc = encode(smooth_image(32, 32), iterations=2, model=tiny_model, coder=entropy_coder)
    header, chunks = container.read(enc.data)
    other = container.Header(1, header.model_id, bytes(range(8)), header.width, header.height, header.tile,
                             header.overlap, header.iterations)
    with pytest.raises(ModelError):
        decode(container.write(other, chunks))


def _round_trip(bits: np.ndarray, p: np.ndarray, rng: np.random.Generator) -> int:
    q = quantise(p)
    data = encode_bits(bits, q)
    dec = BitDecoder(data)
    cuts = np.sort(rng.choice(len(bits), size=min(5, len(bits)), replace=False))
    out = np.concatenate([dec.decode(q[a:b]) for a, b in zip([0, *cuts], [*cuts, len(bits)])])
    dec.finish()
    np.testing.assert_array_equal(out, bits)
    return len(data)


@pytest.mark.parametrize("case", ["near0_all_ones", "near1_all_zeros", "exact_0_1_mixed", "random", "matched"])
def test_coder_round_trip_on_adversarial_probabilities(case):
    rng = np.random.default_rng(hash(case) % 2**32)
    n = 20000
    p = {"near0_all_ones": np.full(n, 1e-12), "near1_all_zeros": np.full(n, 1 - 1e-12),
         "exact_0_1_mixed": rng.integers(0, 2, n).astype(np.float64)}.get(case, rng.random(n))
    bits = {"near0_all_ones": np.ones(n, np.uint8), "near1_all_zeros": np.zeros(n, np.uint8),
            "exact_0_1_mixed": 1 - p.astype(np.uint8), "random": rng.integers(0, 2, n, dtype=np.uint8)}.get(
        case, (rng.random(n) < p).astype(np.uint8))
    size = _round_trip(bits, p, rng)
    if case == "matched":
        assert size * 8 < n  # well-predicted bits cost less than one bit each
    else:  # the worst case is bounded by the probability grid: about PROB_BITS bits per bit
        assert size * 8 <= n * (PROB_BITS + 0.1)


def test_quantise_grid():
    q = quantise(np.array([0.0, 1e-30, 0.5, 0.7, 1 - 1e-30, 1.0, np.float32(0.3)]))
    k = q * 2**PROB_BITS
    np.testing.assert_array_equal(k, np.rint(k))
    assert k.min() == 1 and k.max() == 2**PROB_BITS - 1


def test_rowwise_coding_matches_parallel_training_path():
    """The row-by-row coder computes the training graph's probabilities (on the coder's grid): the
    model is causal."""
    torch.manual_seed(0)
    model = ContextModel(ContextConfig(iterations=3, masked=8, state=8, row=8, head=16)).eval()
    bits = (torch.rand(1, 4, 32, 5, 7) < 0.3).float() * 2 - 1
    with torch.no_grad():
        parallel = torch.sigmoid(model(bits))[0].double().numpy()
    np.testing.assert_allclose(rowwise_probabilities(model, bits[0].numpy()), parallel, atol=1e-5, rtol=1e-4)


def test_empty_rows_and_word_alignment():
    with pytest.raises(FormatError):
        BitDecoder(b"\x00\x01\x02")


def test_failed_coder1_chunk_says_the_file_may_decode_only_where_it_was_written(tiny_model, entropy_coder):
    enc = encode(smooth_image(48, 64), iterations=3, model=tiny_model, coder=entropy_coder)
    header, chunks = container.read(enc.data)
    payload, crc = chunks[1]
    bad = bytearray(payload)
    bad[len(bad) // 2] ^= 0x10
    with pytest.raises(FormatError, match="coder 1.*not portable.*only on the kind of machine that wrote it"):
        decode(container.write(header, [chunks[0], (bytes(bad), crc), *chunks[2:]]))


def test_train_entropy_runs_and_resumes(tmp_path, model_dir):
    data = tmp_path / "images"
    data.mkdir()
    for i in range(4):
        Image.fromarray(smooth_image(48, 64, seed=i)).save(data / f"im{i}.png")
    out = tmp_path / "run"
    args = ["train-entropy", str(data), "--out", str(out), "--image-model", str(model_dir / "tiny.safetensors"),
            "--crop", "32", "--batch", "2", "--pool", "3", "--val-fraction", "0.5", "--val-crops", "2",
            "--val-every", "2", "--threads", "1", "--masked", "8", "--state", "8", "--row", "8", "--head", "16"]
    assert main([*args, "--steps", "3"]) == 0
    assert main([*args, "--steps", "4", "--resume"]) == 0
    stored = load_weights(out / "best.safetensors")
    assert stored.kind == "entropy"
    assert stored.metadata["image_model"] == load_weights(model_dir / "tiny.safetensors").model_id.hex()
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val_bits_per_bit" in r] == [2, 3, 4]
    coder = arithmetic_coder(out / "best.safetensors")
    bits = (np.random.default_rng(0).random((32, 3, 4)) < 0.5).astype(np.uint8)
    np.testing.assert_array_equal(coder.session(bits.shape).decode(coder.session(bits.shape).encode(bits)), bits)


def test_raw_coder_still_selectable(tiny_model):
    enc = encode(smooth_image(32, 32), iterations=2, model=tiny_model, coder=RawCoder())
    assert container.read(enc.data)[0].coder_id == 0
    assert decode(enc.data).iterations == 2


def test_default_coder_needs_a_context_model_fitted_to_the_image_model(tiny_model, model_dir, tmp_path, monkeypatch):
    assert default_coder(tiny_model).coder_id == 0  # no context model was fitted to the tiny model's codes
    torch.manual_seed(0)
    net = ContextModel(ContextConfig(iterations=6, masked=8, state=8, row=8, head=16))
    save_weights(tmp_path / "fitted.safetensors", "entropy", net.cfg.to_json(), net.state_dict(),
                 image_model=tiny_model.model_id.hex())
    monkeypatch.setenv(MODEL_PATH_ENV, os.pathsep.join([str(tmp_path), str(model_dir)]))
    coder = default_coder(tiny_model)
    assert coder.coder_id == 1 and coder.model_id == load_weights(tmp_path / "fitted.safetensors").model_id
    enc = encode(smooth_image(32, 48), iterations=3, model=tiny_model)
    assert container.read(enc.data)[0].entropy_id == coder.model_id


@pytest.mark.parametrize("name, coder_id", [("raw", 0), ("arithmetic", 1), ("integer", 2)])
def test_cli_coder_choice(tmp_path, model_dir, name, coder_id):
    png, out = tmp_path / "in.png", tmp_path / "out.rnc"
    Image.fromarray(smooth_image(32, 48)).save(png)
    args = ["compress", str(png), "-o", str(out), "--iterations", "2", "--model", str(model_dir / "tiny.safetensors")]
    assert main([*args, "--coder", name]) == 0
    assert container.read(out.read_bytes())[0].coder_id == coder_id
