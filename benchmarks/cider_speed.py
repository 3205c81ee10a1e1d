"""The self-critical reward's cost: training.cider.CiderD vs pycocoevalcap's CIDEr-D per batch.

    python -m benchmarks.cider_speed [--images 10000] [--batch 64] [--samples 5]

A synthetic COCO-sized corpus (5 references per image, Zipf-distributed words, 8-16 words and
<end>); each batch scores `samples` perturbed references per image, as SCST's sampled
captions. pycocoevalcap gets its captions as strings made before the clock starts and computes
its document frequencies from the batch (its only mode), so its time is a lower bound for a
training loop. Prints a table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from pycocoevalcap.cider.cider import Cider

from benchmarks.common import best_time
from training.cider import CiderD

END = 0


def synthetic_corpus(images: int, vocabulary: int, rng: np.random.Generator) -> list:
    """Five references per image, words drawn from a Zipf law so that common n-grams repeat."""
    ranks = np.arange(1, vocabulary)
    probabilities = 1.0 / ranks / np.sum(1.0 / ranks)
    return [
        [
            rng.choice(ranks, size=rng.integers(8, 17), p=probabilities).tolist() + [END]
            for _ in range(5)
        ]
        for _ in range(images)
    ]


def sampled_captions(references: list, samples: int, rng: np.random.Generator) -> list:
    """`samples` captions per image: a reference with a few words replaced, cut at random."""
    captions = []
    for refs in references:
        for _ in range(samples):
            caption = list(refs[rng.integers(len(refs))])
            for position in rng.integers(0, len(caption), size=3):
                caption[position] = int(rng.integers(1, 50))
            captions.append(caption[: rng.integers(len(caption) // 2, len(caption) + 1)])
    return captions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10000, help="training images (corpus)")
    parser.add_argument("--vocabulary", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=64, help="images per batch")
    parser.add_argument("--samples", type=int, default=5, help="candidates per image")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    corpus = synthetic_corpus(args.images, args.vocabulary, rng)
    start = time.perf_counter()
    scorer = CiderD(corpus)
    build_s = time.perf_counter() - start

    images = np.repeat(rng.choice(args.images, size=args.batch, replace=False), args.samples)
    candidates = sampled_captions([corpus[i] for i in images[:: args.samples]], args.samples, rng)
    ours_ms = 1000 * best_time(lambda: scorer.scores(images, candidates), args.repeats)

    def words(caption):
        return " ".join(map(str, caption))

    references = {k: [words(r) for r in corpus[i]] for k, i in enumerate(images)}
    tests = {k: [words(c)] for k, c in enumerate(candidates)}
    coco_ms = 1000 * best_time(lambda: Cider().compute_score(references, tests), args.repeats)

    print(
        f"corpus: {args.images} images x 5 references, vocabulary {args.vocabulary}; "
        f"CiderD built in {build_s:.2f} s; batch: {args.batch} images x {args.samples} candidates"
    )
    print("| scorer | ms / batch | speed-up |\n|---|---:|---:|")
    print(f"| pycocoevalcap Cider (CIDEr-D, batch df) | {coco_ms:.1f} | 1.0 |")
    print(f"| training.cider.CiderD (corpus df) | {ours_ms:.2f} | {coco_ms / ours_ms:.0f} |")


if __name__ == "__main__":
    main()
