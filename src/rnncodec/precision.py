"""The arithmetic the image model runs in: fp32, or bf16 where the CPU computes it natively.

bf16 halves the encoder's and decoder's time on CPUs with AVX512-BF16 or AMX, at a cost in
quality measured in docs/RESULTS.md. It changes nothing a decoder must reproduce exactly: the
entropy coder's probabilities are integer (coder 2), and a file's bits are whatever its encoder
wrote, so a file encoded in one precision decodes in the other, to within rounding.
"""
from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path

import torch

from .errors import Note

PRECISIONS = ("auto", "fp32", "bf16")


@lru_cache(maxsize=1)
def bf16_native() -> bool:
    """Whether this CPU has bf16 arithmetic (AVX512-BF16 or AMX, read from /proc/cpuinfo) and
    oneDNN uses it; elsewhere bf16 would be emulated, and slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    supported = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    return ("avx512_bf16" in flags or "amx_bf16" in flags) and bool(supported())


def resolve(precision: str) -> str:
    """`auto` picks bf16 where it is native; bf16 asked for where it is not falls back to fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}")
    if precision == "fp32":
        return "fp32"
    if bf16_native():
        return "bf16"
    if precision == "bf16":
        warnings.warn("this CPU has no native bf16: running in fp32", Note, stacklevel=3)
    return "fp32"
