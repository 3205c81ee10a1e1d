"""Time to the first training batch on a COCO-sized caption file, stage by stage.

    python benchmarks/data_loading.py [--images 118287] [--captions 5] [--dir DIR]

Generates a COCO captions JSON (118,287 images x 5 captions, as train2017) over empty photo
files, and a feature cache that already holds every photo, then does what captioner-train
does before its first batch with a frozen encoder: read the captions, check the cache, drop
uncached photos, build the vocabulary, tokenize the captions into training pairs and load one
batch. Prints seconds per stage, and the stat and lstat calls per photo (a resolve() is one
lstat per path component). --dir keeps the generated files for the next run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from torch.utils.data import DataLoader

from captioner.encoder import EncoderConfig
from captioner.vocab import Vocabulary
from training.batches import BucketBatchSampler, CaptionPairs, collate
from training.features import DiskFeatureCache
from training.readers import read_samples

WORDS = [
    "a", "an", "the", "man", "woman", "person", "people", "dog", "cat", "bus", "train", "plate",
    "pizza", "table", "street", "city", "bike", "horse", "beach", "wave", "surfer", "field",
    "grass", "kitchen", "room", "bed", "window", "car", "truck", "red", "blue", "white", "black",
    "green", "small", "large", "young", "old", "two", "three", "on", "in", "with", "of", "near",
    "next", "to", "at", "by", "sitting", "standing", "riding", "holding", "walking", "eating",
    "playing", "looking", "parked", "covered", "filled", "front", "top", "side",
]  # fmt: skip


def generate(root: Path, images: int, captions: int) -> tuple[Path, Path]:
    """A COCO captions file and its (empty) photos. Rare made-up words give a long vocabulary
    tail; some captions have a comma or a possessive, as about one in six COCO captions do."""
    photos = root / "train2017"
    if not (root / "captions_train2017.json").is_file():
        photos.mkdir(parents=True, exist_ok=True)
        rng = random.Random(0)
        entries, annotations = [], []
        for image_id in range(images):
            name = f"{image_id:012d}.jpg"
            if not (photos / name).exists():  # a new mtime would be a new cache key
                (photos / name).touch()
            entries.append({"id": image_id, "file_name": name, "width": 640, "height": 480})
            for _ in range(captions):
                words = rng.choices(WORDS, k=rng.randint(8, 14))
                if rng.random() < 0.3:
                    words[rng.randrange(len(words))] = f"w{rng.randrange(20_000)}"
                if rng.random() < 0.12:
                    words[rng.randrange(len(words))] += ","
                if rng.random() < 0.05:
                    words[rng.randrange(len(words))] += "'s"
                text = " ".join(words).capitalize() + rng.choice([".", ".", "", " ."])
                annotations.append({"id": len(annotations), "image_id": image_id, "caption": text})
        data = {"images": entries, "annotations": annotations}
        (root / "captions_train2017.json").write_text(json.dumps(data))
    return root / "captions_train2017.json", photos


@contextmanager
def counting_stats(counts: Counter):
    """Count os.stat and os.lstat calls (pathlib's stat/is_file and resolve go through them)."""
    stat, lstat = os.stat, os.lstat

    def counted_stat(*args, **kwargs):
        counts["stat"] += 1
        return stat(*args, **kwargs)

    def counted_lstat(*args, **kwargs):
        counts["lstat"] += 1
        return lstat(*args, **kwargs)

    os.stat, os.lstat = counted_stat, counted_lstat
    try:
        yield
    finally:
        os.stat, os.lstat = stat, lstat


def feature_cache(root: Path) -> DiskFeatureCache:
    # The cache only needs an encoder for its fingerprint: no backbone is loaded
    return DiskFeatureCache(root / "cache", SimpleNamespace(config=EncoderConfig()))


def fill_cache(root: Path, photos: Path) -> None:
    """One tiny feature file per photo, so that the run below finds every photo cached. Its own
    DiskFeatureCache object: the timed one must start with nothing remembered."""
    cache = feature_cache(root)
    features = np.zeros((1, 1, 4), np.float16)
    for photo in sorted(photos.iterdir()):
        path = cache.path_for(photo)
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, features, allow_pickle=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=118_287)
    parser.add_argument("--captions", type=int, default=5, help="captions per image")
    parser.add_argument("--dir", type=Path, help="keep the generated files here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        root = args.dir or Path(scratch)
        annotations, photos = generate(root, args.images, args.captions)
        fill_cache(root, photos)
        cache = feature_cache(root)

        times: dict[str, tuple[float, float]] = {}  # stage -> (wall, CPU) seconds
        counts: Counter = Counter()

        @contextmanager
        def stage(name: str):
            wall, cpu = time.perf_counter(), time.process_time()
            yield
            times[name] = (time.perf_counter() - wall, time.process_time() - cpu)

        with counting_stats(counts):
            with stage("read captions"):
                samples = read_samples(annotations, photos).samples
            with stage("check the feature cache"):
                failed = cache.build([s.image_path for s in samples], progress=False)
                assert not failed
                samples = [s for s in samples if cache.path_for(s.image_path).is_file()]
            with stage("build the vocabulary"):  # tokenizes every caption, as train.py does
                vocab = Vocabulary.from_tokens((t for s in samples for t in s.tokens), 5)
            with stage("training pairs"):
                pairs = CaptionPairs(samples, vocab, cache.load)
            with stage("first batch"):
                sampler = BucketBatchSampler(pairs.lengths(), 64, seed=0)
                loader = DataLoader(pairs, batch_sampler=sampler, collate_fn=collate)
                next(iter(loader))
            per_epoch = Counter()
            with counting_stats(per_epoch):
                for index in range(1000):
                    pairs[index]

    captions = sum(len(s.captions) for s in samples)
    print(f"{len(samples):,} photos, {captions:,} captions, {len(vocab):,} words")
    # CPU seconds are the figure to compare on a shared machine; wall seconds include waiting
    print(f"{'stage':<28}{'wall s':>9}{'CPU s':>9}")
    for name, (wall, cpu) in times.items():
        print(f"{name:<28}{wall:>9.1f}{cpu:>9.1f}")
    walls, cpus = zip(*times.values(), strict=True)
    print(f"{'total':<28}{sum(walls):>9.1f}{sum(cpus):>9.1f}")
    photos_count = len(samples)
    print(
        f"before the first batch, per photo: {counts['stat'] / photos_count:.1f} stat, "
        f"{counts['lstat'] / photos_count:.1f} lstat calls; "
        f"per training pair loaded: {per_epoch['stat'] / 1000:.1f} stat, "
        f"{per_epoch['lstat'] / 1000:.1f} lstat"
    )


if __name__ == "__main__":
    main()
