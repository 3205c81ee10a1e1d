"""Taught words: nouns a person names on a few photos, copied at once with no training run.

A copy model names what its ImageNet classifier sees (copy_head.py); a thing the classifier has
no class for gets the nearest class's noun ("a waffle iron"). A taught word is a second noun
source beside it, a prototype classifier (as in Snell et al. 2017's prototypical networks,
without their training): each example is one vector, the mean of the encoder's raw features
over the cells that show the thing, and a grid cell shows the word with the probability

    p(cell, word) = sigmoid((max_k cos(cell, example_k) - threshold_word) / SHARPNESS)

over the word's examples k. Each word's threshold is calibrated from its own examples (how alike
they are to each other) and from vectors that are not that word (the other words' examples and
the background of every example's photo), so an unrelated photo stays below it. The copy head
adds these words to the nouns it can copy (CopyHead.prepare), so a taught word is said the way
the ImageNet nouns are: from the cells the decoder looks at, with their grammar (rules.py).

Nothing here is saved with a model: taught words belong to the caption library and apply to
any copy model whose encoder gives the features they were taught from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from captioner.library.records import TaughtRecord

# Calibration, in cosine similarity of raw Lite0 features (docs/guides/teaching.md has the
# measurements): the same thing in other photos scores 0.65-0.98 against an example, the cells
# of unrelated photos at most about 0.4 (0.83 only for the same cat cropped differently).
# A threshold is FLOOR, lowered towards the examples' own agreement when they are spread (a
# thing seen from several sides) but always MARGIN above the most similar negative.
FLOOR = 0.55
MARGIN = 0.05
# The width of the sigmoid around the threshold: a cell 0.1 above it is p = 0.97.
SHARPNESS = 0.03
# Examples whose cells overlap the box, or the attention, less than this are not the thing.
MIN_WEIGHT = 0.5
MAX_WORD_CHARS = 40  # "a word of 200 characters" is no noun


def check_word(word: str) -> str:
    """The word as it is taught: stripped and lower-cased, as captions are tokenized. A noun
    of one or two words ("teddy bear"); ValueError for anything else."""
    cleaned = " ".join(word.split()).lower()
    if not cleaned:
        raise ValueError("an empty word cannot be taught")
    if len(cleaned) > MAX_WORD_CHARS:
        raise ValueError(
            f"{cleaned[:20]!r}... has {len(cleaned)} characters: a taught word is a noun of at "
            f"most {MAX_WORD_CHARS}"
        )
    parts = cleaned.split(" ")
    if len(parts) > 2:
        raise ValueError(f"{cleaned!r}: a taught word is one noun, of one or two words")
    if not all(part.replace("-", "").replace("'", "").isalnum() for part in parts):
        raise ValueError(f"{cleaned!r}: a taught word holds only letters, digits, - and '")
    return cleaned


def box_weights(grid_shape: tuple[int, int], box: Sequence[float]) -> torch.Tensor:
    """(grid_h, grid_w) share of each cell that a box covers. box: (left, top, right, bottom)
    as fractions of the photo's width and height (the photo is squashed onto the grid, so a
    cell is an even share of either axis)."""
    left, top, right, bottom = (float(v) for v in box)
    if not (0 <= left < right <= 1 and 0 <= top < bottom <= 1):
        raise ValueError(f"box {tuple(box)}: left < right and top < bottom, within 0..1")
    grid_h, grid_w = grid_shape

    def overlap(low: float, high: float, cells: int) -> torch.Tensor:
        edges = torch.arange(cells + 1, dtype=torch.float32) / cells
        return (edges[1:].clamp(max=high) - edges[:-1].clamp(min=low)).clamp(min=0) * cells

    return overlap(top, bottom, grid_h)[:, None] * overlap(left, right, grid_w)[None, :]


def example_vectors(
    features: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One photo's (grid_h, grid_w, encoder_dim) raw features and (grid_h, grid_w) weights of
    the cells that show the thing -> the example (encoder_dim,), the weighted mean of those
    cells, and the background (encoder_dim,), the mean of the cells that do not (None when the
    thing fills the photo). Cells weighted below MIN_WEIGHT of the largest weight are
    background."""
    cells = features.flatten(0, 1).float()  # (num_pixels, encoder_dim)
    weights = weights.flatten().float().to(cells.device)  # (num_pixels,)
    shown = weights >= MIN_WEIGHT * weights.max()
    example = (weights * shown) @ cells / (weights * shown).sum()
    background = cells[~shown].mean(0) if bool((~shown).any()) else None
    return example, background


