"""Conformance vectors (tests/vectors/): small files and the models they name, stored, so that a
change that would stop old files from decoding, or change what they decode to, fails here.

- tiny-entropy-int.safetensors: a tiny integer context model (rows_above 2, kernel 5 wide);
- coder2.rnc: a 32×48 image at 3 iterations in two tiles, written with it and the tests' tiny
  seeded image model (conftest.save_tiny_image_model, found by id);
- default-*.rnc and wide-*.rnc: written with the context models the package ships (coder 1's
  float one, coder 2's integer one), those of the default image model (0078779592de70b3) and of
  the wide one (9bbb9a97810b86e6, `--model wide`), over the tiny image model's bits: one per coder
  at an odd size and in several tiles, and with the default's coder 2 one with block iteration
  counts (format version 2), one with an alpha plane, and one with a display size (coded at half
  size, with alpha). The models they name must stay findable (docs/FORMAT.md, "Compatibility");
- NAME.json beside each NAME.rnc: the ids and the SHA-256 of the decoded bits (exact everywhere
  for coders 0 and 2, by construction) and of the alpha plane (lossless);
- NAME.png: the decoded pixels, from the float image model: exact on the machine that wrote them,
  within float rounding on another CPU;
- probabilities.npy: the model's k for the seeded bits of `_bits()`.

`python tests/test_vectors.py` writes the vectors that are missing; delete one first to rewrite
it, and only for a deliberate format change.
"""
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import entropy_bits, save_tiny_image_model, save_tiny_integer_model, smooth_image, tiny_context_model
from PIL import Image

from rnncodec import codec, container
from rnncodec.codec import encode
from rnncodec.entropy.base import BitCoder
from rnncodec.entropy.integer_model import build_integer_net
from rnncodec.stored import load_weights
from rnncodec.zoo import (
    DROPPED_AT,
    MODEL_PATH_ENV,
    ImageModel,
    arithmetic_coder,
    find,
    image_model_by_id,
    integer_coder,
    load_image_model,
)

VECTORS = Path(__file__).parent / "vectors"
MODEL = VECTORS / "tiny-entropy-int.safetensors"
# the image models the package ships, which every release from 1.0 on keeps (docs/FORMAT.md)
SHIPPED_IMAGE_MODELS = ["0078779592de70b3", "9bbb9a97810b86e6"]

# the vectors record the pixels the torch engine decodes in fp32 (the engines' pixels differ by rounding; their bits do not)
decode = partial(codec.decode, engine="torch")


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


NAMES = sorted(p.stem for p in VECTORS.glob("*.rnc"))


def decoded_record(data: bytes) -> tuple[dict, np.ndarray]:
    """What a vector's JSON records of its file: the models' ids, and the SHA-256 of its bits and
    of its alpha plane; and the pixels it decodes to (fp32)."""
    header, _ = container.read(data)
    dec = decode(data, precision="fp32")
    record = {"image_model": header.model_id.hex(), "entropy_model": header.entropy_id.hex(),
              "bits_sha256": _sha(entropy_bits(data))}
    if dec.alpha is not None:
        record["alpha_sha256"] = _sha(dec.alpha)
    return record, dec.pixels


@pytest.mark.parametrize("name", NAMES)
def test_stored_file_decodes_to_the_stored_bits_and_pixels(tiny_model, monkeypatch, name):
    expected = json.loads((VECTORS / f"{name}.json").read_text())
    assert tiny_model.model_id.hex() == expected["image_model"], "the tests' tiny image model changed"
    monkeypatch.setenv(MODEL_PATH_ENV, os.pathsep.join([str(VECTORS), os.environ[MODEL_PATH_ENV]]))
    record, pixels = decoded_record((VECTORS / f"{name}.rnc").read_bytes())
    assert record == expected
    # a CPU's float kernels round their own way (docs/RESULTS.md, "Portability"); a change of format or model moves far more
    difference = np.abs(pixels.astype(int) - np.asarray(Image.open(VECTORS / f"{name}.png")))
    assert difference.max() <= 2 and difference.mean() < 0.05


def test_every_shipped_image_model_is_in_the_package():
    """Files name their image model by id; one a release shipped must stay (docs/FORMAT.md)."""
    for model_id in SHIPPED_IMAGE_MODELS:
        assert image_model_by_id(bytes.fromhex(model_id)).model_id.hex() == model_id



