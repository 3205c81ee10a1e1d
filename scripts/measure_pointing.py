"""Pointing of named things: does a copied noun's heatmap peak on the thing it names?

    python scripts/measure_pointing.py                        # the default model, real photos
    python scripts/measure_pointing.py --composites DIR       # also the composites' test split

Real photos: the development set (training/real_photos.py) with the boxes drawn by eye in
training/data/real_photo_boxes.json. For every copied noun of the model's caption that names a
boxed thing of its photo, the grid cell where its map peaks is a hit when it overlaps one of
that thing's boxes (training/grounding.py's rule). Side by side, the two maps: the posterior,
where the noun was read (CaptionResult.maps, captioner/pointing.py, what the app shows now),
and the prior, the attention before the noun was chosen (CaptionResult.alphas, what it showed
before). Copied nouns that name nothing boxed in their photo (false nouns) are counted apart.

--composites DIR: the same two maps scored by training/grounding.py on a composites split made
by `captioner-scenes DIR --kind composites` (pointing of copied nouns, as captioner-evaluate
reports it with the prior).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from captioner import Captioner  # noqa: E402
from captioner.nouns import NounTable  # noqa: E402
from captioner.pointing import READ  # noqa: E402
from training.grounding import cells_overlapping, ground_caption, grounding_scores  # noqa: E402
from training.real_photos import load_dev_set  # noqa: E402

BOXES_PATH = Path(__file__).resolve().parents[1] / "training" / "data" / "real_photo_boxes.json"


def singular_of() -> dict[str, str]:
    """Each copyable noun's plural (and the noun itself) -> the noun."""
    table = NounTable.load()
    return {**dict(zip(table.plurals, table.nouns, strict=True)), **{n: n for n in table.nouns}}


def peak_hits(grid_map: np.ndarray, boxes: list[list[float]]) -> bool:
    """Whether the map's peak cell overlaps a box [left, top, right, bottom] (fractions)."""
    grid_h, grid_w = grid_map.shape
    as_xywh = [[left, top, right - left, bottom - top] for left, top, right, bottom in boxes]
    mask = cells_overlapping(as_xywh, 1, 1, grid_h, grid_w)
    return bool(mask[np.unravel_index(np.argmax(grid_map), grid_map.shape)])


def real_photos(model: Captioner, boxes: dict[str, dict[str, list]]) -> None:
    photos, missing = load_dev_set()
    for photo in missing:
        print(f"skipped {photo.id}: {photo.reason}", file=sys.stderr)
    singular = singular_of()
    scored, false_nouns, rows = [], [], []
    for photo in photos:
        result = model.caption(photo.image())
        things = boxes.get(photo.id, {})
        for t, (token, kind) in enumerate(zip(result.tokens, result.map_kinds, strict=True)):
            if kind != READ:
                continue
            noun = singular.get(token, token)
            if noun not in things:
                false_nouns.append(f"{photo.id}: {token}")
                continue
            read = peak_hits(result.maps[t], things[noun])
            prior = peak_hits(result.alphas[t], things[noun])
            scored.append((read, prior))
            rows.append(f"{photo.id:55} {token:14} read {'hit ' if read else 'miss'}  "
                        f"prior {'hit' if prior else 'miss'}")  # fmt: skip
    print("\n".join(rows))
    read_hits = sum(read for read, _ in scored)
    prior_hits = sum(prior for _, prior in scored)
    count = len(scored)
    print(f"\nreal photos ({len(photos)}), copied nouns naming a boxed thing: {count} "
          f"(copied nouns naming nothing boxed: {len(false_nouns)})")  # fmt: skip
    print("copied nouns naming nothing boxed:", ", ".join(false_nouns) or "none")
    print("| map | pointing of copied nouns |\n|---|---:|")
    print(f"| where it was read (posterior) | {read_hits}/{count} = {read_hits / count:.3f} |")
    print(f"| attention before it (prior) | {prior_hits}/{count} = {prior_hits / count:.3f} |")


def composites(model: Captioner, directory: Path, split: str) -> None:
    annotations = json.loads((directory / f"captions_{split}.json").read_text())
    images = annotations["images"]
    results = model.caption([str(directory / split / image["file_name"]) for image in images])
    by_map = {"maps": [], "alphas": []}
    for image, result in zip(images, results, strict=True):
        size = (image["width"], image["height"])
        for name in by_map:
            maps = getattr(result, name)
            by_map[name].append(ground_caption(result.tokens, maps, image["objects"], size))
    print(f"\ncomposites ({split}, {len(images)} images)")
    print("| map | pointing, copied nouns | grounded nouns | chance | attention in box |")
    print("|---|---:|---:|---:|---:|")
    for name, label in (("maps", "where it was read"), ("alphas", "attention before it")):
        s = grounding_scores(by_map[name], copied_nouns=True)
        print(f"| {label} | {s['pointing_nouns']:.3f} | {s['grounded_nouns']} | "
              f"{s['pointing_chance_nouns']:.3f} | {s['attention_in_box']:.3f} |")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--boxes", type=Path, default=BOXES_PATH)
    parser.add_argument("--composites", type=Path, metavar="DIR")
    parser.add_argument("--split", default="test")
    args = parser.parse_args(argv)
    model = Captioner.load(args.model, device="cpu", backend="torch")
    real_photos(model, json.loads(args.boxes.read_text(encoding="utf-8"))["photos"])
    if args.composites is not None:
        composites(model, args.composites, args.split)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
