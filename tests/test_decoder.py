"""The decoder's coordinate channels: without them it cannot tell where it looked."""

import pytest
import torch
import torch.nn.functional as F

from captioner.decoder import Decoder, DecoderConfig

START, END, LEFT, RIGHT = 1, 2, 4, 5


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
