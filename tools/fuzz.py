"""Decoder fuzzing at scale: hypothesis-mutated .rnc streams of each payload coder, in resumable
batches. A decode may only succeed or raise the project's decode error (rnncodec.testing.ALLOWED);
any other exception, or a decode slower than --timeout seconds (a hang), is a failure, and its
input is saved to DIR/failures with the traceback beside it. The mutations are byte-level and
structure-aware (header fields at their extremes, segments and chunks lied about, sections
swapped: rnncodec.testing.mutations), of three streams per coder: plain, with an alpha plane and a
display size, and with block iteration counts. Each batch records the work its inputs demanded:
the most decode CPU time per input byte, and the process's peak RSS so far.

Batch i of a coder draws its cases from hypothesis seeded with "coder/i", so it holds the same
inputs on every run (and other inputs than batch i of the other coders). Each finished batch
appends one JSON line to DIR/log.jsonl, and a restart skips the batches the log holds: killing
the run loses at most the running batch. The tiny seeded models the streams name are saved in
DIR/models, so that a saved input decodes again with
`RNNCODEC_MODEL_PATH=DIR/models rnncodec decompress FILE`.

    OMP_NUM_THREADS=1 .venv/bin/python tools/fuzz.py --dir runs/fuzz     # 500 × 200 cases per coder; resumes
    .venv/bin/python tools/fuzz.py --dir runs/fuzz --summary
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import resource
import signal
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from rnncodec.codec import decode, encode
from rnncodec.entropy import RawCoder
from rnncodec.stored import save_weights
from rnncodec.testing import (
    ALLOWED,
    mutations,
    save_tiny_image_model,
    save_tiny_integer_model,
    smooth_image,
    tiny_context_model,
)
from rnncodec.zoo import MODEL_PATH_ENV, arithmetic_coder, integer_coder, load_image_model

CODERS = ("raw", "arithmetic", "integer")  # coders 0, 1 and 2


class Hang(BaseException):
    """A decode ran past --timeout. A BaseException, so that no `except Exception` swallows it."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, default=Path("runs/fuzz"), help="log, models and failing inputs")
    ap.add_argument("--coders", nargs="+", choices=CODERS, default=list(CODERS))
    ap.add_argument("--batches", type=int, default=500, help="batches per coder")
    ap.add_argument("--batch-size", type=int, default=200, help="cases per batch")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds one decode may take")
    ap.add_argument("--summary", action="store_true", help="print the log's totals per coder and stop")
    args = ap.parse_args()
    log = args.dir / "log.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    if args.summary:
        summarise(records)
        return
    if {r["size"] for r in records} - {args.batch_size}:
        raise SystemExit(f"fuzz: {log} holds batches of another --batch-size; resume with the same one")
    done = {(r["coder"], r["batch"]) for r in records}
    streams = make_streams(args.dir / "models", args.coders)
    (args.dir / "failures").mkdir(exist_ok=True)
    for index in range(args.batches):  # coders interleaved, so that a stopped run covers each alike
        for coder in args.coders:
            if (coder, index) not in done:
                record = run_batch(coder, streams[coder], index, args.batch_size, args.timeout, args.dir / "failures")
                with log.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                print(json.dumps(record), flush=True)


def make_streams(models: Path, coders: list[str]) -> dict[str, list[bytes]]:
    """Valid streams per coder (40×56 pixels in 32-px tiles: several tiles, partial edge blocks;
    4 iterations): plain, with an alpha plane coded at half size (alpha and display sections), and
    adaptive (block counts); made with tiny seeded models saved in `models`, where decoding finds
    them by id."""
    models.mkdir(parents=True, exist_ok=True)
    save_tiny_image_model(models / "tiny.safetensors")
    net = tiny_context_model(1, iterations=6, masked=8, state=8, row=8, head=16)  # 32 bits, as the image model's
    save_weights(models / "tiny-entropy.safetensors", "entropy", net.cfg.to_json(), net.state_dict())
    save_tiny_integer_model(net, models / "tiny-entropy-int.safetensors")
    os.environ[MODEL_PATH_ENV] = str(models)
    build = {"raw": RawCoder,
             "arithmetic": lambda: arithmetic_coder(models / "tiny-entropy.safetensors"),
             "integer": lambda: integer_coder(models / "tiny-entropy-int.safetensors")}
    model = load_image_model(models / "tiny.safetensors")
    rgb, rgba = smooth_image(40, 56), smooth_image(40, 56, seed=1)
    rgba = np.dstack([rgba, np.where(rgba[..., 0] > 128, 255, rgba[..., 1])]).astype(np.uint8)
    variants = ({"image": rgb, "iterations": 4}, {"image": rgba, "iterations": 4, "downscale": 2},
                {"image": rgb, "quality": 60})
    return {name: [encode(tile=32, overlap=16, model=model, coder=build[name](), **v).data for v in variants]
            for name in coders}


