"""Can an object's shape, colour and size be read off the frozen encoder's feature grid?

A linear probe: for each object of a generated scene, the features of the grid cells its box
overlaps (their mean; cells counted as the grounding metric counts them) and of the cell at its
centre go into a logistic regression per attribute, fit on training scenes and scored on
validation scenes. Near-perfect accuracy means the features hold what a caption needs, and
caption errors come from the decoder.

Usage: python scripts/feature_probe.py DATA_DIR [--train 2000] [--val 600] [--image-size 224]
       [--feature-stride 16]
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from captioner.encoder import Encoder, EncoderConfig
from captioner.photos.images import load_image
from training.grounding import cells_overlapping

ATTRIBUTES = ("shape", "color", "size")


@torch.inference_mode()
def object_features(
    encoder: Encoder, data: Path, split: str, count: int
) -> tuple[np.ndarray, dict[str, list[str]]]:
    """(objects, 2 * encoder_dim) box-mean and centre-cell features, and each attribute."""
    images = json.loads((data / f"captions_{split}.json").read_text())["images"][:count]
    rows, labels = [], {name: [] for name in ATTRIBUTES}
    for start in range(0, len(images), 32):
        chunk = images[start : start + 32]
        pixels = torch.stack(
            [encoder.preprocess(load_image(data / split / im["file_name"])) for im in chunk]
        )
        for image, grid in zip(chunk, encoder(pixels).numpy(), strict=True):
            grid_h, grid_w, _ = grid.shape  # (grid_h, grid_w, encoder_dim)
            width, height = image["width"], image["height"]
            for obj in image["objects"]:
                x, y, w, h = obj["bbox"]
                covered = cells_overlapping([obj["bbox"]], width, height, grid_h, grid_w)
                box = grid[covered].mean(axis=0)
                centre = grid[int((y + h / 2) * grid_h / height), int((x + w / 2) * grid_w / width)]
                rows.append(np.concatenate([box, centre]))
                for name in ATTRIBUTES:
                    labels[name].append(obj[name])
    return np.stack(rows), labels


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path, help="a captioner-scenes output folder")
    p.add_argument("--train", type=int, default=2000, help="training scenes for the probe")
    p.add_argument("--val", type=int, default=600, help="validation scenes to score it on")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--feature-stride", type=int, default=16)
    args = p.parse_args()
    encoder = Encoder(EncoderConfig(image_size=args.image_size, feature_stride=args.feature_stride))
    train_x, train_y = object_features(encoder, args.data, "train", args.train)
    val_x, val_y = object_features(encoder, args.data, "val", args.val)
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    print(f"{len(train_x)} training objects, {len(val_x)} validation objects")
    print("| attribute | classes | validation accuracy |\n|---|---:|---:|")
    for name in ATTRIBUTES:
        probe = LogisticRegression(max_iter=2000, C=0.5).fit((train_x - mean) / std, train_y[name])
        accuracy = probe.score((val_x - mean) / std, val_y[name])
        print(f"| {name} | {len(probe.classes_)} | {accuracy:.3f} |")


if __name__ == "__main__":
    main()
