"""captioner-evaluate: caption a dataset split with a trained model and score it.

    captioner-evaluate --model runs/scenes/best --annotations data/captions_test.json \
        --images data/test --out metrics.json --results results.json --per-image per_image.jsonl

Scores are the COCO caption metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, see
training/metrics.py), written under their COCO names. When the annotations list each image's
objects (the generated scenes of training/scenes/: shapes and composites), the attention maps
are also scored against the object boxes (training/grounding.py); for a model that copies nouns,
pointing accuracy is reported for its copied nouns too (pointing_nouns). On shapes scenes,
entirely_true is the share of captions that say only what the scene shows. Images that cannot be
read are reported and skipped, never fatal. Every output file is written atomically, so an
interrupted run never leaves half a file.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from captioner import Captioner, CaptionResult, CheckpointError
from captioner.cli.args import (
    add_decode_arguments,
    add_engine_arguments,
    decode_options,
    plain_warnings,
    positive_int,
)
from captioner.device import resolve_device
from captioner.onnx_backend import OnnxUnavailableError
from captioner.options import DecodeOptions, is_number
from captioner.photos.atomic import write_atomically
from captioner.photos.images import image_size
from captioner.pipeline import caption_batches, photo_batches
from training.grounding import CaptionGrounding, ground_caption, grounding_scores
from training.metrics import coco_metrics
from training.readers import FORMATS, DatasetFormatError, Sample, read_samples
from training.scenes import possible_captions
from training.train_run import HelpWithDefaults

logger = logging.getLogger(__name__)

COCO_METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")
GROUNDING_METRICS = (
    "pointing_accuracy",
    "attention_in_box",
    "pointing_chance",
    "pointing_nouns",
    "pointing_chance_nouns",
)


@dataclass(frozen=True)
class SkippedImage:
    path: str
    reason: str


@dataclass
class EvaluatedImage:
    """One captioned image with its own scores (and, for scenes data, its word grounding)."""

    sample: Sample
    caption: str
    scores: dict[str, float]  # Bleu_4 and CIDEr of this image alone
    grounding: CaptionGrounding | None  # None when the annotations list no objects for it
    # Shapes scenes only (None elsewhere): the grammar could have written the caption for this
    # scene, so every word of it is true (training/scenes/grammar.py's possible_captions).
    entirely_true: bool | None = None


@dataclass
class Evaluation:
    scores: dict[str, float | int | None]  # COCO names, then the grounding keys when scored
    images: list[EvaluatedImage]  # the captioned images, in the order of the samples
    skipped: list[SkippedImage]  # images that could not be read
    warnings: list[str]


def evaluate_samples(
    captioner: Captioner,
    samples: Sequence[Sample],
    options: DecodeOptions = DecodeOptions(),
    *,
    batch_size: int = 16,
    workers: int = 0,
    meteor: bool = True,
    progress: bool = False,
) -> Evaluation:
    """Caption every sample's image and score the captions against the sample's references.

    `workers` processes open and resize the photos (0: this process does).
    Unreadable images are skipped and listed. Grounding scores (pointing_accuracy,
    attention_in_box, pointing_chance, grounded_words, ungrounded_words) are added when any
    sample carries "objects" in its extra, and for a copy model (its results carry a copy gate)
    the copied nouns' pointing_nouns, pointing_chance_nouns and grounded_nouns. On shapes
    scenes, entirely_true is the share of captions the scenes' grammar could have written.
    Raises ValueError when no image could be captioned.
    """
    for sample in samples:
        if "objects" in sample.extra:
            _check_objects(sample)
    captioned: list[tuple[Sample, CaptionResult]] = []
    skipped: list[SkippedImage] = []
    # disable=None: a progress bar only on a terminal, not in logs
    progress_bar = tqdm(
        total=len(samples), unit="image", disable=None if progress else True, file=sys.stderr
    )
    batches = photo_batches(
        captioner, [sample.image_path for sample in samples], batch_size=batch_size, workers=workers
    )
    results = itertools.chain.from_iterable(caption_batches(captioner, batches, options))
    with progress_bar as bar:
        for sample, result in zip(samples, results, strict=True):
            if result.error is None:
                captioned.append((sample, result))
            else:
                skipped.append(SkippedImage(str(sample.image_path), result.error))
                logger.warning("skipped %s: %s", sample.image_path, result.error)
            bar.update()
    if not captioned:
        raise ValueError(f"none of the {len(samples)} images could be captioned")

    # Keyed by position, not image_id: ids are only as unique as the annotation file makes them.
    references = {k: list(sample.captions) for k, (sample, _) in enumerate(captioned)}
    candidates = {k: result.text for k, (_, result) in enumerate(captioned)}
    metrics = coco_metrics(references, candidates, meteor=meteor)
    scores: dict[str, float | int | None] = dict(metrics.scores)
    warnings = list(metrics.warnings)

    images = []
    for k, (sample, result) in enumerate(captioned):
        grounding = None
        if "objects" in sample.extra:
            grounding = ground_caption(
                result.tokens, result.alphas, sample.extra["objects"], _image_size(sample)
            )
        entirely_true = None
        if _is_shapes_scene(sample):
            width, _ = _image_size(sample)
            entirely_true = result.text in possible_captions(sample.extra["objects"], width)
        images.append(
            EvaluatedImage(sample, result.text, metrics.per_image[k], grounding, entirely_true)
        )
    truths = [image.entirely_true for image in images if image.entirely_true is not None]
    if truths:
        scores["entirely_true"] = sum(truths) / len(truths)
    groundings = [image.grounding for image in images if image.grounding is not None]
    if groundings:
        # A copy model's table nouns are masked out of its vocabulary: it says them by copying.
        copy_model = captioned[0][1].copy_gate is not None
        scores |= grounding_scores(groundings, copied_nouns=copy_model)
        if scores["grounded_words"] == 0:
            message = (
                "no generated word names a shape, noun or colour present in its image: "
                "pointing_accuracy, attention_in_box and pointing_chance are null"
            )
            warnings.append(message)
            logger.warning(message)
    return Evaluation(scores, images, skipped, warnings)


def _check_objects(sample: Sample) -> None:
    """Fail before any captioning when an image's "objects" cannot be scored."""
    objects = sample.extra["objects"]
    where = f"image {sample.image_id!r} ({sample.image_path.name})"
    if not isinstance(objects, list):
        raise DatasetFormatError(f"{where}: 'objects' must be a list")
    for index, obj in enumerate(objects):
        ok = (
            isinstance(obj, dict)
            # shapes scenes name objects by shape; composites by noun, some without a colour
            and (isinstance(obj.get("shape"), str) or isinstance(obj.get("noun"), str))
            and "color" in obj
            and (obj["color"] is None or isinstance(obj["color"], str))
            and isinstance(obj.get("bbox"), list)
            and len(obj["bbox"]) == 4
            and all(_is_number(value) for value in obj["bbox"])
        )
        if not ok:
            raise DatasetFormatError(
                f"{where}: objects[{index}] needs 'shape' or 'noun', 'color' (a word or null) "
                "and 'bbox' [x, y, w, h]"
            )
    for key in ("width", "height"):
        if key in sample.extra and not (_is_number(sample.extra[key]) and sample.extra[key] > 0):
            raise DatasetFormatError(f"{where}: '{key}' must be a positive number")


