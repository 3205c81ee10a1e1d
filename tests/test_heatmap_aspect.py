"""Heatmap figures keep the photo's aspect ratio, and say which map each word shows (#25)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from captioner.cli.batch.extras import _save_attention, attention_grid_path
from captioner.photos.heatmap import attention_grid
from captioner.pointing import ATTENTION, READ
from captioner.results import CaptionResult

RED, BLUE = (220, 0, 0), (0, 0, 220)


def halves(width: int, height: int) -> Image.Image:
    """Left half red, right half blue."""
    image = Image.new("RGB", (width, height), BLUE)
    image.paste(RED, (0, 0, width // 2, height))
    return image


def photo_rows(sheet: Image.Image, x: int) -> int:
    """How many rows of column x show the (red) photo in the figure's first panel."""
    column = np.asarray(sheet, dtype=int)[:, x]
    return int(((column[:, 0] > 150) & (column[:, 2] < 80)).sum())


def corner_map() -> np.ndarray:
    alpha = np.full((7, 7), 0.1 / 48)
    alpha[0, 0] = 0.9
    return alpha


def test_a_wide_photo_gives_wide_panels():
    sheet = attention_grid(halves(400, 200), ["a"], corner_map()[None], columns=2, cell_size=200)
    assert sheet.width == 400  # two panels of 200 x 100, not 200 x 200
    assert abs(photo_rows(sheet, 50) - 100) <= 1
    # The photo is not squashed sideways either: red fills the left half of its panel only.
    row = np.asarray(sheet, dtype=int)[sheet.height - 50]
    assert (row[:95, 0] > 150).all() and (row[105:200, 2] > 150).all()


def test_a_tall_photo_gives_tall_panels():
    sheet = attention_grid(
        halves(150, 300), ["a", "b"], np.stack([corner_map()] * 2), cell_size=200
    )
    assert sheet.width == 3 * 100  # three panels of 100 x 200
    assert abs(photo_rows(sheet, 20) - 200) <= 1


def test_each_word_says_which_map_it_shows():
    image = Image.new("RGB", (200, 100), "grey")
    maps = np.stack([corner_map()] * 2)
    read = attention_grid(image, ["a", "dog"], maps, kinds=[ATTENTION, READ], cell_size=200)
    looked = attention_grid(image, ["a", "dog"], maps, kinds=[ATTENTION, ATTENTION], cell_size=200)
    plain = attention_grid(image, ["a", "dog"], maps, cell_size=200)
    assert read.height > plain.height  # a line under each word says which map it is
    label = (slice(0, read.height - 100), slice(400, 600))  # the label above "dog"
    assert not np.array_equal(np.asarray(read)[label], np.asarray(looked)[label])


def test_save_attention_draws_the_read_map_at_the_photos_aspect_ratio(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    halves(640, 320).save("wide.png")
    alphas = np.zeros((1, 7, 7))
    alphas[0, 6, 6] = 1.0  # the attention before the word: the bottom-right corner
    result = CaptionResult(
        "dog", ["dog"], -1.0, -1.0, alphas, np.zeros(1), source="wide.png",
        maps=corner_map()[None], map_kinds=[READ],
    )  # fmt: skip
    _save_attention(result, "figures")
    sheet = Image.open(attention_grid_path("figures", "wide.png")).convert("RGB")
    panel_w = sheet.width // 2
    assert panel_w == 224 and abs(photo_rows(sheet, 20) - 112) <= 1  # 224 x 112 panels
    word = np.asarray(sheet, dtype=float)[-112:, panel_w:]  # the word's panel, 2:1
    photo = np.asarray(sheet, dtype=float)[-112:, :panel_w]
    change = np.abs(word - photo).sum(-1)
    assert change[:20, :20].mean() > 3 * change[-20:, -20:].mean()  # the read map, top left
