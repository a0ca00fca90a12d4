"""Coder 1: range coding of each bit with the float context model's P(bit = 1), the legacy coder.

Decoding is only correct if the decoder computes exactly the probabilities the encoder used, so
the float model runs under fixed rules (models.context_model.deterministic) and its outputs are
snapped to the range coder's grid of k/2^16 (context.TileContext). That is not enough across machines: other float
kernels (instruction sets, libraries) move a probability across a grid step now and then, so
coder 1 files are not portable, and coder 2 (integer.py) replaces it. A mismatch shows up as a
chunk failing to decode or its bits CRC failing, reported as FormatError with that note.

Where the float model lives: it is a torch network, which `train-entropy` trains and which
`quantise-entropy` fits coder 2's integer model to. So it sits with the other torch network the
trainer trains, the image model, in models/: not among the coders, which run without torch, and
not in train/ itself, since decoding a coder 1 file needs it and nothing at run time imports the
trainer. This module is coder 1's torch-free face (its id, its weights' kind, its registration),
so that looking coders up (zoo.py) never needs torch; torch loads when a coder 1 model is built,
for a coder 1 file or when coder 1 is asked for.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import ContextConfig
from ..stored import StoredWeights, build_module
from .base import register_coder
from .context import context_coder_spec

if TYPE_CHECKING:
    from ..models.context_model import ContextModel

CODER_ID = 1
KIND = "entropy"  # coder 1's weights: the float context model


def build_context_model(stored: StoredWeights) -> ContextModel:
    """The float context model from stored weights, in float32 and eval mode."""
    from ..models.context_model import ContextModel

    return build_module(stored, KIND, lambda config: ContextModel(ContextConfig.from_json(config)))


register_coder(CODER_ID, context_coder_spec(
    CODER_ID, KIND, build_context_model,
    "the file was written by coder 1, whose float context model is not portable: "
    "it may decode only on the kind of machine that wrote it"))
