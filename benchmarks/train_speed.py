"""Training throughput on CPU: decoder steps fed from the feature cache vs from photos.

    python benchmarks/train_speed.py [--images 256] [--batches 12]

Both modes train the same decoder on the same generated scenes with the same batches; the
photo mode opens, resizes and runs the frozen encoder on every batch, as training without the
cache would. The GRU and plain RNN rows give the cost of the other decoder cells. Prints a
table of training tokens per second.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from captioner.decoder import Decoder, DecoderConfig
from captioner.encoder import Encoder, EncoderConfig
from captioner.photos.images import load_image
from captioner.vocab import Vocabulary
from training.batches import BucketBatchSampler, CaptionPairs, collate
from training.features import DiskFeatureCache
from training.model import caption_loss
from training.readers import read_samples
from training.scenes import generate_split


def train_tokens_per_second(pairs, encoder, decoder, args) -> float:
    sampler = BucketBatchSampler(pairs.lengths(), args.batch_size, seed=0)
    loader = DataLoader(pairs, batch_sampler=sampler, collate_fn=collate,
                        num_workers=args.workers, generator=torch.Generator())  # fmt: skip
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-3)
    tokens, started = 0, None
    for step, (inputs, captions) in enumerate(loader):
        if step == 1:  # the first batch pays for start-up (worker processes, allocations)
            tokens, started = 0, time.perf_counter()
        if step == args.batches + 1:
            break
        if inputs.dim() == 4 and inputs.shape[1] == 3:  # photos: run the frozen encoder
            with torch.no_grad():
                inputs = encoder(inputs)
        logits, alphas = decoder(inputs, captions)
        cross_entropy, penalty = caption_loss(logits, alphas, captions, 1.0)
        tokens_here = int((captions[:, 1:] != 0).sum())
        loss = cross_entropy / tokens_here + penalty / len(captions)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        tokens += tokens_here
    return tokens / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batches", type=int, default=12, help="timed batches per mode")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="photo loading processes")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        annotations = generate_split(
            root, "train", args.images, seed=3, size=224, image_format="jpg"
        )
        samples = read_samples(annotations, root / "train").samples
        encoder = Encoder(EncoderConfig())
        vocab = Vocabulary.build((c for s in samples for c in s.captions), min_count=1)
        cache = DiskFeatureCache(root / "cache", encoder)
        cache.build([s.image_path for s in samples], progress=False)

        def pixels(path):
            return encoder.preprocess(load_image(path, min_size=224))

        runs = [("photos + frozen encoder", "lstm", pixels)]
        runs += [("feature cache", cell, cache.load) for cell in ("lstm", "gru", "rnn")]
        results = []
        for mode, cell, load in runs:
            torch.manual_seed(0)
            decoder = Decoder(DecoderConfig(len(vocab), encoder.encoder_dim, cell=cell))
            pairs = CaptionPairs(samples, vocab, load)
            results.append((mode, cell, train_tokens_per_second(pairs, encoder, decoder, args)))

    print(
        f"{args.images} scenes, batch {args.batch_size}, default-size decoder (512 units), "
        f"{torch.get_num_threads()} threads, {args.batches} timed batches per row\n"
    )
    print("| training input | decoder cell | tokens / s | vs photos |\n|---|---|---:|---:|")
    base = results[0][2]
    for mode, cell, rate in results:
        print(f"| {mode} | {cell} | {rate:,.0f} | {rate / base:.1f}x |")


if __name__ == "__main__":
    main()
