"""Attention grounding: does the decoder look at the object a word names?

For generated data whose images list their objects with a pixel box (training/scenes/: the
shapes scenes' {"shape", "color", "bbox"}; the composites' {"noun", "color" or null, "bbox"}),
every generated object word is matched to the objects in the image that it names, and that
word's attention map is checked against their boxes:

- pointing hit: the grid cell holding the map's maximum overlaps one of the boxes;
- attention in box: the share of the map's mass in the cells that overlap any of the boxes;
- chance: the share of grid cells that overlap any of the boxes, i.e. what a map that points at
  a random cell would score, to compare the first two against.

Object words are a fixed list, the same for every split and model (OBJECT_WORDS): the shape
names and their plurals ("circles" names circles), the colour words of both generators (the
scenes' COLORS and the stamp list's colours), and every noun and plural of the noun table
(captioner/nouns.py), which the composites' stamps are named with: a copy model can say any,
so a table noun that names nothing in the image is a hallucination even when no image of the
split shows one. A word may name several things ("orange": the colour and the fruit); it names
the objects that match any of them. A two-word noun is one word for a copy model ("teddy bear")
and two tokens for a plain model ("teddy", "bear"): the tokens are joined as the vocabulary joins
phrases (the longest match wins, so "bear" inside "teddy bear" is not a bear) and scored once,
with the mean of their maps, at the position of the first.

A word that names several objects ("red" with two red objects, "teddy bears") uses the union of
their boxes. An object word that names no object in the image is a hallucination: it is counted
as ungrounded and scores nothing. Size words ("small", "large") and the rest of the caption are
not scored: a size names objects only together with its noun.

Geometry: the encoder squashes (resizes without cropping) the photo to a square and its feature
grid covers that square uniformly, so grid cell (i, j) of a (gh, gw) grid covers
x in [j W/gw, (j+1) W/gw) and y in [i H/gh, (i+1) H/gh) of the original W x H image. A box
[x, y, w, h] covers [x, x+w) x [y, y+h); a cell overlaps it when the intersection has positive
area. The first maximum wins when a map has several equal maxima.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from captioner.nouns import NounTable
from training.scenes import COLORS, SHAPE_PLURALS, SHAPES
from training.scenes.composites import read_stamp_list


def _object_words() -> dict[str, tuple[tuple[str, str], ...]]:
    """The shapes' names and plurals, both generators' colour words, and the noun table's nouns
    and plurals, each with what it names (see OBJECT_WORDS)."""
    meanings: dict[str, dict[tuple[str, str], None]] = {}  # dicts: in order, without repeats

    def add(word: str, attribute: str, value: str) -> None:
        meanings.setdefault(word, {})[(attribute, value)] = None

    for shape in SHAPES:
        add(shape, "shape", shape)
        add(SHAPE_PLURALS[shape], "shape", shape)
    for colour in [*COLORS, *(stamp.color for stamp in read_stamp_list() if stamp.color)]:
        add(colour, "color", colour)
    table = NounTable.load()
    for noun, plural in zip(table.nouns, table.plurals, strict=True):
        add(noun, "noun", noun)
        add(plural, "noun", noun)
    return {word: tuple(word_meanings) for word, word_meanings in meanings.items()}


# word -> the (object attribute, value) pairs it names: "circles" -> (("shape", "circle"),),
# "teddy bears" -> (("noun", "teddy bear"),), "orange" -> (("color", "orange"), ("noun", "orange"))
OBJECT_WORDS: dict[str, tuple[tuple[str, str], ...]] = _object_words()


def _phrases(words: Iterable[str]) -> dict[str, list[tuple[str, ...]]]:
    """First token -> the words of several tokens that start with it, longest first."""
    phrases: dict[str, list[tuple[str, ...]]] = {}
    for word in words:
        if " " in word:
            parts = tuple(word.split(" "))
            phrases.setdefault(parts[0], []).append(parts)
    for starting in phrases.values():
        starting.sort(key=len, reverse=True)  # the longest match wins, as in Vocabulary
    return phrases


_OBJECT_PHRASES = _phrases(OBJECT_WORDS)


@dataclass(frozen=True)
class GroundedWord:
    """One generated word that names objects present in the image, and how its map scored."""

    position: int  # index into the caption's tokens (the first, for a noun of several tokens)
    word: str
    objects: tuple[int, ...]  # indices into the image's objects that the word names
    pointing_hit: bool
    attention_in_box: float
    chance: float
    # A noun or plural of the noun table: a copy model says these only by copying them.
    noun: bool = False


@dataclass
class CaptionGrounding:
    """The scored words of one caption, and its object words that name nothing in the image."""

    grounded: list[GroundedWord] = field(default_factory=list)
    ungrounded: list[str] = field(default_factory=list)


def ground_caption(
    tokens: Sequence[str],
    alphas: np.ndarray,
    objects: Sequence[dict],
    image_size: tuple[int, int],
) -> CaptionGrounding:
    """Score the attention maps of a caption's object words against the objects' boxes.

    tokens: the generated words; alphas: (len(tokens), gh, gw), one attention map per word;
    objects: [{"shape" or "noun", "color", "bbox": [x, y, w, h]}, ...] in pixels of the
    original image; image_size: (width, height) of the original image.
    """
    alphas = np.asarray(alphas, dtype=np.float64)
    if alphas.ndim != 3 or alphas.shape[0] != len(tokens):
        raise ValueError(
            f"alphas must have shape (len(tokens), gh, gw) = ({len(tokens)}, gh, gw), "
            f"got {alphas.shape}"
        )
    width, height = image_size
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width} x {height}")
    grid_h, grid_w = alphas.shape[1:]
    result = CaptionGrounding()
    for start, end, word in _object_word_spans(tokens):
        meanings = OBJECT_WORDS[word]
        named = tuple(
            i
            for i, obj in enumerate(objects)
            if any(obj.get(attribute) == value for attribute, value in meanings)
        )
        if not named:
            result.ungrounded.append(word)
            continue
        mask = cells_overlapping([objects[i]["bbox"] for i in named], width, height, grid_h, grid_w)
        attention = alphas[start:end].mean(axis=0)  # (gh, gw); one token's map as it is
        peak = np.unravel_index(np.argmax(attention), attention.shape)
        result.grounded.append(
            GroundedWord(
                position=start,
                word=word,
                objects=named,
                pointing_hit=bool(mask[peak]),
                attention_in_box=float(attention[mask].sum() / attention.sum()),
                chance=float(mask.mean()),
                noun=any(attribute == "noun" for attribute, _ in meanings),
            )
        )
    return result


def _object_word_spans(tokens: Sequence[str]) -> Iterator[tuple[int, int, str]]:
    """(start, end, word) of each object word, a noun's tokens ("teddy", "bear") joined."""
    words = [token.lower() for token in tokens]
    start = 0
    while start < len(words):
        end = start + 1
        for parts in _OBJECT_PHRASES.get(words[start], ()):
            if tuple(words[start : start + len(parts)]) == parts:
                end = start + len(parts)
                break
        word = " ".join(words[start:end])
        if word in OBJECT_WORDS:
            yield start, end, word
        start = end