def _is_number(value: Any) -> bool:
    return is_number(value) and math.isfinite(value)


def _is_shapes_scene(sample: Sample) -> bool:
    """A generated shapes scene (training/scenes/shapes.py), whose every true caption is known; the
    composites name their objects by "noun" with a grammar of their own."""
    objects = sample.extra.get("objects")
    return bool(objects) and all("shape" in obj for obj in objects)


def _image_size(sample: Sample) -> tuple[int, int]:
    """(width, height) the boxes refer to: the annotation's, else the image file's."""
    if "width" in sample.extra and "height" in sample.extra:
        return sample.extra["width"], sample.extra["height"]
    return image_size(sample.image_path)  # the header only: the photo was just captioned


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    outputs = [path for path in (args.out, args.results, args.per_image) if path is not None]
    _check_outputs(parser, outputs, args.annotations)
    # Warnings from here and from training.metrics reach stderr, unless logging is set up already.
    logging.basicConfig(format="captioner-evaluate: %(message)s")
    plain_warnings("captioner-evaluate")

    try:
        device = resolve_device(args.device)
        # A device torch can name but not use (cuda:3 on a one-GPU machine) fails here, not
        # later where its error could not be told from the model's or the data's.
        torch.empty(0, device=device)
    except (RuntimeError, ValueError) as error:  # torch's errors for a device are RuntimeErrors
        return _fail(f"--device {args.device!r}: {error}")
    try:
        captioner = Captioner.load(
            args.model, device=device, backend=args.backend, precision=args.precision
        )
        read = read_samples(
            args.annotations, args.images, format=args.format, split=args.split, skip_missing=True
        )
    except (
        CheckpointError,
        DatasetFormatError,
        FileNotFoundError,
        ValueError,
        OnnxUnavailableError,
    ) as error:
        return _fail(error)
    samples = read.samples[: args.limit] if args.limit is not None else read.samples
    skipped = [SkippedImage(str(path), "file not found") for path in read.missing_images]
    for item in skipped:
        logger.warning("skipped %s: %s", item.path, item.reason)

    try:
        for path in outputs:
            path.parent.mkdir(parents=True, exist_ok=True)
        evaluation = evaluate_samples(
            captioner,
            samples,
            decode_options(args),
            batch_size=args.batch_size,
            workers=args.workers,
            meteor=not args.no_meteor,
            progress=True,
        )
    except (DatasetFormatError, ValueError, OSError) as error:
        return _fail(error)
    skipped += evaluation.skipped

    report = {
        **evaluation.scores,
        "num_images": len(evaluation.images),
        "skipped_images": len(skipped),
        "skipped": [{"path": item.path, "reason": item.reason} for item in skipped],
        "model": captioner.name,
        "model_dir": str(args.model),
        "annotations": str(args.annotations),
        "split": args.split,
        **dataclasses.asdict(decode_options(args)),
        "warnings": evaluation.warnings,
    }
    try:
        if args.results is not None:
            results = [
                {"image_id": image.sample.image_id, "caption": image.caption}
                for image in evaluation.images
            ]
            write_atomically(
                args.results, json.dumps(results, ensure_ascii=False, indent=1).encode()
            )
        if args.per_image is not None:
            lines = [
                json.dumps(_per_image_record(image), ensure_ascii=False) + "\n"
                for image in evaluation.images
            ]
            write_atomically(args.per_image, "".join(lines).encode())
        # Last, so a metrics file on disk means the whole run finished.
        write_atomically(
            args.out, (json.dumps(report, ensure_ascii=False, indent=2) + "\n").encode()
        )
    except OSError as error:
        return _fail(f"cannot write the outputs: {error}")

    _print_summary(report, outputs)
    return 0


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="captioner-evaluate",
        description="Caption a dataset split with a trained model and score it with the COCO "
        "caption metrics (and attention grounding on generated scenes).",
        formatter_class=HelpWithDefaults,
    )
    parser.add_argument(
        "--model",
        required=True,
        metavar="DIR|NAME|hf:OWNER/NAME",
        help="a model directory, a shipped model's name, or hf:OWNER/NAME[@REVISION]",
    )
    parser.add_argument("--annotations", type=Path, required=True, help="caption annotations file")
    parser.add_argument("--images", type=Path, required=True, help="folder holding the images")
    parser.add_argument(
        "--split",
        default="test",
        choices=("train", "val", "test", "restval"),
        help="split to evaluate (default test); a COCO file is taken to hold this split",
    )
    parser.add_argument("--format", choices=FORMATS, help="annotation format (default: detect)")
    add_engine_arguments(parser)
    add_decode_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, help="metrics JSON to write")
    parser.add_argument("--results", type=Path, help="COCO results JSON [{image_id, caption}]")
    parser.add_argument(
        "--per-image", type=Path, help="JSON lines: caption, references and scores per image"
    )
    parser.add_argument("--no-meteor", action="store_true", help="skip METEOR (needs Java)")
    parser.add_argument(
        "--limit", type=positive_int, help="evaluate only the first N images found on disk"
    )
    return parser


