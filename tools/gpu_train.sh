#!/usr/bin/env bash
# The whole GPU training step in one call, for a GPU machine lent for minutes (docs/TRAINING.md,
# "The GPU recipe"). Each experiment in RUNS fine-tunes the same checkpoint with the same seed and
# schedule, side by side on the one GPU, so they compare at equal GPU time.
#
#   tools/gpu_train.sh --prepare          here: pack the training data (< 64 MiB) and the wheels the GPU machine lacks
#   tools/gpu_train.sh                    there: unpack, train every run for --minutes, decode a file on CUDA,
#                                         write the results to $OUT
#   tools/gpu_train.sh --collect DIR      here: unpack the results that came back in DIR into --out
#   tools/gpu_train.sh --dry-run          anywhere: the same path on the CPU, a few tiny steps (tested in CI)
#
# Options: --minutes M (training time per run, default 9), --data TAR (default .traindata.tar),
# --from WEIGHTS (default: the packaged default model; or a checkpoint), --out DIR (default $OUT, else out/gpu),
# --only NAME (just that run of RUNS), --extra "FLAGS" (train flags added to every run, last wins).
set -euo pipefail
cd "$(dirname "$0")/.."

# name:extra train flags. Every run shares COMMON below; only these differ. Runs side by side share
# the GPU (each learns at half speed): one run when the model, not a comparison, is the aim.
RUNS=(
  "bf16:--framework iteration_gain --binarizer sign --bf16"
  # the decoder's last layer at ½ width (`--model wide`), continued from its packaged weights
  "wide:--framework iteration_gain --binarizer sign --bf16 --tail-width 0.5 --init-from src/rnncodec/weights/wide.safetensors"
)
COMMON=(--preset small --unroll 16 --crop 128 --lr 5e-4 --warmup 100 --steps 1000000 --val-every 200
        --checkpoint-minutes 2 --threads 4 --seed 7)
PACK_SOURCES=(../shared/data/train/cid22:1 ../shared/data/train/bsds500:2 ../shared/data/train/sun_hays80:2)
PACK_QUALITIES=(90 85 80 75)  # JPEG qualities --prepare tries, best first (q85 ≈ 38 dB, far above the codec)
WHEELS=(constriction pytorch-msssim tqdm safetensors threadpoolctl)  # wheel names are module names
PIECE=15m  # results come back in pieces: the device tool returns files of at most 16 MiB

mode=run minutes=9 data=.traindata.tar from=src/rnncodec/weights/default.safetensors out=${OUT:-out/gpu} collect="" only="" extra=""
while (($#)); do
  case $1 in
    --prepare|--dry-run) mode=${1#--} ;;
    --collect) mode=collect collect=$2; shift ;;
    --minutes) minutes=$2; shift ;;
    --data) data=$2; shift ;;
    --from) from=$2; shift ;;
    --out) out=$2; shift ;;
    --only) only=$2; shift ;;
    --extra) extra=$2; shift ;;
    *) echo "gpu_train.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [[ -n $only ]]; then
  for run in "${RUNS[@]}"; do [[ ${run%%:*} == "$only" ]] && RUNS=("$run") && break; done
  [[ ${RUNS[0]%%:*} == "$only" ]] || { echo "gpu_train.sh: no run named $only" >&2; exit 2; }
fi
if [[ -n ${PYTHON:-} ]]; then PY=$PYTHON; elif [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1

case $mode in
prepare)
  # the runtime dependencies the GPU machine's image (Python 3.12, torch, numpy, Pillow) may lack
  rm -rf .whl
  for dist in "${WHEELS[@]}"; do
    version=$("$PY" -c "import importlib.metadata as m; print(m.version('$dist'))")
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl "$dist==$version"
  done
  # the data at the best JPEG quality that fits what the device tool takes (64 MiB) beside the
  # tracked tree and the wheels, with 1 MiB to spare: the package grows with every shipped model
  tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
  budget=$((64 * 1048576 - tree - $(du -cb .whl | tail -1 | cut -f1) - 1048576))
  for quality in "${PACK_QUALITIES[@]}"; do
    rm -rf .traindata && "$PY" tools/pack_data.py "${PACK_SOURCES[@]}" -o .traindata --quality "$quality"
    tar -cf "$data" -C .traindata . && rm -rf .traindata
    (($(stat -c %s "$data") <= budget)) && break
  done
  (($(stat -c %s "$data") <= budget)) || { echo "gpu_train.sh: the data do not fit $budget bytes even at q$quality" >&2; exit 1; }
  echo "gpu_train.sh: data at JPEG q$quality; with the tracked tree ($tree bytes):"
  du -ch "$data" .whl | tail -1
  echo "carry: [\"$data\", \".whl\"]"
  exit 0 ;;
