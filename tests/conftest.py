"""Shared fixtures: real photos from scikit-image and a tiny captioner trained on them."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

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

# Models loaded in tests export their ONNX graphs (the CPU's default backend) to the cache, and
# their subprocesses (the commands) read it too: one throwaway cache per test session, never
# the user's.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="captioner-test-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], True)
# The caption library (captioner.library.default_library_path) likewise: never the user's.
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="captioner-test-data-")
atexit.register(shutil.rmtree, os.environ["XDG_DATA_HOME"], True)

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


def save_photos(folder: Path, photos: dict[str, Image.Image], names: list[str]) -> Path:
    """A folder of the named photos as PNG files, as a person would open one in the app."""
    folder.mkdir()
    for name in names:
        photos[name].save(folder / f"{name}.png")
    return folder


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


GUI_WAIT_MS = 90_000  # two busy cores: a model load or a caption can take seconds


def show_main_window(
    qtbot, settings, model_dir: str, data_dir: str, paths=(), wait=True, library_path=None
):
    """The app's main window on `paths`, shown; with `wait`, once its model has loaded or
    failed to. Its caption library is `library_path`, else a new one in `data_dir`, so no
    test sees another's captions. Qt is imported here, so tests without the app load it not."""
    from gui.main_window import MainWindow

    window = MainWindow(
        settings,
        paths=[str(p) for p in paths],
        model_dir=model_dir,
        data_dir=data_dir,
        library_path=str(library_path or os.path.join(data_dir, "library.sqlite3")),
    )
    qtbot.addWidget(window)
    window.show()
    if wait:
        qtbot.waitUntil(
            lambda: bool(window.session.model_info or window.session.model_error),
            timeout=GUI_WAIT_MS,
        )
    return window


# ImageNet classes of the two nouns copy-model tests copy (Lite0's classifier knows them).
COPY_TEST_CLASSES = {
    "cat": [281, 282, 283, 284, 285],  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    "coffee cup": [504, 967, 968],  # coffee mug, espresso, cup
}


def tiny_copy_captioner(tiny_captioner: Captioner, nouns: list[str]) -> Captioner:
    """The tiny model's encoder with a fresh decoder that copies `nouns` (of COPY_TEST_CLASSES,
    in this order) from Lite0's ImageNet classifier, its copy gate biased to copy often."""
    torch.manual_seed(0)
    plurals = [f"{noun}s" for noun in nouns]
    words = tiny_captioner.vocab.itos[4:]
    vocab = Vocabulary(words + [w for w in nouns + plurals if w not in words])
    decoder = Decoder(DecoderConfig(len(vocab), 1280, 32, 64, 32, dropout=0.0, copy_nouns=2))
    class_to_noun = torch.zeros(1000, len(nouns))
    for column, noun in enumerate(nouns):
        class_to_noun[COPY_TEST_CLASSES[noun], column] = 1.0
    decoder.attach_noun_head(
        *tiny_captioner.encoder.imagenet_classifier(),
        class_to_noun,
        torch.tensor([vocab.stoi[w] for w in nouns]),
        torch.tensor([vocab.stoi[w] for w in plurals]),
    )
    with torch.no_grad():
        decoder.copy_gate.bias.fill_(4.0)  # copy often, so captions exercise the copy path
    return Captioner(tiny_captioner.encoder, decoder, vocab, name="copy-test")


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_captioner, tmp_path_factory):
    """A saved model directory, for code that loads models from disk (CLI, GUI)."""
    return tiny_captioner.save(tmp_path_factory.mktemp("models") / "tiny")
