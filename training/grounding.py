"""Attention grounding: does the decoder look at the object a word names?

For scenes data (each image lists its objects with shape, colour and a pixel box), every
generated word that is a shape name ("circle", or the plural "circles") or a colour name ("red")
is matched to the objects in the image with that shape or colour, and that word's attention map
is checked against their boxes:

- pointing hit: the grid cell holding the map's maximum overlaps one of the boxes;
- attention in box: the share of the map's mass in the cells that overlap any of the boxes;
- chance: the share of grid cells that overlap any of the boxes, i.e. what a map that points at
  a random cell would score, to compare the first two against.

A colour or shape word that matches several objects ("red" with two red objects) uses the union
of their boxes. A shape or colour word that matches no object in the image is a hallucination:
it is counted as ungrounded and scores nothing. Size words ("small", "large") and the rest of
the caption are not scored: a size names objects only together with its noun.

Geometry: the encoder squashes (resizes without cropping) the photo to a square and its feature
grid covers that square uniformly, so grid cell (i, j) of a (gh, gw) grid covers
x in [j W/gw, (j+1) W/gw) and y in [i H/gh, (i+1) H/gh) of the original W x H image. A box
[x, y, w, h] covers [x, x+w) x [y, y+h); a cell overlaps it when the intersection has positive
area. The first maximum wins when a map has several equal maxima.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from training.scenes import COLORS, SHAPE_PLURALS, SHAPES

# word -> (object attribute, value): "circles" -> ("shape", "circle"), "red" -> ("color", "red")
OBJECT_WORDS: dict[str, tuple[str, str]] = {
    **{shape: ("shape", shape) for shape in SHAPES},
    **{plural: ("shape", shape) for shape, plural in SHAPE_PLURALS.items()},
    **{color: ("color", color) for color in COLORS},
}


@dataclass(frozen=True)
class GroundedWord:
    """One generated word that names objects present in the image, and how its map scored."""

    position: int  # index into the caption's tokens
    word: str
    objects: tuple[int, ...]  # indices into the image's objects that the word names
    pointing_hit: bool
    attention_in_box: float
    chance: float


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
    objects: [{"shape", "color", "bbox": [x, y, w, h]}, ...] in pixels of the original image;
    image_size: (width, height) of the original image.
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
    for position, token in enumerate(tokens):
        word = token.lower()
        if word not in OBJECT_WORDS:
            continue
        attribute, value = OBJECT_WORDS[word]
        named = tuple(i for i, obj in enumerate(objects) if obj[attribute] == value)
        if not named:
            result.ungrounded.append(word)
            continue
        mask = cells_overlapping([objects[i]["bbox"] for i in named], width, height, grid_h, grid_w)
        attention = alphas[position]  # (gh, gw)
        peak = np.unravel_index(np.argmax(attention), attention.shape)
        result.grounded.append(
            GroundedWord(
                position=position,
                word=word,
                objects=named,
                pointing_hit=bool(mask[peak]),
                attention_in_box=float(attention[mask].sum() / attention.sum()),
                chance=float(mask.mean()),
            )
        )
    return result


def grounding_scores(captions: Iterable[CaptionGrounding]) -> dict[str, float | int | None]:
    """Means over every grounded word of every caption (not per caption first), plus counts.

    Keys: pointing_accuracy, attention_in_box, pointing_chance (None when no word was grounded),
    grounded_words, ungrounded_words.
    """
    words = []
    ungrounded = 0
    for caption in captions:
        words += caption.grounded
        ungrounded += len(caption.ungrounded)

    def mean(values: list[float]) -> float | None:
        return float(np.mean(values)) if values else None

    return {
        "pointing_accuracy": mean([float(word.pointing_hit) for word in words]),
        "attention_in_box": mean([word.attention_in_box for word in words]),
        "pointing_chance": mean([word.chance for word in words]),
        "grounded_words": len(words),
        "ungrounded_words": ungrounded,
    }


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
