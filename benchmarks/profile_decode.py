"""Where Captioner.decode spends its time, by operation and input shape (torch.profiler).

    python -m benchmarks.profile_decode [--model DIR] [--backend torch|onnx] [--images 32]
        [--beam-size 5] [--rows 25]

Encodes real photos of the development set (training/real_photos.py; scikit-image's photos
where it is not installed), then profiles one decode of all of them on one thread and prints
the operations that took the most time of their own, grouped by input shape: a per-photo
operation that runs twice, or a copy made at every step, shows up at the top. With --backend
onnx the encoder's graph gives a copy model its class maps, so decode() no longer runs the
ImageNet head: what is left is the search and the per-photo work that follows the classes.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import load_model, sample_photos
from captioner.options import DecodeOptions


def real_photos(count: int) -> tuple[list, str]:
    """The first `count` development photos (cycled), or scikit-image's when none is installed."""
    from training.real_photos import load_dev_set

    found, _ = load_dev_set()
    if not found:
        return sample_photos(count), "scikit-image sample photos"
    return [found[i % len(found)].image() for i in range(count)], "development-set photos"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the shipped one)")
    parser.add_argument("--backend", default="torch", choices=("torch", "onnx"))
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--rows", type=int, default=25, help="operations to list")
    args = parser.parse_args()

    torch.set_num_threads(1)
    model, description = load_model(args.model, args.backend)
    photos, source = real_photos(args.images)
    features = model.encode(photos)
    options = DecodeOptions(beam_size=args.beam_size)
    model.decode(features, options)  # warm-up: first-call allocations stay out of the profile

    start = time.perf_counter()
    model.decode(features, options)
    plain_ms = 1000 * (time.perf_counter() - start)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as profiler:
        model.decode(features, options)
    print(
        f"model: {description}; {args.images} {source}, beam {args.beam_size}, 1 thread\n"
        f"Captioner.decode: {plain_ms:.0f} ms, {plain_ms / args.images:.2f} ms a photo "
        "(unprofiled)\n"
    )
    table = profiler.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total",
        row_limit=args.rows,
        max_name_column_width=28,
        max_shapes_column_width=60,
    )
    print(table)


if __name__ == "__main__":
    main()
