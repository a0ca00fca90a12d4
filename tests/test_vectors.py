"""Conformance vectors (tests/vectors/): small files and the models they name, stored, so that a
change that would stop old files from decoding, or change what they decode to, fails here.

- tiny-entropy-int.safetensors: a tiny integer context model (rows_above 2, kernel 5 wide);
- coder2.rnc: a 32×48 image at 3 iterations in two tiles, written with it and the tests' tiny
  seeded image model (conftest.save_tiny_image_model, found by id);
- shipped-*.rnc to shipped8-*.rnc: written with the shipped context models (coder 1's float
  one, coder 2's integer one; shipped-: those fitted to image model 3419f1cfdb626ccb, shipped2-:
  to a6c0eb0b5daf2741, shipped3-: to ad883a38e080d596, shipped4-: to 8922bf4848b8e303, shipped5-:
  to c8c7bbcae3cacd56, shipped6-: to 0543fd59b35811da, shipped7-: to a7cf522e9c7f5a28, shipped8-:
  to 0078779592de70b3) over the tiny image model's bits: odd sizes, several tiles, block
  iteration counts (format version 2), an alpha plane, and a display size (coded at half size,
  with alpha: shipped-coder2-downscaled); wide-*.rnc: with the context models of
  the wide model (9bbb9a97810b86e6, `--model wide`). A shipped model they name must stay findable
  (docs/FORMAT.md, "Compatibility");
- NAME.json beside each NAME.rnc: the ids, the SHA-256 of the decoded bits (exact everywhere for
  coders 0 and 2, by construction) and of the decoded pixels (and alpha), from the float image
  model: exact on the machine that wrote them;
- probabilities.npy: the model's k for the seeded bits of `_bits()`.

`python tests/test_vectors.py` writes the vectors that are missing; delete one first to rewrite
it, and only for a deliberate format change.
"""
import hashlib
import json
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import entropy_bits, save_tiny_image_model, save_tiny_integer_model, smooth_image, tiny_context_model

from rnncodec import codec, container
from rnncodec.codec import encode
from rnncodec.entropy.base import BitCoder
from rnncodec.entropy.integer_model import build_integer_net
from rnncodec.stored import load_weights
from rnncodec.zoo import (
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
# every image model the package has shipped, oldest first (the defaults, then wide)
SHIPPED_IMAGE_MODELS = ["3419f1cfdb626ccb", "a6c0eb0b5daf2741", "ad883a38e080d596", "8922bf4848b8e303", "c8c7bbcae3cacd56",
                        "0543fd59b35811da", "a7cf522e9c7f5a28", "0078779592de70b3", "9bbb9a97810b86e6"]

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


def decoded_record(data: bytes) -> dict:
    """What a vector's JSON records of its file: the models' ids, and the SHA-256 of its bits and
    of what it decodes to (fp32)."""
    header, _ = container.read(data)
    dec = decode(data, precision="fp32")
    record = {"image_model": header.model_id.hex(), "entropy_model": header.entropy_id.hex(),
              "bits_sha256": _sha(entropy_bits(data)), "pixels_sha256": _sha(dec.pixels)}
    if dec.alpha is not None:
        record["alpha_sha256"] = _sha(dec.alpha)
    return record


@pytest.mark.parametrize("name", NAMES)
def test_stored_file_decodes_to_the_stored_bits_and_pixels(tiny_model, monkeypatch, name):
    expected = json.loads((VECTORS / f"{name}.json").read_text())
    assert tiny_model.model_id.hex() == expected["image_model"], "the tests' tiny image model changed"
    monkeypatch.setenv(MODEL_PATH_ENV, os.pathsep.join([str(VECTORS), os.environ[MODEL_PATH_ENV]]))
    assert decoded_record((VECTORS / f"{name}.rnc").read_bytes()) == expected


def test_every_image_model_the_package_has_shipped_is_still_in_it():
    """Files name their image model by id; one the package shipped must stay (docs/FORMAT.md)."""
    for model_id in SHIPPED_IMAGE_MODELS:
        assert image_model_by_id(bytes.fromhex(model_id)).model_id.hex() == model_id


# each shipment's context models (coder 1, coder 2; None: the package's defaults) and the image
# size and seed of its two vectors: one at an odd size with coder 1, one in tiles with coder 2
SHIPMENTS = (
    ("shipped", ("ae5bd7d83ad31875", "2c8714206b3e8c7e"), (37, 53, 11), (72, 100, 12)),
    ("shipped2", ("811441aa9ef3a3a4", "e99d80e9fbf5d3b8"), (35, 51, 14), (64, 96, 15)),
    ("shipped3", ("7949e2980d03fe00", "dd3708c71e187167"), (33, 55, 16), (80, 64, 17)),
    ("shipped4", ("3a07a2863f26aff7", "42bef58629e7a3e1"), (31, 57, 18), (64, 80, 19)),
    ("shipped5", ("66482883fcb4cd14", "da32f99fc09a97b6"), (39, 45, 20), (56, 88, 21)),
    ("shipped6", ("822de336c7f064f8", "1279614bea23d877"), (41, 43, 22), (48, 96, 23)),
    ("shipped7", ("23563a9a7da1c91c", "0de66af40652f4b6"), (43, 47, 24), (64, 72, 25)),
    ("shipped8", None, (45, 39, 26), (72, 56, 27)),
    ("wide", ("9ed4464fcef5608f", "cb45dce5cf7f6037"), (47, 37, 28), (56, 72, 29)),  # `--model wide`'s context models
)


def _vectors(image: ImageModel) -> dict[str, Callable[[], bytes]]:
    """How each vector is made (run only for a missing one): `SHIPMENTS`' two each, and with the
    first shipment's integer model a file with block counts, one with alpha, and one coded at half
    size with alpha (the display size section)."""
    def made(size: tuple[int, int, int], iterations: int, coder: Callable[[], BitCoder], **tiles) -> Callable[[], bytes]:
        h, w, seed = size
        return lambda: encode(smooth_image(h, w, seed=seed), iterations=iterations, model=image, coder=coder(),
                              precision="fp32", **tiles).data

    def path(kind: str, model_id: str | None) -> Path | None:
        return model_id and find(kind, model_id=model_id)

    vectors = {"coder2": made((32, 48, 7), 3, lambda: integer_coder(MODEL), tile=32, overlap=16)}
    for name, ids, odd, tiled in SHIPMENTS:
        float_id, int_id = ids or (None, None)
        vectors[f"{name}-coder1-odd"] = made(odd, 2, lambda f=float_id: arithmetic_coder(path("entropy", f)))
        vectors[f"{name}-coder2-tiles"] = made(tiled, 3, lambda i=int_id: integer_coder(path("entropy-int", i)),
                                               tile=48, overlap=16)
    first = integer_coder(path("entropy-int", SHIPMENTS[0][1][1]))
    rgba = np.dstack([smooth_image(29, 41, seed=9), np.linspace(0, 255, 29 * 41).reshape(29, 41).astype(np.uint8)])
    vectors["shipped-coder2-blocks"] = lambda: _partial(image, smooth_image(48, 80, seed=13), first)
    vectors["shipped-coder2-alpha"] = lambda: encode(rgba, iterations=1, model=image, coder=first, precision="fp32").data
    vectors["shipped-coder2-downscaled"] = lambda: encode(rgba, iterations=2, model=image, coder=first, precision="fp32",
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
            (VECTORS / f"{name}.json").write_text(json.dumps(decoded_record(data), indent=1) + "\n")
    (work / "tiny.safetensors").unlink()
    work.rmdir()


if __name__ == "__main__":
    _write_vectors()
