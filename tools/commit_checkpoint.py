"""Slim a training checkpoint: without Adam's moments, and the weights in fp16, the precision the
package ships them in. Checkpoints are not committed (docs/TRAINING.md, "Where the weights live");
a slim one is what travels to a GPU machine beside the training data, within 64 MiB.

    .venv/bin/python tools/commit_checkpoint.py runs/gpu/runs/bf16/checkpoint.pt checkpoints/default.pt

That is a sixth of the run's checkpoint. Every phase since the third starts a fresh Adam
(`--init-from`), so the moments buy nothing there; `rnncodec export` of the file gives the model
id the run's own checkpoint gives. `--resume-from` it keeps the step, schedule and random state,
and Adam re-estimates its moments from the next steps.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    ck = torch.load(args.checkpoint, weights_only=False, map_location="cpu")
    ck["optimizer"]["state"] = {}
    ck["model"] = {k: v.half() if v.is_floating_point() else v for k, v in ck["model"].items()}
    tmp = args.out.with_suffix(".tmp")
    torch.save(ck, tmp)
    os.replace(tmp, args.out)
    print(f"{args.out}: {args.out.stat().st_size / 2**20:.1f} MiB, step {ck['step']}")


if __name__ == "__main__":
    main()
