"""Coder 2: range coding (constriction) of each bit with the integer context model's P(1) = k / 2^16.

The integer model (integer_model.py) computes k exactly, on every machine, so a file decodes
wherever rnncodec runs; the range coding is coder 1's (arithmetic.RowSession), fed k / 2^16,
which float64 holds exactly.
"""
from __future__ import annotations

import numpy as np
from torch import Tensor

from .arithmetic import context_coder_spec
from .base import register_coder
from .integer_model import KIND, PROB_BITS, build_integer_net

CODER_ID = 2


def probabilities(k: Tensor) -> np.ndarray:
    """A row's k values as the coder's P(1), flattened in C order."""
    return k.numpy().reshape(-1) * 2.0**-PROB_BITS


register_coder(CODER_ID, context_coder_spec(CODER_ID, KIND, build_integer_net, probabilities))
