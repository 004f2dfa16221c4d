#!/usr/bin/env bash
# The training-cost rows of a CUDA device, as JSON lines in OUT (one file per measurement):
#
#   benchmarks/gpu_training_cost.sh OUT times     # s2f against the official way, fp32 and --amp
#   benchmarks/gpu_training_cost.sh OUT batches   # the largest batch of each case that fits
#
# Both presets at 512x512, batch 2, median of 5 steps after 2 warm-up steps; the searches for
# `sdtv3b-ade20k` only (a step per batch size, each in its own process). PRESETS, SIZE and
# DEVICE override the defaults ("sdtv3b-ade20k sdtv2-ade20k", 512, cuda).
set -euo pipefail

out=${1:?usage: gpu_training_cost.sh OUT times|batches}
stage=${2:?usage: gpu_training_cost.sh OUT times|batches}
presets=${PRESETS:-sdtv3b-ade20k sdtv2-ade20k}
size=${SIZE:-512}
device=${DEVICE:-cuda}
benchmarks=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
measure() {  # measure NAME ARGS...: one benchmark run into OUT/NAME.jsonl
  local name=$1
  shift
  if ! python "$benchmarks/train_throughput.py" --device "$device" --size "$size" "$@" \
    > "$out/$name.jsonl.part"; then
    rm -f "$out/$name.jsonl.part"
    return 1
  fi
  mv "$out/$name.jsonl.part" "$out/$name.jsonl"
  cat "$out/$name.jsonl"
}

case "$stage" in
  times)
    for preset in $presets; do
      measure "$preset-fp32" --preset "$preset" --compare-official --warmup 2 --iters 5
      measure "$preset-amp" --preset "$preset" --compare-official --amp --warmup 2 --iters 5
    done ;;
  batches)
    preset=${presets%% *}
    measure "$preset-largest-s2f" --preset "$preset" --largest-batch --case s2f
    measure "$preset-largest-s2f-recompute" --preset "$preset" --largest-batch --case s2f \
      --recompute-backbone
    measure "$preset-largest-official" --preset "$preset" --largest-batch --case official ;;
  *) echo "error: the stage is times or batches, not '$stage'" >&2; exit 2 ;;
esac
