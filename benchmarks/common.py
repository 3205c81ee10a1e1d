"""Shared by the benchmark scripts: the model to measure and a best-of-N timer."""

from __future__ import annotations

import time

import torch

from captioner import Captioner, CheckpointError
from captioner.decoder import Decoder, DecoderConfig
from captioner.encoder import Encoder, EncoderConfig
from captioner.vocab import Vocabulary


def load_model(path: str | None, backend: str = "torch") -> tuple[Captioner, str]:
    """The given model, else the shipped default, else a random stand-in of the same shape."""
    try:
        model = Captioner.load(path, device="cpu", backend=backend)
        return model, f"{model.name} ({path or 'embedded default'}), {model.backend}"
    except CheckpointError:
        if path:
            raise
    torch.manual_seed(0)
    vocab = Vocabulary(f"word{i}" for i in range(56))
    encoder = Encoder(EncoderConfig())
    decoder = Decoder(DecoderConfig(len(vocab), encoder.encoder_dim))
    with torch.no_grad():  # random weights would end at once; make <end> rare so captions run long
        decoder.output.bias[vocab.end_id] = -6.0
    stand_in = Captioner(
        encoder, decoder, vocab, name="random stand-in", device="cpu", backend=backend
    )
    return (
        stand_in,
        "random stand-in of the default architecture, <end> made rare (no default model)",
    )


def best_time(function, repeats: int = 3) -> float:
    """Seconds for the fastest of `repeats` calls: the least disturbed by other processes."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def sample_photos(count: int, size: tuple[int, int] = (640, 480)) -> list:
    """Real photos from scikit-image, cycled and resized to a common camera-like size."""
    import numpy as np
    from PIL import Image
    from skimage import data

    names = [
        "astronaut",
        "chelsea",
        "coffee",
        "rocket",
        "hubble_deep_field",
        "immunohistochemistry",
    ]
    base = [Image.fromarray(np.ascontiguousarray(getattr(data, n)())).convert("RGB") for n in names]
    return [base[i % len(base)].resize(size) for i in range(count)]
