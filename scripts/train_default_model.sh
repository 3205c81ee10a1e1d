#!/usr/bin/env bash
# Rebuilds the default model shipped in captioner/models/default: a copy model that names
# things with the nouns of Lite0's ImageNet classifier, its sentences learned from composites
# of photographed objects. Needs Tux Paint's stamps and the landscape photos
# (scripts/install_stamps.sh). About an hour on 2 CPU cores.
# Usage: scripts/train_default_model.sh [DATA_DIR] [RUN_DIR] [captioner-train options...]
set -euo pipefail
data=${1:-data/composites} run=${2:-runs/default}
shift $(($# < 2 ? $# : 2))
[ -f "$data/captions_train.json" ] ||
  captioner-scenes "$data" --kind composites --train 5000 --val 500 --test 500 --seed 1 \
    --format jpg --close-ups 0.5
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} captioner-train \
  --data "$data/captions_train.json" --images "$data/train" \
  --val-data "$data/captions_val.json" --val-images "$data/val" \
  --out "$run" --name default --min-word-count 1 \
  --copy-nouns --semantic-features --feature-stride 32 \
  --coordinates --normalize-features --word-attention --start-state learned \
  --attention-lambda 0 --cell gru --seed 0 \
  --embed-dim 128 --decoder-dim 256 --attention-dim 128 --dropout 0.3 \
  --epochs 3 --batch-size 64 --lr 1e-3 --val-max-images 300 --no-progress "$@"
captioner-evaluate --model "$run/best" \
  --annotations "$data/captions_test.json" --images "$data/test" \
  --beam-size 5 --out "$run/test_metrics.json"
python -m training.real_photos --model "$run/best" | tee "$run/real_photos.txt"
