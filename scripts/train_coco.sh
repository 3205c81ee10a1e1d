#!/usr/bin/env bash
# The strongest LSTM recipe captioner supports, on COCO with Karpathy's splits (docs/coco.md):
# the PyTorch tutorial's model (ResNet-101 at 256 px pooled to a 14 x 14 grid, 512-wide LSTM,
# attention and embedding, dropout 0.5, batch 32, doubly stochastic attention 1) in three phases:
#   1. xe    cross-entropy with the encoder frozen, until the decoder converges;
#   2. tune  cross-entropy again from xe's best model, ResNet's last 3 stages fine-tuned
#            (layer2-4, as the tutorial does) at --encoder-lr 1e-4;
#   3. scst  self-critical training on CIDEr-D from tune's best model;
# then the Karpathy test split is scored at beam 3.
#
# Expected (NOT measured by us; the literature's): the tutorial reports BLEU-4 33.06 on the
# Karpathy test split at beam 3 after phase 2. Compute estimate (not measured): see docs/coco.md.
#
# Usage: scripts/train_coco.sh, after `captioner-data fetch coco2014-karpathy --dir data/coco2014`.
# Every setting is a variable, so the same script runs small (tests/test_train_coco_script.py):
#   DATA          the fetched folder (default data/coco2014)
#   CAPTIONS IMAGES VAL_CAPTIONS VAL_IMAGES TEST_CAPTIONS TEST_IMAGES
#                 caption files and photo folders (default: Karpathy's dataset_coco.json,
#                 whose train/restval, val and test splits are read; VAL_* empty: its val split)
#   RUN           run folder; phases write RUN/xe, RUN/tune, RUN/scst (default runs/coco)
#   XE_EPOCHS TUNE_EPOCHS SCST_EPOCHS   (default 20, 10, 20: early stopping ends them sooner)
#   ENCODER ENCODER_WEIGHTS IMAGE_SIZE GRID   (resnet101, torchvision's download, 256, 14)
#   WIDTH         embedding, LSTM and attention size (512)
#   BATCH         batch size (32)
#   TRAIN_ARGS    more captioner-train options for every phase, e.g. "--no-cache" where the
#                 feature cache of ResNet-101's 14 x 14 grid does not fit the disk
#   EVALUATE      the phases whose best model is scored on the test split ("xe tune scst")
#   EVALUATE_ARGS more captioner-evaluate options
set -euo pipefail
DATA=${DATA:-data/coco2014}
CAPTIONS=${CAPTIONS:-$DATA/dataset_coco.json} IMAGES=${IMAGES:-$DATA}
VAL_CAPTIONS=${VAL_CAPTIONS:-} VAL_IMAGES=${VAL_IMAGES:-}
TEST_CAPTIONS=${TEST_CAPTIONS:-$CAPTIONS} TEST_IMAGES=${TEST_IMAGES:-$IMAGES}
RUN=${RUN:-runs/coco}
XE_EPOCHS=${XE_EPOCHS:-20} TUNE_EPOCHS=${TUNE_EPOCHS:-10} SCST_EPOCHS=${SCST_EPOCHS:-20}
ENCODER=${ENCODER:-resnet101} ENCODER_WEIGHTS=${ENCODER_WEIGHTS:-}
IMAGE_SIZE=${IMAGE_SIZE:-256} GRID=${GRID:-14} WIDTH=${WIDTH:-512} BATCH=${BATCH:-32}
read -r -a extra <<<"${TRAIN_ARGS:-}"
read -r -a evaluate <<<"${EVALUATE_ARGS:-}"

data=(--data "$CAPTIONS" --images "$IMAGES")
[ -z "$VAL_CAPTIONS" ] || data+=(--val-data "$VAL_CAPTIONS" --val-images "${VAL_IMAGES:-$IMAGES}")
weights=()
[ -z "$ENCODER_WEIGHTS" ] || weights=(--encoder-weights "$ENCODER_WEIGHTS")

# 1. The decoder learns on frozen ResNet features (cached once, unless --no-cache).
captioner-train "${data[@]}" --out "$RUN/xe" --name coco-xe \
  --encoder "$ENCODER" "${weights[@]}" --image-size "$IMAGE_SIZE" --grid-size "$GRID" \
  --embed-dim "$WIDTH" --decoder-dim "$WIDTH" --attention-dim "$WIDTH" --dropout 0.5 \
  --batch-size "$BATCH" --lr 4e-4 --attention-lambda 1 --epochs "$XE_EPOCHS" --patience 5 \
  "${extra[@]}"

# 2. ResNet's last three stages are tuned with the decoder, from the converged decoder.
captioner-train "${data[@]}" --out "$RUN/tune" --name coco-tune --init-from "$RUN/xe/best" \
  --fine-tune-blocks 3 --batch-size "$BATCH" --lr 1e-4 --encoder-lr 1e-4 --attention-lambda 1 \
  --epochs "$TUNE_EPOCHS" --patience 3 "${extra[@]}"

# 3. Self-critical training on the CIDEr-D of the model's own sampled captions.
captioner-train "${data[@]}" --out "$RUN/scst" --name coco-scst --init-from "$RUN/tune/best" \
  --objective scst --batch-size "$BATCH" --epochs "$SCST_EPOCHS" --patience 3 "${extra[@]}"

for phase in ${EVALUATE:-xe tune scst}; do
  captioner-evaluate --model "$RUN/$phase/best" --annotations "$TEST_CAPTIONS" \
    --images "$TEST_IMAGES" --split test --beam-size 3 --no-meteor \
    --out "$RUN/$phase/test_metrics.json" "${evaluate[@]}"
done