def _check_outputs(parser: argparse.ArgumentParser, outputs: list[Path], annotations: Path) -> None:
    resolved = [path.resolve() for path in outputs]
    if len(set(resolved)) != len(resolved):
        parser.error("--out, --results and --per-image must be different files")
    if annotations.resolve() in resolved:
        parser.error(f"an output would overwrite the annotations file {annotations}")
    for path in outputs:
        if path.is_dir():
            parser.error(f"{path} is a directory; expected a file name")


def _per_image_record(image: EvaluatedImage) -> dict[str, Any]:
    record = {
        "path": str(image.sample.image_path),
        "image_id": image.sample.image_id,
        "caption": image.caption,
        "references": list(image.sample.captions),
        **image.scores,
    }
    if image.grounding is not None:
        record["grounded_words"] = [
            {
                "word": word.word,
                "position": word.position,
                "objects": list(word.objects),
                "pointing_hit": word.pointing_hit,
                "attention_in_box": word.attention_in_box,
                "chance": word.chance,
                "noun": word.noun,
            }
            for word in image.grounding.grounded
        ]
        record["ungrounded_words"] = image.grounding.ungrounded
    if image.entirely_true is not None:
        record["entirely_true"] = image.entirely_true
    return record


def _print_summary(report: dict[str, Any], outputs: list[Path]) -> None:
    print(f"{report['num_images']} images, {report['skipped_images']} skipped")
    # entirely_true is in metrics.json for shapes scenes; the table shows every score it has.
    for key in (*COCO_METRICS, *GROUNDING_METRICS, "entirely_true"):
        if report.get(key) is not None:
            print(f"{key:<21} {report[key]:.4f}")
    for key in ("grounded_words", "ungrounded_words", "grounded_nouns"):
        if key in report:
            print(f"{key:<21} {report[key]}")
    for path in outputs:
        print(f"wrote {path}")


def _fail(error: Exception | str) -> int:
    print(f"captioner-evaluate: error: {error}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
