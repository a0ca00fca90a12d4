"""Long decoder fuzzing: many hypothesis-mutated .rnc streams; any failure other than the
project's decode errors, or a decode slower than --timeout seconds, is reported with its input.

    .venv/bin/python tools/fuzz.py --examples 20000
"""
from __future__ import annotations

import argparse
import os
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings

from rnncodec.codec import decode, encode
from rnncodec.config import preset
from rnncodec.entropy import RawCoder
from rnncodec.models import RNNCodec
from rnncodec.stored import save_weights
from rnncodec.testing import ALLOWED, mutations, smooth_image
from rnncodec.zoo import MODEL_PATH_ENV, arithmetic_coder, load_image_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=5000)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds one decode may take")
    args = ap.parse_args()
    torch.manual_seed(0)
    net = RNNCodec(preset("tiny", iterations=6))
    folder = tempfile.mkdtemp()
    save_weights(Path(folder) / "fuzz.safetensors", "image", net.cfg.to_json(), net.state_dict())
    os.environ[MODEL_PATH_ENV] = folder
    model = load_image_model(Path(folder) / "fuzz.safetensors")
    streams = {name: encode(smooth_image(40, 56), iterations=4, model=model, tile=32, overlap=16, coder=coder).data
               for name, coder in (("raw", RawCoder()), ("arithmetic", arithmetic_coder()))}
    for name, data in streams.items():
        fuzz(name, data, args.examples, args.timeout)


def fuzz(name: str, data: bytes, examples: int, timeout: float) -> None:
    """Decode `examples` mutations of `data`; print how each ended."""
    outcomes: Counter[str] = Counter()

    def on_alarm(*_):
        raise TimeoutError

    signal.signal(signal.SIGALRM, on_alarm)

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(mutations(data))
    def check(mutated: bytes) -> None:
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            decode(mutated)
            outcomes["decoded"] += 1
        except ALLOWED as exc:
            outcomes[type(exc).__name__] += 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    start = time.time()
    check()
    total = sum(outcomes.values())
    print(f"{name}: {total} cases in {time.time() - start:.0f} s: "
          + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) + "; no crash, hang or other exception")


if __name__ == "__main__":
    main()
