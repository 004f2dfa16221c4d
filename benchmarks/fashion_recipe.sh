#!/usr/bin/env bash
# The bundled model's recipe on the fashion scenes, from the data to the test score:
#
#   benchmarks/fashion_recipe.sh WORKDIR [spiking|conventional]
#
# In WORKDIR: builds the scenes and the products (when absent), pretrains the tiny backbone on
# the products (runs/pretrain-KIND), trains the segmenter from its best weights with the official
# backbone learning-rate multiplier (runs/seg-KIND) and scores the untouched test split
# (runs/seg-KIND/test.json). Interrupted anywhere (Ctrl-C, kill -9, a reboot), the same command
# continues: a stage whose run folder exists is resumed from its last checkpoint, and a finished
# one only says so. Both kinds get the same budget; PRETRAIN_ITERS, SEG_ITERS and THREADS
# override the defaults (12000, 6000, 2).
set -euo pipefail

work=${1:?usage: fashion_recipe.sh WORKDIR [spiking|conventional]}
kind=${2:-spiking}
case "$kind" in
  spiking) network=() ;;
  conventional) network=(--conventional) ;;
  *) echo "error: the network is spiking or conventional, not '$kind'" >&2; exit 2 ;;
esac
pretrain_iters=${PRETRAIN_ITERS:-12000}
seg_iters=${SEG_ITERS:-6000}
threads=${THREADS:-2}
benchmarks=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$work"
cd "$work"

[ -d scenes ] || python "$benchmarks/fashion_scenes.py" scenes \
  --train 2000 --val 200 --test 200 --size 256 --seed 0
[ -d products ] || python "$benchmarks/fashion_products.py" products \
  --train 60000 --val 2000 --size 64 --seed 0

pretrained=runs/pretrain-$kind
if [ -d "$pretrained" ]; then
  s2f pretrain --output "$pretrained" --resume --workers 1 --threads "$threads"
else
  s2f pretrain --preset tiny --data products "${network[@]}" --iters "$pretrain_iters" \
    --batch-size 128 --crop-size 64 --lr 2e-3 --eval-interval 1000 --checkpoint-interval 250 \
    --workers 1 --threads "$threads" --output "$pretrained"
fi

segmenter=runs/seg-$kind
if [ -d "$segmenter" ]; then
  s2f train --output "$segmenter" --resume --workers 1 --threads "$threads"
else
  s2f train --preset tiny --data scenes --format folder --num-classes 11 "${network[@]}" \
    --init-backbone "$pretrained/weights/best.safetensors" --iters "$seg_iters" \
    --pipeline random_crop --crop-size 256 --imgsz 256 --eval-interval 500 \
    --checkpoint-interval 250 --workers 1 --threads "$threads" --output "$segmenter"
fi

s2f eval -m "$segmenter/weights/best.safetensors" --data scenes --format folder --split test \
  --threads "$threads" --json > "$segmenter/test.json.part"
mv "$segmenter/test.json.part" "$segmenter/test.json"
echo "$segmenter/test.json"
