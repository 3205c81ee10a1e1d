"""The captions a run trains and validates on, and how its config.json names them.

config.json is shared with the model, so it names the data by what identifies it (the caption
file's name and SHA-256, the image folder's name), never by where it lay on the training machine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from training.readers import DatasetFormatError, ReadResult, Sample, read_samples
from training.train_run import TrainRun


def read_data(run: TrainRun, log: Callable[[str], None]) -> tuple[list[Sample], list[Sample]]:
    """Training and validation samples; a Karpathy file brings its own val split."""
    result = read_samples(run.data, run.images, format=run.format, skip_missing=run.skip_missing)
    report_read(run.data, result, log)
    train = [s for s in result.samples if s.split == "train"]
    if not train:
        raise DatasetFormatError(
            f"{run.data}: no training images (splits: {sorted({s.split for s in result.samples})})"
        )
    if run.val_data:
        val_result = read_samples(
            run.val_data,
            run.val_images or run.images,
            format=run.format,
            skip_missing=run.skip_missing,
        )
        report_read(run.val_data, val_result, log)
        val = val_result.samples
    else:
        val = [s for s in result.samples if s.split == "val"]
    if not val:
        log("no validation data (--val-data or a val split): best/ is chosen by training loss")
    return train, val


def report_read(path: Path, result: ReadResult, log: Callable[[str], None]) -> None:
    if result.empty_captions_dropped:
        log(f"{path}: {result.empty_captions_dropped} empty captions dropped")
    if result.images_without_captions:
        log(f"{path}: {result.images_without_captions} images without a caption, skipped")
    if result.unlisted_images:
        log(f"{path}: {result.unlisted_images} images in no split list, skipped")
    if result.missing_images:
        log(f"{path}: {len(result.missing_images)} images missing, skipped")


def data_record(run: TrainRun) -> dict:
    """config.json's "data": the training files, and the validation files when they are
    separate ("val" is null when validation used the training file's val split, or none)."""
    val = describe_files(run.val_data, run.val_images or run.images) if run.val_data else None
    return {"train": describe_files(run.data, run.images), "val": val}


def describe_files(captions: Path, images: Path) -> dict:
    """What tells a caption file and its photos from others, without a path of this machine."""
    return {
        "captions": captions.name,
        "sha256": hashlib.sha256(captions.read_bytes()).hexdigest(),
        "images": images.resolve().name,
    }
