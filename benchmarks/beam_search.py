"""Decoding speed on CPU: batched beam search vs one image at a time, and captioning vs encoding.

    python -m benchmarks.beam_search [--model DIR] [--images 32] [--beam-size 5]
        [--consensus-samples 30] [--backend torch|onnx]

Prints a table; the ratios come from the same run, so they hold on a noisy machine.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from benchmarks.common import best_time, load_model, sample_photos
from captioner.options import DecodeOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the embedded one)")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--max-length", type=int, default=20)
    parser.add_argument("--consensus-samples", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    args = parser.parse_args()

    model, description = load_model(args.model, args.backend)
    photos = sample_photos(args.images)
    pixels = torch.stack([model.preprocess(p) for p in photos])
    options = DecodeOptions(beam_size=args.beam_size, max_length=args.max_length)
    print(
        f"model: {description}; {args.images} images, beam {args.beam_size}, "
        f"{torch.get_num_threads()} threads"
    )

    encoder_ms = {}  # the raw encoder at several batch sizes: what Captioner.encode chunks by
    for batch in (1, 4, 8, 16, 32):

        def encode(batch=batch):
            with torch.inference_mode():
                for start in range(0, len(pixels), batch):
                    model.encoder(pixels[start : start + batch])

        encoder_ms[batch] = 1000 * best_time(encode, args.repeats) / len(pixels)

    features = model.encode(pixels)
    lengths = [len(r.tokens) for r in model.decode(features, options)]
    batched = best_time(lambda: model.decode(features, options), args.repeats)
    projected = best_time(
        lambda: _with_every_cell_projected(model, lambda: model.decode(features, options)),
        args.repeats,
    )
    looped = best_time(
        lambda: [model.decode(features[i : i + 1], options) for i in range(len(features))],
        args.repeats,
    )
    consensus = best_time(
        lambda: model.decode(
            features, dataclasses.replace(options, consensus_samples=args.consensus_samples)
        ),
        args.repeats,
    )
    encode_s = best_time(lambda: model.encode(pixels), args.repeats)
    caption_s = best_time(lambda: model.decode(model.encode(pixels), options), args.repeats)
    n = len(pixels)
    print(f"mean caption length: {sum(lengths) / n:.1f} words")
    print("\n| encoder batch | ms / image |\n|---:|---:|")
    for batch, ms in encoder_ms.items():
        print(f"| {batch} | {ms:.1f} |")
    print(
        f"\nCaptioner.encode runs the encoder {max(4, torch.get_num_threads())} photos at a time\n"
    )
    print("| measurement | ms / image | ratio |\n|---|---:|---:|")
    print(f"| beam search, loop over single images | {1000 * looped / n:.1f} | 1.00 |")
    print(
        f"| beam search, batched ({n} images) | {1000 * batched / n:.1f} | "
        f"{looped / batched:.2f}x faster |"
    )
    print(
        f"| beam search, batched, every grid cell projected (the other exact form) | "
        f"{1000 * projected / n:.1f} | {looped / projected:.2f}x faster |"
    )
    print(
        f"| beam search, batched, + consensus reranking ({args.consensus_samples} samples) | "
        f"{1000 * consensus / n:.1f} | {consensus / batched:.1f}x the batched search |"
    )
    print(f"| encoder only (the floor) | {1000 * encode_s / n:.1f} | 1.00 |")
    print(
        f"| encoder + batched beam search | {1000 * caption_s / n:.1f} | "
        f"{caption_s / encode_s:.2f}x the floor |"
    )


def _with_every_cell_projected(model, run):
    """Run with Decoder.prepare forced to project every grid cell, whatever its cost rule says."""
    decoder = model.decoder
    prepare = decoder.prepare

    def project_all(features):
        memory = prepare(features)
        projected = memory.features @ decoder._context_weight().T
        return memory._replace(projected_features=projected)

    decoder.prepare = project_all
    try:
        return run()
    finally:
        del decoder.prepare


if __name__ == "__main__":
    main()