def calibrate(examples: torch.Tensor, negatives: torch.Tensor) -> float:
    """The threshold of one word from its (n, dim) examples and (m, dim) vectors that are not
    it: FLOOR, or lower when each example is less like the others (the leave-one-out
    similarity, less MARGIN), but never within MARGIN of the most similar negative: an
    unrelated photo must not reach it, at the price of a word too like others never said."""
    examples = F.normalize(examples.float(), dim=-1)
    threshold = FLOOR
    if len(examples) > 1:
        alike = examples @ examples.T  # (n, n)
        alike.fill_diagonal_(-1.0)
        # Each example's most similar other example: what a new photo of it would score.
        threshold = min(threshold, float(alike.max(1).values.min()) - MARGIN)
    if len(negatives):
        negative = (examples @ F.normalize(negatives.float(), dim=-1).T).max()
        threshold = max(threshold, float(negative) + MARGIN)
    return threshold


@dataclass(frozen=True)
class TaughtExample:
    """One photo's example of a taught word, as the library keeps it."""

    word: str
    vector: torch.Tensor  # (encoder_dim,) the mean raw features of the thing's cells
    background: torch.Tensor | None  # (encoder_dim,) the other cells' mean; None: none
    source: str | None = None  # the photo's path, when it was taught from a file
    box: tuple[float, float, float, float] | None = None  # (left, top, right, bottom), 0..1


@dataclass(frozen=True)
class TaughtNouns:
    """The taught words as the copy head reads them, on the decoder's device.

    Word ids at or above the model's vocab_size are the taught words' own; a taught word the
    model already has (an ImageNet noun, or a word of its vocabulary) keeps its id.
    """

    words: tuple[str, ...]
    prototypes: torch.Tensor  # (examples, encoder_dim), unit vectors
    example_word: torch.Tensor  # (examples,) the word each example teaches
    thresholds: torch.Tensor  # (words,)
    singular_ids: torch.Tensor  # (words,)
    plural_ids: torch.Tensor  # (words,)
    # Input embeddings of the ids from vocab_size on: the words the model did not have.
    embeddings: torch.Tensor  # (word_count - vocab_size, embed_dim)
    word_count: int  # vocab_size plus the new words (and their plurals)

    def cell_probs(self, cells: torch.Tensor) -> torch.Tensor:
        """(batch, num_pixels, encoder_dim) raw features -> (batch, num_pixels, words): the
        probability that each cell shows each word."""
        similarity = F.normalize(cells.float(), dim=-1) @ self.prototypes.T  # (b, P, examples)
        per_word = similarity.new_full((*similarity.shape[:2], len(self.words)), -1.0)
        index = self.example_word.expand_as(similarity)
        per_word = per_word.scatter_reduce(-1, index, similarity, "amax")  # (b, P, words)
        return torch.sigmoid((per_word - self.thresholds) / SHARPNESS)

    def embed(self, embedding: torch.nn.Embedding, words: torch.Tensor) -> torch.Tensor:
        """(rows,) word ids, taught ones included -> (rows, embed_dim) input embeddings."""
        vocab_size = embedding.num_embeddings
        new = words >= vocab_size
        base = embedding(words.masked_fill(new, 0))  # (rows, embed_dim)
        if not bool(new.any()):
            return base
        extra = self.embeddings[(words - vocab_size).clamp(min=0)]  # (rows, embed_dim)
        return torch.where(new.unsqueeze(-1), extra, base)


