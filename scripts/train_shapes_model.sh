#!/usr/bin/env bash
# Reproduces the shapes model shipped in captioner/models/shapes (about an hour on 2 CPU cores).
# Usage: scripts/train_shapes_model.sh [DATA_DIR] [RUN_DIR] [captioner-train options...]
# Extra options override the defaults below (docs/experiments.md's full-data trials: --cell lstm, ...).
set -euo pipefail
data=${1:-data/scenes} run=${2:-runs/scenes-default}
shift $(($# < 2 ? $# : 2))
[ -f "$data/captions_train.json" ] ||
  captioner-scenes "$data" --train 10000 --val 1000 --test 1000 --seed 0 --size 224 --format jpg
captioner-train \
  --data "$data/captions_train.json" --images "$data/train" \
  --val-data "$data/captions_val.json" --val-images "$data/val" \
  --out "$run" --name scenes-default --min-word-count 1 \
  --feature-stride 16 --coordinates --normalize-features --word-attention \
  --attention-lambda 0 --cell gru --seed 0 \
  --embed-dim 128 --decoder-dim 256 --attention-dim 128 --dropout 0.3 \
  --epochs 10 --batch-size 64 --lr 1e-3 --val-max-images 300 --no-progress "$@"
captioner-evaluate --model "$run/best" \
  --annotations "$data/captions_test.json" --images "$data/test" \
  --beam-size 5 --out "$run/test_metrics.json"
captioner-evaluate --model "$run/best" \
  --annotations "$data/captions_test.json" --images "$data/test" \
  --beam-size 5 --consensus-samples 30 --out "$run/test_metrics_consensus.json"
