"""Gumbel-max sampling: argmax(scores + Gumbel noise) is a draw from softmax(scores).

Drawing words this way, rather than with torch.multinomial, keeps the randomness in noise that
can be seeded and laid out on purpose: consensus reranking draws an image's noise from its own
generator (`ImageNoise`), so its samples never depend on the other images in the batch, and
self-critical training draws a whole global batch's noise on every process
(training/scst.py's SharedNoise), so 1 or W processes draw the same captions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def gumbel_noise(uniform: torch.Tensor) -> torch.Tensor:
    """Gumbel(0, 1) noise from uniform draws in [0, 1), in the same shape."""
    # torch.rand can return exactly 0, whose log of log is not a number.
    return -torch.log(-torch.log(uniform.clamp_min(torch.finfo(uniform.dtype).tiny)))


class ImageNoise:
    """Gumbel noise for `rows_per_image` rows of each image, from one CPU generator per image,
    all seeded alike: an image's draws are the same whichever images share its batch."""

    def __init__(self, images: int, rows_per_image: int, seed: int) -> None:
        self.generators = [torch.Generator().manual_seed(seed) for _ in range(images)]
        self.rows_per_image = rows_per_image

    def draw(self, images: Sequence[int], vocab_size: int) -> torch.Tensor:
        """(len(images) * rows_per_image, vocab_size) noise for the rows of `images` (indices
        into the batch), image by image; the other images' generators do not move."""
        shape = (self.rows_per_image, vocab_size)
        return gumbel_noise(
            torch.cat([torch.rand(shape, generator=self.generators[i]) for i in images])
        )
