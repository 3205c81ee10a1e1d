"""Captioner.caption on real photos with each backend, side by side in one run.

    python -m benchmarks.api_backends [--model DIR] [--images 32] [--beam-size 5] [--repeats 3]
        [--no-people]

Loads the model once per backend and precision (torch: PyTorch float; onnx: the encoder and the
copy head's class maps in ONNX Runtime, in float, then with the encoder's int8 graph), captions
the same photos with each, and prints per row the milliseconds a photo for caption(), encode()
(and the encoder alone within it) and decode(), the ratios to the PyTorch path, and whether the
captions are the PyTorch path's.
One thread, so the ratios hold on a shared machine; the load average is printed with the table.
"""

from __future__ import annotations

import argparse
import os

import torch

from benchmarks.common import best_time
from benchmarks.profile_decode import real_photos
from captioner import Captioner
from captioner.options import DecodeOptions

RUNS = (("torch", "float"), ("onnx", "float"), ("onnx", "int8"))  # (backend, precision)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the shipped one)")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--no-people", action="store_true", help="without the face detector (set_people(False))"
    )
    args = parser.parse_args()

    torch.set_num_threads(1)
    photos, source = real_photos(args.images)
    options = DecodeOptions(beam_size=args.beam_size)
    rows, reference = [], None
    for backend, precision in RUNS:
        model = Captioner.load(args.model, device="cpu", backend=backend, precision=precision)
        if args.no_people:
            model.set_people(False)
        texts = [r.text for r in model.caption(photos, options, batch_size=len(photos))]
        reference = reference or texts
        same = sum(a == b for a, b in zip(texts, reference, strict=True))
        row = f"{model.backend} {model.precision}"
        rows.append((row, *_times(model, photos, options, args.repeats), same))

    per_photo = 1000 / len(photos)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    people = "off" if args.no_people else "as loaded"
    print(
        f"model: {model.name}; {len(photos)} {source}, beam {args.beam_size}, 1 thread, "
        f"face detector {people}"
    )
    print(f"{os.cpu_count()} CPUs, load average {load} (1, 5, 15 min) at the end\n")
    print(
        "| backend | caption ms/photo | encode | of which the encoder | decode | speed-up "
        "| encoder speed-up | same captions |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row, caption_s, encode_s, encoder_s, decode_s, same in rows:
        print(
            f"| {row} | {caption_s * per_photo:.1f} | {encode_s * per_photo:.1f} "
            f"| {encoder_s * per_photo:.1f} | {decode_s * per_photo:.1f} "
            f"| {rows[0][1] / caption_s:.2f}x | {rows[0][3] / encoder_s:.2f}x "
            f"| {same}/{len(photos)} |"
        )


def _times(model, photos: list, options: DecodeOptions, repeats: int) -> tuple[float, ...]:
    """Seconds for caption(), encode(), the encoder alone (the network or its graph, without
    what encode() adds: the face detector) and decode() of all the photos, best of `repeats`."""
    pixels = torch.stack([model.preprocess(photo) for photo in photos])
    features = model.encode(pixels)
    return (
        best_time(lambda: model.caption(photos, options, batch_size=len(photos)), repeats),
        best_time(lambda: model.encode(pixels), repeats),
        best_time(lambda: torch.inference_mode()(model._run_encoder)(pixels), repeats),
        best_time(lambda: model.decode(features, options), repeats),
    )


if __name__ == "__main__":
    main()
