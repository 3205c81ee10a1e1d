"""Heatmaps: the overlay lights up where the map has its mass; the grid has one panel a word."""

import numpy as np
import pytest
from PIL import Image

from captioner.photos.heatmap import attention_grid, overlay, upsample


def corner_map() -> np.ndarray:
    alpha = np.full((7, 7), 0.1 / 48)
    alpha[0, 0] = 0.9  # the top-left cell holds most of the attention
    return alpha


def test_overlay_changes_pixels_most_where_attention_is():
    image = Image.new("RGB", (280, 210), (120, 120, 120))
    blended = np.asarray(overlay(image, corner_map(), opacity=0.7), dtype=float)
    change = np.abs(blended - 120).sum(-1)
    assert change[:20, :20].mean() > 3 * change[-60:, -60:].mean()
    assert blended.shape == (210, 280, 3)


def test_zero_opacity_leaves_the_photo_unchanged():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 60, 3), dtype=np.uint8))
    assert np.array_equal(np.asarray(overlay(image, corner_map(), opacity=0.0)), np.asarray(image))


def test_upsampling_is_smooth_and_scaled_to_one():
    smooth = upsample(corner_map(), (140, 140))
    assert smooth.shape == (140, 140)
    assert smooth.max() == pytest.approx(1.0, abs=0.05) and smooth.min() >= 0
    row = smooth[5]
    assert np.all(np.diff(row[10:60]) <= 0.02)  # falls off, bicubic ripples aside
    assert len(np.unique(row.round(3))) > 20


def test_grid_has_the_photo_and_one_panel_per_word():
    image = Image.new("RGB", (300, 200), "white")
    alphas = np.stack([corner_map()] * 6)
    grid = attention_grid(image, ["a", "b", "c", "d", "e", "f"], alphas, columns=4, cell_size=100)
    label = grid.height // 2 - 100
    assert grid.size == (400, 2 * (100 + label))
    with pytest.raises(ValueError, match="6 words but 5 attention maps"):
        attention_grid(image, list("abcdef"), alphas[:5])
