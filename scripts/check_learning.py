"""Check that learning from the person's captions learns, and does not forget (issue #24).

    OMP_NUM_THREADS=2 .venv/bin/python scripts/check_learning.py

Starts from the shipped default model, which has never seen the generated shapes scenes, puts
200 scenes into a new caption library as the person's captions (one caption each, the first
of the scene's five), learns with captioner.learn, then measures:
- learning: BLEU-4 (training/metrics.py, pycocoevalcap's Bleu on the same tokenisation as
  captioner-evaluate) of beam-searched captions of 300 other scenes against their five
  references, before and after; target >= 0.40 within 3 minutes on 2 CPU cores;
- not forgetting: the named-subject rate on the real development set (training/real_photos.py),
  of the photos installed here, before and after; target >= 30/48 on the whole set.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from captioner.api import Captioner
from captioner.learn import LearnProgress, LearnSettings, learn_from_library
from captioner.library import Library
from training.metrics import coco_metrics
from training.real_photos import load_dev_set, named_subject_rate

TRAIN, TEST = 200, 300


def scenes(folder: Path, seed: int) -> tuple[dict, dict]:
    """Generate the scenes; returns the train and test COCO files' contents."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "training.scenes",
            str(folder),
            f"--train={TRAIN}",
            "--val=0",
            f"--test={TEST}",
            f"--seed={seed}",
            "--size=224",
            "--format=jpg",
            "--workers=2",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    read = lambda split: json.loads((folder / f"captions_{split}.json").read_text())  # noqa: E731
    return read("train"), read("test")


def by_image(coco: dict, folder: Path) -> dict[Path, list[str]]:
    """Each photo's path and its captions, in the file's order."""
    names = {image["id"]: folder / image["file_name"] for image in coco["images"]}
    captions: dict[Path, list[str]] = {path: [] for path in names.values()}
    for annotation in coco["annotations"]:
        captions[names[annotation["image_id"]]].append(annotation["caption"])
    return captions


def bleu4(captioner: Captioner, references: dict[Path, list[str]]) -> float:
    results = captioner.caption([str(path) for path in references])
    candidates = {str(p): r.text for p, r in zip(references, results, strict=True)}
    refs = {str(p): texts for p, texts in references.items()}
    return coco_metrics(refs, candidates, meteor=False)["Bleu_4"]


def named(captioner: Captioner) -> tuple[int, int, int]:
    """(named, photos here, photos in the whole set)."""
    photos, missing = load_dev_set()
    results = captioner.caption([photo.image() for photo in photos])
    report = named_subject_rate(
        {p.id: r.text for p, r in zip(photos, results, strict=True)}, photos
    )
    return report.named, len(photos), len(photos) + len(missing)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="of the scenes (default 0)")
    parser.add_argument("--l2sp", type=float, default=LearnSettings.l2sp)
    parser.add_argument("--max-epochs", type=int, default=LearnSettings.max_epochs)
    parser.add_argument("--patience", type=int, default=LearnSettings.patience)
    parser.add_argument("--lr", type=float, default=LearnSettings.lr)
    parser.add_argument("--raw-feature-rank", type=int, default=LearnSettings.raw_feature_rank)
    parser.add_argument("--skip-before", action="store_true", help="do not score the default")
    args = parser.parse_args(argv)
    settings = LearnSettings(
        l2sp=args.l2sp,
        max_epochs=args.max_epochs,
        patience=args.patience,
        lr=args.lr,
        raw_feature_rank=args.raw_feature_rank,
    )
    print(f"torch threads: {torch.get_num_threads()}; settings: {settings}")
    with tempfile.TemporaryDirectory(prefix="check-learning-") as tmp:
        folder = Path(tmp)
        train, test = scenes(folder / "scenes", args.seed)
        mine = by_image(train, folder / "scenes" / "train")
        others = by_image(test, folder / "scenes" / "test")
        start = Captioner.load("default")
        if not args.skip_before:
            n, here, total = named(start)
            print(
                f"default: BLEU-4 on {TEST} scenes {bleu4(start, others):.3f}; "
                f"named subjects {n}/{here} (of the {total} dev photos, {here} are installed)"
            )
        with Library.open(folder / "library.sqlite3") as library:
            for path, captions in mine.items():
                library.set_caption(str(path), captions[0])
            began = time.monotonic()

            def show(update: LearnProgress) -> None:
                if update.stage == "learning":
                    left = f"{update.seconds_left:.0f}" if update.seconds_left else "?"
                    print(
                        f"  epoch {update.epoch}: validation loss "
                        f"{update.validation_loss:.3f}, {update.fraction:.0%}, ~{left} s left"
                    )

            result = learn_from_library(start, library, settings=settings, progress=show)
            seconds = time.monotonic() - began
        # Other work on the machine slows learning down: the load says how much.
        load = os.getloadavg()[0]
        print(
            f"learned {result.captions} captions ({result.validation_captions} held out), "
            f"{result.epochs} epochs, {len(result.new_words)} new words, in {seconds:.0f} s "
            f"(target <= 180 s; load average {load:.1f} on {os.cpu_count()} CPUs); "
            f"held-out loss {result.start_loss:.3f} -> {result.best_loss:.3f}"
        )
        learned = Captioner.load(result.model_dir)
        score = bleu4(learned, others)
        n, here, total = named(learned)
        print(
            f"learned: BLEU-4 on {TEST} scenes {score:.3f} (target >= 0.40); named subjects "
            f"{n}/{here} (of the {total} dev photos, {here} are installed; target >= 30/48)"
        )
        sample = learned.caption([str(p) for p in list(others)[:5]])
        for path, r in zip(list(others)[:5], sample, strict=True):
            print(f"  {path.name}: {r.text!r}  (reference {others[path][0]!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
