"""Shared fixtures: real photos from scikit-image and a tiny captioner trained on them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage import data

from captioner import Captioner
from captioner.decoder import Decoder, DecoderConfig
from captioner.encoder import Encoder, EncoderConfig
from captioner.vocab import Vocabulary

PHOTO_CAPTIONS = {
    "astronaut": "a woman in a white space suit",
    "chelsea": "a cat looking at the camera",
    "coffee": "a cup of coffee on a saucer",
    "rocket": "a rocket on the launch pad",
    "hubble_deep_field": "many galaxies in a dark sky",
    "motorcycle": "a red motorcycle in a garage",
}


def photo(name: str) -> Image.Image:
    pixels = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    return Image.fromarray(np.ascontiguousarray(pixels)).convert("RGB")


@pytest.fixture(scope="session")
def photos() -> dict[str, Image.Image]:
    return {name: photo(name) for name in PHOTO_CAPTIONS}


def train_tiny_captioner(
    images: list[Image.Image], captions: list[str], steps: int = 300
) -> Captioner:
    """Overfit a small decoder on frozen Lite0 features: the same few-line loop as a notebook."""
    torch.manual_seed(0)
    encoder = Encoder(EncoderConfig(image_size=224))
    vocab = Vocabulary.build(captions, min_count=1)
    config = DecoderConfig(
        len(vocab),
        encoder.encoder_dim,
        embed_dim=64,
        decoder_dim=128,
        attention_dim=64,
        dropout=0.0,
    )
    decoder = Decoder(config)
    with torch.no_grad():
        features = encoder(torch.stack([encoder.preprocess(image) for image in images]))
    ids = [vocab.encode(c) for c in captions]
    targets = torch.zeros(len(ids), max(map(len, ids)), dtype=torch.long)
    for row, caption_ids in enumerate(ids):
        targets[row, : len(caption_ids)] = torch.tensor(caption_ids)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=3e-3)
    decoder.train()
    for _ in range(steps):
        logits, _ = decoder(features, targets)
        loss = F.cross_entropy(logits.transpose(1, 2), targets[:, 1:], ignore_index=vocab.pad_id)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return Captioner(encoder, decoder, vocab, name="tiny-test-model", device="cpu")


@pytest.fixture(scope="session")
def tiny_captioner(photos) -> Captioner:
    return train_tiny_captioner(list(photos.values()), list(PHOTO_CAPTIONS.values()))


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_captioner, tmp_path_factory):
    """A saved model directory, for code that loads models from disk (CLI, GUI)."""
    return tiny_captioner.save(tmp_path_factory.mktemp("models") / "tiny")