def run_batch(coder: str, streams: list[bytes], index: int, size: int, timeout: float, failures: Path) -> dict:
    """Decode `size` mutations of `streams` drawn with hypothesis seeded by coder and index; the
    batch's log record."""
    outcomes: Counter[str] = Counter()
    worst = {"cpu_per_byte": 0.0, "cpu": 0.0, "bytes": 0}
    failed: list[dict[str, str]] = []
    inputs: set[bytes] = set()  # hypothesis repeats some inputs: count the distinct ones too

    def on_alarm(*_: object) -> None:
        raise Hang

    # only generation: no shrinking (every failure is kept as it came) and no example database
    @seed(f"{coder}/{index}")  # a str seeds random.Random by its bytes, the same in every process
    @settings(max_examples=size, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(streams).flatmap(mutations))
    def check(mutated: bytes) -> None:
        inputs.add(hashlib.sha256(mutated).digest())
        signal.setitimer(signal.ITIMER_REAL, timeout)
        cpu = time.process_time()
        try:
            decode(mutated)
            outcomes["decoded"] += 1
        except ALLOWED as exc:
            outcomes[type(exc).__name__] += 1
        except (Exception, Hang) as exc:
            kind = "hang" if isinstance(exc, Hang) else type(exc).__name__
            path = failures / f"{coder}-{index}-{sum(outcomes.values())}.rnc"
            path.write_bytes(mutated)
            path.with_suffix(".txt").write_text(traceback.format_exc())
            outcomes[kind] += 1
            failed.append({"kind": kind, "input": str(path)})
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            cpu = time.process_time() - cpu
            if cpu / max(len(mutated), 1) > worst["cpu_per_byte"]:
                worst.update(cpu_per_byte=cpu / max(len(mutated), 1), cpu=cpu, bytes=len(mutated))

    signal.signal(signal.SIGALRM, on_alarm)
    start = time.monotonic()
    check()
    return {"coder": coder, "batch": index, "size": size, "cases": sum(outcomes.values()), "distinct": len(inputs),
            "outcomes": dict(sorted(outcomes.items())), "failures": failed, "worst": worst,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "seconds": round(time.monotonic() - start, 2),
            "finished": datetime.datetime.now().isoformat(timespec="seconds")}


def summarise(records: list[dict]) -> None:
    """Totals per coder, one line each, for docs/RESULTS.md."""
    for coder in CODERS:
        mine = [r for r in records if r["coder"] == coder]
        if not mine:
            continue
        cases = sum(r["cases"] for r in mine)
        distinct = sum(r["distinct"] for r in mine)
        seconds = sum(r["seconds"] for r in mine)
        outcomes = sum((Counter(r["outcomes"]) for r in mine), Counter())
        failures = [f["input"] for r in mine for f in r["failures"]]
        worst = max((r["worst"] for r in mine if "worst" in r), key=lambda w: w["cpu_per_byte"], default=None)
        rss = max((r["peak_rss_mib"] for r in mine if "peak_rss_mib" in r), default=None)
        print(f"{coder}: {len(mine)} batches, {cases} cases ({distinct} distinct within their batch) in "
              f"{seconds:.0f} s ({cases / max(seconds, 0.01):.1f} cases/s; "
              f"last batch {mine[-1]['finished']}): " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
              + f"; {len(failures)} failures"
              + (f"; worst decode {worst['cpu_per_byte'] * 1e6:.0f} µs CPU per byte ({worst['cpu']:.3f} s for "
                 f"{worst['bytes']} bytes), peak RSS {rss} MiB" if worst else "")
              + "".join(f"\n  {f}" for f in failures))


if __name__ == "__main__":
    main()
