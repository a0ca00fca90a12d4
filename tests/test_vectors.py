"""Conformance vectors (tests/vectors/): a coder-2 file and its model, stored, so that a change that
would stop old files from decoding, or change what they decode to, fails here.

- tiny-entropy-int.safetensors: a tiny integer context model (rows_above 2, kernel 5 wide);
- coder2.rnc: a 32×48 image at 3 iterations in two tiles, written with it and the tests' tiny
  seeded image model (conftest.save_tiny_image_model, found by id);
- coder2.json: the ids, the SHA-256 of the decoded bits (exact everywhere, by construction) and
  of the decoded pixels (from the float image model: exact on the machine that wrote them);
- probabilities.npy: the model's k for the seeded bits of `_bits()`.

`python tests/test_vectors.py` rewrites them: only for a deliberate format change.
"""
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from conftest import entropy_bits, save_tiny_image_model, save_tiny_integer_model, smooth_image, tiny_context_model

from rnncodec.codec import decode, encode
from rnncodec.entropy.integer_model import build_integer_net
from rnncodec.stored import load_weights
from rnncodec.zoo import MODEL_PATH_ENV, integer_coder, load_image_model

VECTORS = Path(__file__).parent / "vectors"
MODEL = VECTORS / "tiny-entropy-int.safetensors"


def _bits() -> torch.Tensor:
    """1×3×32×4×5 ±1 bits from numpy's seeded generator (the same on every platform)."""
    return torch.from_numpy(np.random.default_rng(10).integers(0, 2, (1, 3, 32, 4, 5)) * 2 - 1)


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def test_stored_model_computes_the_stored_probabilities():
    stored = load_weights(MODEL)
    for reference in (False, True):
        k = build_integer_net(stored, reference).forward(_bits())
        np.testing.assert_array_equal(k.numpy(), np.load(VECTORS / "probabilities.npy"))


def test_stored_file_decodes_to_the_stored_bits_and_pixels(tiny_model, monkeypatch):
    expected = json.loads((VECTORS / "coder2.json").read_text())
    assert tiny_model.model_id.hex() == expected["image_model"], "the tests' tiny image model changed"
    monkeypatch.setenv(MODEL_PATH_ENV, os.pathsep.join([str(VECTORS), os.environ[MODEL_PATH_ENV]]))
    data = (VECTORS / "coder2.rnc").read_bytes()
    assert _sha(entropy_bits(data)) == expected["bits_sha256"]
    assert _sha(decode(data, precision="fp32").pixels) == expected["pixels_sha256"]  # as written: fp32


def _write_vectors() -> None:
    work = VECTORS / "image-model.tmp"
    work.mkdir(parents=True, exist_ok=True)
    save_tiny_image_model(work / "tiny.safetensors")
    image = load_image_model(work / "tiny.safetensors")
    net = tiny_context_model(2, iterations=6, masked=4, state=4, row=4, head=8, rows_above=2, kernel_w=5)
    save_tiny_integer_model(net, MODEL)
    k = build_integer_net(load_weights(MODEL), reference=True).forward(_bits())
    np.save(VECTORS / "probabilities.npy", k.numpy().astype(np.uint16))
    data = encode(smooth_image(32, 48, seed=7), iterations=3, model=image, coder=integer_coder(MODEL), tile=32,
                  overlap=16, precision="fp32").data
    (VECTORS / "coder2.rnc").write_bytes(data)
    os.environ[MODEL_PATH_ENV] = os.pathsep.join([str(VECTORS), str(work)])
    record = {"image_model": image.model_id.hex(), "entropy_model": load_weights(MODEL).model_id.hex(),
              "bits_sha256": _sha(entropy_bits(data)), "pixels_sha256": _sha(decode(data, precision="fp32").pixels)}
    (VECTORS / "coder2.json").write_text(json.dumps(record, indent=1) + "\n")
    (work / "tiny.safetensors").unlink()
    work.rmdir()


if __name__ == "__main__":
    _write_vectors()
