#!/usr/bin/env bash
# The attention-grounding trials reported in docs/experiments.md ("Where does the model look?").
# Usage: scripts/scenes_trials.sh DATA_DIR RUNS_DIR NAME [extra captioner-train options]
# DATA_DIR comes from: captioner-scenes DATA_DIR --train 2000 --val 200 --test 200 --seed 7 --size 224 --format jpg
set -euo pipefail
data=$1 runs=$2 name=$3
shift 3
python -m training.train \
  --data "$data/captions_train.json" --images "$data/train" \
  --val-data "$data/captions_val.json" --val-images "$data/val" \
  --out "$runs/$name" --cache-dir "$runs/cache" --min-word-count 1 \
  --epochs 6 --batch-size 64 --lr 1e-3 --dropout 0.3 --patience 10 --val-max-images 200 \
  --embed-dim 128 --decoder-dim 256 --attention-dim 256 --no-progress "$@"
python -m training.evaluate --model "$runs/$name/best" \
  --annotations "$data/captions_test.json" --images "$data/test" \
  --beam-size 3 --no-meteor --out "$runs/$name/test_metrics.json"