collect)
  mkdir -p "$out" && cat "$collect"/results.tar.part* | tar -x -C "$out"
  ls "$out"/*
  exit 0 ;;
esac

# install each carried wheel whose module this Python cannot import (the wheels' names are their modules')
missing=()
for wheel in .whl/*.whl; do
  [[ -e $wheel ]] || continue  # no .whl/ (a machine that has every dependency): nothing to install
  module=$(basename "$wheel"); module=${module%%-*}
  "$PY" -c "import $module" 2>/dev/null || missing+=("$wheel")
done
if ((${#missing[@]})); then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "${missing[@]}"
  export PYTHONPATH=$PYTHONPATH:/tmp/site
  echo "gpu_train.sh: installed ${missing[*]}"
fi
work=$(mktemp -d)
# pack whatever the runs wrote on every exit, a failure after training included: the checkpoints come back
pack() { mkdir -p "$out" && tar -cf - -C "$work/runs" . | split -b "$PIECE" -d - "$out/results.tar.part" && ls -l "$out"; rm -rf "$work"; }
trap pack EXIT
mkdir -p "$work/runs" "$work/data"
tar -xf "$data" -C "$work/data"
folders=("$work"/data/*/)  # the image folders only: the runs' own folder is no training data
[[ -d ${folders[0]} ]] || { echo "gpu_train.sh: no image folders in $data" >&2; exit 1; }

if [[ $mode == dry-run ]]; then
  sizes=(--unroll 2 --crop 32 --batch 2 --steps 3 --val-every 2 --threads 1 --max-minutes 1)
else
  # batch: as large as the GPU holds for all runs at once (about 0.25 GB a 128×128 patch, fp32, 16 iterations)
  batch=$("$PY" -c "
import sys, torch
if not torch.cuda.is_available(): sys.exit('gpu_train.sh: no CUDA GPU here (use --dry-run to try the path on the CPU)')
mem = torch.cuda.get_device_properties(0).total_memory
print(min(192, int(0.75 * mem / (${#RUNS[@]} * 0.25e9)) // 8 * 8))")
  sizes=(--batch "$batch" --max-minutes "$minutes")
  echo "gpu_train.sh: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader), batch $batch, ${#RUNS[@]} runs × $minutes min"
fi

pids=()
for run in "${RUNS[@]}"; do
  name=${run%%:*}
  mkdir -p "$work/runs/$name"
  # a run that overstays its budget gets SIGTERM, which ends it with a checkpoint
  timeout --signal=TERM $((${minutes%.*} * 60 + 120)) \
    "$PY" -m rnncodec.cli train "${folders[@]}" --out "$work/runs/$name" --init-from "$from" \
      "${COMMON[@]}" "${sizes[@]}" ${run#*:} $extra >"$work/runs/$name/train.out" 2>&1 &
  pids+=($!)
done
failed=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    failed=1
    echo "gpu_train.sh: run ${RUNS[$i]%%:*} failed:" >&2
    tail -c 2000 "$work/runs/${RUNS[$i]%%:*}/train.out" | tr '\r' '\n' | tail -5 >&2
  fi
done

# decode one file on the GPU (a CRC per chunk checks its bits; pixels against the CPU's)
# not `find | sort | head -1`: under pipefail, sort killed by SIGPIPE when head exits ends the script
mapfile -t photos < <(find "${folders[0]}" -type f | sort)
photo=${photos[0]}
"$PY" bench/portability.py "$photo" --iterations 4 --precision fp32 --caps cuda OMP_NUM_THREADS=2 \
  >"$work/runs/portability.md" 2>&1 || echo "gpu_train.sh: the CUDA decode check failed" >&2
tail -n 3 "$work/runs/portability.md"

for run in "${RUNS[@]}"; do
  name=${run%%:*}
  tr '\r' '\n' <"$work/runs/$name/train.out" | tail -3 >"$work/runs/$name/train.tail" && rm "$work/runs/$name/train.out"
  "$PY" - "$work/runs/$name/log.jsonl" "$name" <<'PY' || true
import json, os, sys
rows = [json.loads(line) for line in open(sys.argv[1])] if os.path.exists(sys.argv[1]) else [{"step": 0}]
speed = [r["patches_per_s"] for r in rows if "patches_per_s" in r]
val = [r for r in rows if "val_per_iteration" in r]
print(f"{sys.argv[2]}: {max(r['step'] for r in rows)} steps, {speed[-1] if speed else 0:.0f} patches/s")
for r in val[-1:]:
    print(f"  val L1 at step {r['step']}: mean {r['val_loss']:.4f}; per iteration", " ".join(f"{v:.4f}" for v in r["val_per_iteration"]))
PY
done
exit $failed
