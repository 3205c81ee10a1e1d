"""Attention grounding on hand-made attention maps, checked against values worked out by hand."""

import numpy as np
import pytest

from training.grounding import OBJECT_WORDS, CaptionGrounding, ground_caption, grounding_scores
from training.scenes import COLORS, SHAPE_PLURALS

RED_CIRCLE = {"shape": "circle", "color": "red", "size": "small", "bbox": [30, 30, 15, 15]}
BLUE_SQUARE = {"shape": "square", "color": "blue", "size": "large", "bbox": [55, 55, 40, 40]}
RED_STAR = {"shape": "star", "color": "red", "size": "small", "bbox": [80, 5, 10, 10]}
# 100 x 100 image, 4 x 4 grid: cells are 25 px, so the red circle lies inside cell (1, 1) only,
# the blue square covers cells (2..3, 2..3) and the red star cell (0, 3).
SIZE = (100, 100)


def peaked(cell: tuple[int, int], peak: float = 0.5, grid: tuple[int, int] = (4, 4)) -> np.ndarray:
    """A map with `peak` at `cell` and the rest spread evenly over the other cells."""
    others = grid[0] * grid[1] - 1
    alpha = np.full(grid, (1 - peak) / others)
    alpha[cell] = peak
    return alpha


def test_map_peaked_inside_the_box_points_at_it():
    result = ground_caption(
        ["a", "red", "circle"],
        np.stack([peaked((0, 0)), *[peaked((1, 1))] * 2]),
        [RED_CIRCLE],
        SIZE,
    )
    assert [word.word for word in result.grounded] == ["red", "circle"]
    for word in result.grounded:
        assert word.objects == (0,)
        assert word.pointing_hit is True
        assert word.attention_in_box == pytest.approx(0.5)  # the box covers the peak cell only
        assert word.chance == pytest.approx(1 / 16)
    assert result.ungrounded == []


def test_map_peaked_outside_the_box_misses():
    result = ground_caption(["square"], peaked((0, 0), peak=0.25)[None], [BLUE_SQUARE], SIZE)
    (word,) = result.grounded
    assert word.pointing_hit is False
    # the square's 4 cells hold none of the peak: 4 of the 15 others, each 0.75 / 15
    assert word.attention_in_box == pytest.approx(4 * 0.75 / 15)
    assert word.chance == pytest.approx(4 / 16)


def test_cell_geometry_uses_the_original_width_and_height():
    # A 200 x 100 photo squashed to a square: a 4 x 2 grid (gh=2, gw=4) has 50 x 50 px cells.
    obj = {"shape": "cross", "color": "green", "bbox": [120, 10, 20, 20]}  # inside cell (0, 2)
    alpha = np.zeros((2, 4))
    alpha[0, 2] = 1.0
    (word,) = ground_caption(["cross"], alpha[None], [obj], (200, 100)).grounded
    assert word.pointing_hit is True
    assert word.attention_in_box == pytest.approx(1.0)
    assert word.chance == pytest.approx(1 / 8)


@pytest.mark.parametrize(
    ("bbox", "cells"),
    [
        ([0, 0, 25, 25], 1),  # ends exactly on a cell edge: the next cells only touch it
        ([0, 0, 26, 25], 2),  # one pixel into column 1
        ([20, 45, 40, 10], 6),  # x 20..60 -> columns 0-2, y 45..55 -> rows 1-2
        ([0, 0, 100, 100], 16),
    ],
)
def test_chance_is_the_share_of_cells_overlapping_the_box(bbox, cells):
    obj = {"shape": "diamond", "color": "yellow", "bbox": bbox}
    (word,) = ground_caption(["diamond"], peaked((3, 3))[None], [obj], SIZE).grounded
    assert word.chance == pytest.approx(cells / 16)


def test_colour_word_uses_the_union_of_the_boxes_it_names():
    objects = [RED_CIRCLE, BLUE_SQUARE, RED_STAR]
    (word,) = ground_caption(["red"], peaked((0, 3))[None], objects, SIZE).grounded
    assert word.objects == (0, 2)
    assert word.pointing_hit is True  # the peak is in the star's cell, not the circle's
    assert word.attention_in_box == pytest.approx(0.5 + 0.5 / 15)  # peak + the circle's cell
    assert word.chance == pytest.approx(2 / 16)


def test_plural_names_the_shape_and_words_are_matched_without_case():
    objects = [RED_CIRCLE, {**RED_CIRCLE, "bbox": [5, 5, 10, 10]}]
    (word,) = ground_caption(["Circles"], peaked((1, 1))[None], objects, SIZE).grounded
    assert word.word == "circles"
    assert word.objects == (0, 1)
    assert word.chance == pytest.approx(2 / 16)


def test_object_words_absent_from_the_image_are_ungrounded_and_other_words_ignored():
    tokens = ["a", "small", "green", "triangle", "left", "of", "a", "blue", "square"]
    alphas = np.stack([peaked((2, 2))] * len(tokens))
    result = ground_caption(tokens, alphas, [BLUE_SQUARE], SIZE)
    assert [(word.position, word.word) for word in result.grounded] == [(7, "blue"), (8, "square")]
    assert result.ungrounded == ["green", "triangle"]


def test_scores_average_over_all_grounded_words_and_count_the_rest():
    hit = ground_caption(["red"], peaked((1, 1))[None], [RED_CIRCLE], SIZE)
    miss_and_hallucination = ground_caption(
        ["square", "purple"], np.stack([peaked((0, 0), 0.25), peaked((0, 0))]), [BLUE_SQUARE], SIZE
    )
    scores = grounding_scores([hit, miss_and_hallucination])
    assert scores["grounded_words"] == 2
    assert scores["ungrounded_words"] == 1
    assert scores["pointing_accuracy"] == pytest.approx(0.5)
    assert scores["attention_in_box"] == pytest.approx((0.5 + 4 * 0.75 / 15) / 2)
    assert scores["pointing_chance"] == pytest.approx((1 / 16 + 4 / 16) / 2)


def test_scores_without_grounded_words_are_none():
    scores = grounding_scores([CaptionGrounding(ungrounded=["red"]), CaptionGrounding()])
    assert scores == {
        "pointing_accuracy": None,
        "attention_in_box": None,
        "pointing_chance": None,
        "grounded_words": 0,
        "ungrounded_words": 1,
    }


def test_alphas_must_have_one_map_per_token():
    with pytest.raises(ValueError, match="len\\(tokens\\)"):
        ground_caption(["red", "circle"], peaked((1, 1))[None], [RED_CIRCLE], SIZE)


def test_scene_words_name_the_shapes_and_colours_they_did():
    for shape, plural in SHAPE_PLURALS.items():
        assert OBJECT_WORDS[shape] == OBJECT_WORDS[plural] == (("shape", shape),)
    for colour in COLORS:
        assert ("color", colour) in OBJECT_WORDS[colour]
    # the fruit too, which a shapes object (no "noun") never is
    assert OBJECT_WORDS["orange"] == (("color", "orange"), ("noun", "orange"))