@pytest.mark.parametrize("kind", ["image", "entropy-int"])
def test_a_file_of_a_dropped_model_says_which_build_wrote_it(tmp_path, kind):
    """Models of the 0.1.0 development builds left the package; their files get a one-line
    error that names the builds and where the weights still are, and exit code 5."""
    header, chunks = container.read((VECTORS / "default-coder2-tiles.rnc").read_bytes())
    dropped = {"image": dict(model_id=bytes.fromhex("3419f1cfdb626ccb")),
               "entropy-int": dict(entropy_id=bytes.fromhex("2c8714206b3e8c7e"))}[kind]
    if kind == "entropy-int":  # the image model must be found first: the tests' tiny one, beside the vectors
        dropped["model_id"] = header.model_id
    rnc = tmp_path / "old.rnc"
    rnc.write_bytes(container.write(replace(header, **dropped), chunks))
    r = subprocess.run([sys.executable, "-m", "rnncodec.cli", "decompress", str(rnc), "-o", str(tmp_path / "old.png")],
                       capture_output=True, text=True)
    assert r.returncode == 5
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("rnncodec: error: ")
    assert "rnncodec 0.1.0 development build" in r.stderr and DROPPED_AT in r.stderr
    assert not (tmp_path / "old.png").exists()

# each shipped image model's context models (coder 1, coder 2) and the image size and seed of its
# two vectors: one at an odd size with coder 1, one in tiles with coder 2
SHIPMENTS = (
    ("default", ("e24b06701c6d75fc", "b2a11c5656b91581"), (45, 39, 26), (72, 56, 27)),
    ("wide", ("9ed4464fcef5608f", "cb45dce5cf7f6037"), (47, 37, 28), (56, 72, 29)),  # `--model wide`'s
)


def _vectors(image: ImageModel) -> dict[str, Callable[[], bytes]]:
    """How each vector is made (run only for a missing one): `SHIPMENTS`' two each, and with the
    default model's integer context model a file with block counts, one with alpha, and one coded at half
    size with alpha (the display size section)."""
    def made(size: tuple[int, int, int], iterations: int, coder: Callable[[], BitCoder], **tiles) -> Callable[[], bytes]:
        h, w, seed = size
        return lambda: encode(smooth_image(h, w, seed=seed), iterations=iterations, model=image, coder=coder(),
                              precision="fp32", **tiles).data

    vectors = {"coder2": made((32, 48, 7), 3, lambda: integer_coder(MODEL), tile=32, overlap=16)}
    for name, (float_id, int_id), odd, tiled in SHIPMENTS:
        vectors[f"{name}-coder1-odd"] = made(odd, 2, lambda f=float_id: arithmetic_coder(find("entropy", model_id=f)))
        vectors[f"{name}-coder2-tiles"] = made(tiled, 3, lambda i=int_id: integer_coder(find("entropy-int", model_id=i)),
                                               tile=48, overlap=16)
    default = integer_coder(find("entropy-int", model_id=SHIPMENTS[0][1][1]))
    rgba = np.dstack([smooth_image(29, 41, seed=9), np.linspace(0, 255, 29 * 41).reshape(29, 41).astype(np.uint8)])
    vectors["default-coder2-blocks"] = lambda: _partial(image, smooth_image(48, 80, seed=13), default)
    vectors["default-coder2-alpha"] = lambda: encode(rgba, iterations=1, model=image, coder=default, precision="fp32").data
    vectors["default-coder2-downscaled"] = lambda: encode(rgba, iterations=2, model=image, coder=default, precision="fp32",
                                                          downscale=2).data
    return vectors


def _partial(image: ImageModel, pixels: np.ndarray, coder: BitCoder) -> bytes:
    """A budget halfway between 2 and 3 iterations: the third codes some blocks only (counts in the header)."""
    sizes = container.prefix_sizes(*container.read(encode(pixels, iterations=3, model=image, coder=coder,
                                                          precision="fp32").data))
    bpp = (sizes[1] + sizes[2]) / 2 * 8 / (pixels.shape[0] * pixels.shape[1])
    return encode(pixels, bpp=bpp, model=image, coder=coder, precision="fp32").data


def _write_vectors() -> None:
    work = VECTORS / "image-model.tmp"
    work.mkdir(parents=True, exist_ok=True)
    save_tiny_image_model(work / "tiny.safetensors")
    image = load_image_model(work / "tiny.safetensors")
    if not MODEL.exists():
        net = tiny_context_model(2, iterations=6, masked=4, state=4, row=4, head=8, rows_above=2, kernel_w=5)
        save_tiny_integer_model(net, MODEL)
        k = build_integer_net(load_weights(MODEL), reference=True).forward(_bits())
        np.save(VECTORS / "probabilities.npy", k.numpy().astype(np.uint16))
    os.environ[MODEL_PATH_ENV] = os.pathsep.join([str(VECTORS), str(work)])
    for name, make in _vectors(image).items():
        if not (VECTORS / f"{name}.rnc").exists():
            data = make()
            (VECTORS / f"{name}.rnc").write_bytes(data)
            record, pixels = decoded_record(data)
            (VECTORS / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
            Image.fromarray(pixels).save(VECTORS / f"{name}.png")
    (work / "tiny.safetensors").unlink()
    work.rmdir()


if __name__ == "__main__":
    _write_vectors()
