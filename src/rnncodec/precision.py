"""Where and in what arithmetic the image model runs: fp32, or bf16 where the CPU computes it
natively; on the CPU, or decoding on a CUDA GPU.

bf16 speeds up the encoder and decoder on CPUs with AVX512-BF16 or AMX, at a cost in quality
(both measured in docs/RESULTS.md, "Precision: bf16 against fp32"). It changes nothing a decoder must reproduce exactly: the
entropy coder's probabilities are integer (coder 2), and a file's bits are whatever its encoder
wrote, so a file encoded in one precision decodes in the other, to within rounding; the header
records the encoder's, and `auto` decodes in it where the CPU can.

Torch loads only when a precision or device is resolved: the CLI reads PRECISIONS without it.
"""
from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import Note

if TYPE_CHECKING:
    import torch

PRECISIONS = ("auto", "fp32", "bf16")


@lru_cache(maxsize=1)
def bf16_native() -> bool:
    """Whether this CPU has bf16 arithmetic (AVX512-BF16 or AMX, read from /proc/cpuinfo) and
    oneDNN uses it; elsewhere bf16 would be emulated, and slower than fp32."""
    import torch

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


def resolve_for(precision: str, written: str | None) -> str:
    """A decoder's precision: `auto` follows the encoder's (`written`, from the file's header)
    where this CPU can, since a decoder whose arithmetic differs from the encoder's drifts from
    its reconstruction over the iterations (docs/RESULTS.md, "Precision"); else as `resolve`."""
    if precision == "auto" and written in ("fp32", "onnx-fp32"):
        return "fp32"
    return resolve(precision)


def resolve_device(name: str) -> torch.device:
    """The device the image model decodes on: cpu, or cuda[:N] where PyTorch sees that GPU. The
    context model and the range coder stay on the CPU, so the bits never depend on it; only the
    float image model's pixels may differ by rounding (docs/RESULTS.md, "Portability")."""
    import torch

    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}: use cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}: use cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("no CUDA GPU is available to this PyTorch: decode on the cpu")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"no GPU {dev}: this machine has {torch.cuda.device_count()}")
    return dev
