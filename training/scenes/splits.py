"""A split of generated scenes on disk: the images, and one annotations file in the COCO
captions format (see training/scenes/__init__.py for its extra keys).

Everything is derived from a per-image seed built from (seed, split, index), so the output is
byte-identical whatever the worker count and the splits never share a random stream.
"""

import io
import json
import math
import multiprocessing
import os
import re
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from captioner.photos.atomic import write_atomically
from training.scenes.shapes import MIN_IMAGE_SIZE, make_scene

IMAGE_FORMATS = ("png", "jpg")


CHUNK_SIZE = 64  # images per worker task


def _image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    # crc32 is stable across runs, unlike hash(); it gives each split its own stream.
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(split.encode()), index]))


SceneMaker = Callable[[np.random.Generator, int], tuple[Image.Image, list[dict], list[dict]]]


def _render_chunk(
    job: tuple[SceneMaker, str, int, int, str, str, int, int],
) -> list[tuple[str, list, list]]:
    """Writes images start..stop-1 of a split; returns (file_name, objects, captions) for each."""
    make, split, seed, size, image_format, image_dir, start, stop = job
    records = []
    for index in range(start, stop):
        image, objects, captions = make(_image_rng(seed, split, index), size)
        file_name = f"{index:06d}.{image_format}"
        buffer = io.BytesIO()
        if image_format == "png":
            image.save(buffer, format="PNG")
        else:
            image.save(buffer, format="JPEG", quality=90)
        write_atomically(Path(image_dir) / file_name, buffer.getvalue())
        records.append((file_name, objects, captions))
    return records


def generate_split(
    out_dir: Path,
    split: str,
    count: int,
    seed: int,
    size: int = 256,
    image_format: str = "png",
    workers: int | None = None,
    make: SceneMaker = make_scene,
    info: Mapping[str, object] | None = None,
) -> Path:
    """Writes count scenes to out_dir/split/ and out_dir/captions_{split}.json; returns the latter.

    make(rng, size) draws one scene as make_scene does (another kind of scene: a picklable
    callable, since workers are separate processes); info replaces or adds entries of the JSON's
    "info" (description, ...). The output depends only on (make, seed, split, index, size,
    image_format), never on workers.
    """
    if not re.fullmatch(r"[A-Za-z0-9_-]+", split):
        raise ValueError(f"split name must be letters, digits, '_' or '-', got {split!r}")
    if count < 1:
        raise ValueError(f"count for split {split!r} must be at least 1, got {count}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if size < MIN_IMAGE_SIZE:
        raise ValueError(f"image size must be at least {MIN_IMAGE_SIZE} px, got {size}")
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    workers = max(1, workers or os.cpu_count() or 1)
    out_dir = Path(out_dir)
    image_dir = out_dir / split
    image_dir.mkdir(parents=True, exist_ok=True)
    chunk = max(1, min(CHUNK_SIZE, math.ceil(count / workers)))
    jobs = [
        (make, split, seed, size, image_format, str(image_dir), start, min(start + chunk, count))
        for start in range(0, count, chunk)
    ]
    if workers == 1 or len(jobs) == 1:
        chunks = [_render_chunk(job) for job in jobs]
    else:
        # spawn, not fork: safe when the caller already runs threads (torch, Qt).
        with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
            chunks = pool.map(_render_chunk, jobs)
    images, annotations = [], []
    records = (record for records in chunks for record in records)
    # The id is the number the file name ends with, as training/scenes/__init__.py explains.
    for image_id, (file_name, objects, captions) in enumerate(records):
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "width": size,
                "height": size,
                "objects": objects,
            }
        )
        for caption in captions:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **caption})
    coco = {
        "info": {
            "description": "captioner generated scenes",
            "version": "1",
            **(info or {}),
            "split": split,
            "seed": seed,
            "size": size,
        },
        "images": images,
        "annotations": annotations,
        "licenses": [],
    }
    annotations_path = out_dir / f"captions_{split}.json"
    write_atomically(annotations_path, json.dumps(coco, separators=(",", ":")).encode())
    return annotations_path