def grounding_scores(
    captions: Iterable[CaptionGrounding], *, copied_nouns: bool = False
) -> dict[str, float | int | None]:
    """Means over every grounded word of every caption (not per caption first), plus counts.

    Keys: pointing_accuracy, attention_in_box, pointing_chance (None when no word was grounded),
    grounded_words, ungrounded_words. With copied_nouns (the captions are a copy model's, whose
    table nouns are all copied), also pointing_nouns and pointing_chance_nouns over the grounded
    table nouns alone (None when none was grounded), and their count grounded_nouns.
    """
    words = []
    ungrounded = 0
    for caption in captions:
        words += caption.grounded
        ungrounded += len(caption.ungrounded)

    def mean(values: list[float]) -> float | None:
        return float(np.mean(values)) if values else None

    scores: dict[str, float | int | None] = {
        "pointing_accuracy": mean([float(word.pointing_hit) for word in words]),
        "attention_in_box": mean([word.attention_in_box for word in words]),
        "pointing_chance": mean([word.chance for word in words]),
        "grounded_words": len(words),
        "ungrounded_words": ungrounded,
    }
    if copied_nouns:
        nouns = [word for word in words if word.noun]
        scores["pointing_nouns"] = mean([float(word.pointing_hit) for word in nouns])
        scores["pointing_chance_nouns"] = mean([word.chance for word in nouns])
        scores["grounded_nouns"] = len(nouns)
    return scores


def cells_overlapping(
    boxes: list[Sequence[float]], width: int, height: int, grid_h: int, grid_w: int
) -> np.ndarray:
    """(grid_h, grid_w) bool: the cells whose area intersects any box with positive area."""
    # Cell edges are j * width / grid_w; comparisons are multiplied through by grid_w (grid_h)
    # so integer boxes on a cell edge compare exactly instead of through a rounded division.
    columns = np.arange(grid_w)
    rows = np.arange(grid_h)
    mask = np.zeros((grid_h, grid_w), dtype=bool)
    for x, y, w, h in boxes:
        if w <= 0 or h <= 0:
            continue  # an empty box overlaps nothing with positive area
        in_x = (columns * width < (x + w) * grid_w) & (x * grid_w < (columns + 1) * width)
        in_y = (rows * height < (y + h) * grid_h) & (y * grid_h < (rows + 1) * height)
        mask |= in_y[:, None] & in_x[None, :]
    return mask
