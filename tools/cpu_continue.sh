#!/usr/bin/env bash
# A 1-thread CPU continuation of a shipped model, meant to run in the background of every working
# session (docs/TRAINING.md, "The CPU continuation"). It resumes its own checkpoint when the machine
# still has it, and otherwise starts again from the packaged weights, which equal the last shipped
# checkpoint: a new machine loses only the steps since the last shipped model.
#
#   tools/cpu_continue.sh [default|wide]     run (or resume) in the foreground; use nohup … & to background it
#
# Environment: TRAIN (training images, default ../shared/data/train), CONTINUE_HOME (checkpoints, default
# ~/.cache/rnncodec/continue), MINUTES (training time over all resumes, default 1200).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-default}
case $model in
  default) extra=() ;;
  wide) extra=(--tail-width 0.5) ;;
  *) echo "cpu_continue.sh: no model named $model" >&2; exit 2 ;;
esac
train=${TRAIN:-../shared/data/train}
run=${CONTINUE_HOME:-$HOME/.cache/rnncodec/continue}/$model
if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
start=(--init-from "src/rnncodec/weights/$model.safetensors")
[[ -f $run/checkpoint.pt ]] && start=(--resume)
mkdir -p "$run"
exec nice -n 19 "$PY" -m rnncodec.cli train "$train/cid22" "$train/bsds500" "$train/sun_hays80" --out "$run" \
  --jpeg-downscale 2 --preset small --framework iteration_gain --unroll 16 --crop 128 --batch 16 \
  --binarizer sign --threads 1 --bf16 --lr 1e-4 --min-lr-ratio 0.3 --warmup 20 --steps 100000 --seed 21 \
  --max-minutes "${MINUTES:-1200}" --val-every 100 --val-patches 64 --log-every 20 --checkpoint-minutes 10 \
  "${extra[@]}" "${start[@]}"
