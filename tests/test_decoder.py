"""Decoder options that a toy task shows are needed: coordinates (where did it look?) and word
attention (look where the word just read points)."""

import pytest
import torch
import torch.nn.functional as F

from captioner.decoder import Decoder, DecoderConfig

START, END, LEFT, RIGHT, SMALL, LARGE = 1, 2, 4, 5, 6, 7
COLOURS = 4  # colour words are ids 8 to 11


def one_object_scenes(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The same object feature in one random cell of an empty 4 x 4 grid; the caption says
    which half of the grid it is in."""
    features = torch.zeros(count, 4, 4, 8)
    rows = torch.randint(0, 4, (count,), generator=generator)
    columns = torch.randint(0, 4, (count,), generator=generator)
    features[torch.arange(count), rows, columns] = 1.0
    words = torch.where(columns < 2, LEFT, RIGHT)
    captions = torch.stack([torch.full_like(words, START), words, torch.full_like(words, END)], 1)
    return features, captions


@pytest.mark.parametrize("coordinates", [False, True])
def test_coordinates_let_the_decoder_say_where_the_object_is(coordinates):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    config = DecoderConfig(6, 8, 8, 32, 16, dropout=0.0, cell="gru", coordinates=coordinates)
    decoder = Decoder(config)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-2)
    for _ in range(150):
        features, captions = one_object_scenes(64, generator)
        logits, _ = decoder(features, captions)
        loss = F.cross_entropy(logits.transpose(1, 2), captions[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    features, captions = one_object_scenes(400, generator)
    with torch.no_grad():
        logits, _ = decoder.eval()(features, captions)
    accuracy = (logits[:, 0].argmax(-1) == captions[:, 1]).float().mean().item()
    if coordinates:
        assert accuracy > 0.95
    else:  # every grid holds the same values in another order: left and right look the same
        assert accuracy < 0.65


def two_object_scenes(
    count: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A small and a large object of two different colours in random cells of a 4 x 4 grid
    (feature channels: colour one-hot, then small, large); the caption names one of them at
    random, "SIZE COLOUR". Also returns the named object's cell."""
    features = torch.zeros(count, 16, COLOURS + 2)
    index = torch.arange(count)
    cells = torch.rand(count, 16, generator=generator).argsort(1)[:, :2]  # two distinct cells
    colours = torch.rand(count, COLOURS, generator=generator).argsort(1)[:, :2]
    for size in (0, 1):
        features[index, cells[:, size], colours[:, size]] = 1.0
        features[index, cells[:, size], COLOURS + size] = 1.0
    named = torch.randint(0, 2, (count,), generator=generator)
    size_words = torch.where(named == 0, SMALL, LARGE)
    colour_words = 8 + colours[index, named]
    start, end = torch.full_like(named, START), torch.full_like(named, END)
    captions = torch.stack([start, size_words, colour_words, end], 1)
    return features.view(count, 4, 4, COLOURS + 2), captions, cells[index, named]


@pytest.mark.parametrize("word_attention", [False, True])
def test_word_attention_looks_at_the_object_the_last_word_picked(word_attention):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    config = DecoderConfig(
        8 + COLOURS, COLOURS + 2, 8, 32, 16, dropout=0.0, cell="gru", word_attention=word_attention
    )
    decoder = Decoder(config)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-2)
    for _ in range(200):
        features, captions, _ = two_object_scenes(64, generator)
        logits, _ = decoder(features, captions)
        loss = F.cross_entropy(logits.transpose(1, 2), captions[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    features, captions, named_cells = two_object_scenes(400, generator)
    with torch.no_grad():
        logits, alphas = decoder.eval()(features, captions)
    colour_right = (logits[:, 1].argmax(-1) == captions[:, 2]).float().mean().item()
    assert colour_right > 0.95  # a mix of both objects, unevenly weighted, also tells them apart
    pointing = (alphas[:, 1].argmax(-1) == named_cells).float().mean().item()
    if word_attention:
        assert pointing > 0.95
    else:  # where it looked was chosen before the size word was read: right half the time
        assert pointing < 0.65