def build_taught(
    examples: dict[str, torch.Tensor],
    backgrounds: dict[str, torch.Tensor],
    known_words: dict[str, int],
    vocab_size: int,
    noun_embeddings: torch.Tensor,
) -> tuple[TaughtNouns, list[str]]:
    """The copy head's view of taught words, and the words they add to the vocabulary (ids
    vocab_size on, in order).

    examples: word -> (n, encoder_dim) example vectors; backgrounds: word -> (m, encoder_dim)
    the other cells of its example photos. Those are negatives of every other word, but not of
    their own: the cells around the thing's own often show more of it. known_words: the
    model's word -> id; noun_embeddings: (nouns, embed_dim) input embeddings of the model's
    copyable nouns, whose mean a new word reads as (after a taught noun the decoder reads a
    word it has never read: the mean of the nouns is the nearest thing it knows).
    """
    from captioner.nouns import pluralize  # light, but only needed here

    words = tuple(examples)
    new_words: list[str] = []

    def word_id(word: str) -> int:
        if word in known_words:
            return known_words[word]
        if word not in new_words:
            new_words.append(word)
        return vocab_size + new_words.index(word)

    singular = [word_id(word) for word in words]
    plural = [word_id(pluralize(word)) for word in words]
    device = noun_embeddings.device
    vectors = [examples[word].float().to(device) for word in words]
    dim = vectors[0].shape[1]
    around = [backgrounds.get(word, torch.empty(0, dim)).float().to(device) for word in words]
    thresholds = []
    for i in range(len(words)):
        others = [
            v for j, pair in enumerate(zip(vectors, around, strict=True)) if j != i for v in pair
        ]
        negatives = torch.cat([torch.empty(0, dim, device=device), *others])  # (m, encoder_dim)
        thresholds.append(calibrate(vectors[i], negatives))
    prototypes = F.normalize(torch.cat(vectors), dim=-1)  # (examples, encoder_dim)
    example_word = torch.cat(
        [torch.full((len(v),), i, dtype=torch.long) for i, v in enumerate(vectors)]
    ).to(device)
    mean = noun_embeddings.float().mean(0)  # (embed_dim,)
    taught = TaughtNouns(
        words=words,
        prototypes=prototypes,
        example_word=example_word,
        thresholds=torch.tensor(thresholds, device=device),
        singular_ids=torch.tensor(singular, dtype=torch.long, device=device),
        plural_ids=torch.tensor(plural, dtype=torch.long, device=device),
        embeddings=mean.expand(len(new_words), -1).to(noun_embeddings.dtype).clone(),
        word_count=vocab_size + len(new_words),
    )
    return taught, new_words


def taught_digest(taught: Mapping[str, Sequence[TaughtExample]]) -> str:
    """A SHA-256 (hex) of taught words and their examples' vectors, "" when none are taught: the
    caption library keys a model's captions by it beside the model's identity, so captions
    written before a word was taught (or forgotten) are not taken for the model's captions now."""
    if not taught:
        return ""
    digest = hashlib.sha256()
    for word in sorted(taught):
        digest.update(f"{word}\0{len(taught[word])}\0".encode())
        for example in taught[word]:
            for vector in (example.vector, example.background):
                if vector is not None:
                    digest.update(vector.detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()


def to_record(example: TaughtExample, encoder: str) -> TaughtRecord:
    """An example as the library stores it: float16 bytes (2.5 kB for Lite0's 1,280 features;
    the cosine it gives moves by under 1e-3)."""

    def packed(vector: torch.Tensor | None) -> bytes | None:
        if vector is None:
            return None
        return vector.detach().cpu().numpy().astype("<f2").tobytes()

    return TaughtRecord(
        word=example.word,
        encoder=encoder,
        vector=packed(example.vector),
        background=packed(example.background),
        source=example.source,
        box=example.box,
    )


def from_record(record: TaughtRecord) -> TaughtExample:
    """The library's example as the model reads it (float32)."""

    def unpacked(data: bytes | None) -> torch.Tensor | None:
        if data is None:
            return None
        return torch.from_numpy(np.frombuffer(data, dtype="<f2").astype(np.float32))

    return TaughtExample(
        record.word, unpacked(record.vector), unpacked(record.background), record.source, record.box
    )
