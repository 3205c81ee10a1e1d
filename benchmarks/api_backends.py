"""Captioner.caption on real photos with each backend, side by side in one run.

    python -m benchmarks.api_backends [--model DIR] [--images 32] [--beam-size 5] [--repeats 3]

Loads the model once per backend (torch: PyTorch float; onnx: the encoder and the copy head's
class maps in ONNX Runtime), captions the same photos with each, and prints per backend the
milliseconds a photo for caption(), encode() and decode(), the ratio to the PyTorch path, and
whether the captions are the PyTorch path's. One thread, so the ratios hold on a shared machine.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import best_time, load_model
from benchmarks.profile_decode import real_photos
from captioner.options import DecodeOptions

BACKENDS = ("torch", "onnx")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the shipped one)")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    torch.set_num_threads(1)
    photos, source = real_photos(args.images)
    options = DecodeOptions(beam_size=args.beam_size)
    rows, reference = [], None
    for backend in BACKENDS:
        model, description = load_model(args.model, backend)
        texts = [r.text for r in model.caption(photos, options, batch_size=len(photos))]
        reference = reference or texts
        same = sum(a == b for a, b in zip(texts, reference, strict=True))
        rows.append((backend, *_times(model, photos, options, args.repeats), same))

    per_photo = 1000 / len(photos)
    print(f"model: {description}; {len(photos)} {source}, beam {args.beam_size}, 1 thread\n")
    print("| backend | caption ms/photo | encode | decode | speed-up | same captions |")
    print("|---|---|---|---|---|---|")
    for backend, caption_s, encode_s, decode_s, same in rows:
        print(
            f"| {backend} | {caption_s * per_photo:.1f} | {encode_s * per_photo:.1f} | "
            f"{decode_s * per_photo:.1f} | {rows[0][1] / caption_s:.2f}x | {same}/{len(photos)} |"
        )


def _times(model, photos: list, options: DecodeOptions, repeats: int) -> tuple[float, ...]:
    """Seconds for caption(), encode() and decode() of all the photos, best of `repeats`."""
    pixels = torch.stack([model.preprocess(photo) for photo in photos])
    features = model.encode(pixels)
    return (
        best_time(lambda: model.caption(photos, options, batch_size=len(photos)), repeats),
        best_time(lambda: model.encode(pixels), repeats),
        best_time(lambda: model.decode(features, options), repeats),
    )


if __name__ == "__main__":
    main()
