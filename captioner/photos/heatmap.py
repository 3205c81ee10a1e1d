"""Heatmaps: one word's map over the photo, and the grid figure of every word."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from captioner.pointing import ATTENTION, READ

# Anchor colours of a perceptually ordered map (dark purple -> orange -> pale yellow, as in
# "inferno"), interpolated to 256 entries: low attention stays dark, the focus glows.
_ANCHORS = np.array(
    [[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66],
     [245, 125, 21], [250, 193, 39], [252, 255, 164]], dtype=np.float64
)  # fmt: skip
COLORMAP = np.stack(
    [
        np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_ANCHORS)), _ANCHORS[:, c])
        for c in range(3)
    ],
    axis=1,
).astype(np.uint8)  # (256, 3)


def upsample(alpha: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (grid_h, grid_w) map -> (height, width) float32 in [0, 1], smoothly interpolated.

    Scaled by its maximum so the most-attended region is always at full strength.
    """
    peak = float(alpha.max())
    normalised = (alpha / peak if peak > 0 else alpha).astype(np.float32)
    smooth = Image.fromarray(normalised, mode="F").resize(size, Image.Resampling.BICUBIC)
    return np.clip(np.asarray(smooth), 0.0, 1.0)


def overlay(image: Image.Image, alpha: np.ndarray, opacity: float = 0.6) -> Image.Image:
    """The photo with `alpha` (grid_h, grid_w) blended on top as a coloured heatmap.

    Opacity grows with attention, so unattended regions show the photo almost unchanged.
    """
    image = image.convert("RGB")
    strength = upsample(alpha, image.size)  # (height, width)
    colours = COLORMAP[(strength * 255).astype(np.uint8)].astype(np.float32)  # (height, width, 3)
    weight = (opacity * (0.25 + 0.75 * strength))[..., None]
    blended = np.asarray(image, dtype=np.float32) * (1 - weight) + colours * weight
    return Image.fromarray(blended.round().astype(np.uint8))


def attention_grid(
    image: Image.Image,
    tokens: list[str],
    alphas: np.ndarray,
    *,
    columns: int = 5,
    cell_size: int = 224,
    opacity: float = 0.6,
    kinds: Sequence[str] | None = None,
) -> Image.Image:
    """The paper's figure: the photo, then each word above its map, at the photo's own aspect
    ratio (its longer side cell_size pixels: the grid covers the whole photo, squashed or not).

    tokens: the caption's words; alphas: (len(tokens), grid_h, grid_w), the map of each word
    (a result's `maps`); kinds: each map's kind (a result's `map_kinds`, captioner/pointing.py),
    said under its word: "where it was read" or "attention before it".
    """
    if len(tokens) != len(alphas):
        raise ValueError(f"{len(tokens)} words but {len(alphas)} attention maps")
    if kinds is not None and len(kinds) != len(tokens):
        raise ValueError(f"{len(tokens)} words but {len(kinds)} map kinds")
    width, height = image.size
    scale = cell_size / max(width, height)
    panel_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    thumb = image.convert("RGB").resize(panel_size, Image.Resampling.BILINEAR)
    panels = [("", "", thumb)] + [
        (word, _KIND_NOTES[kind] if kinds is not None else "", overlay(thumb, a, opacity))
        for word, kind, a in zip(tokens, kinds or [ATTENTION] * len(tokens), alphas, strict=True)
    ]
    font = ImageFont.load_default(size=max(12, cell_size // 10))
    note_font = ImageFont.load_default(size=max(10, cell_size // 16))
    note_height = note_font.size + 4 if kinds is not None else 0
    label_height = font.size + 8 + note_height
    panel_w, panel_h = panel_size
    columns = min(columns, len(panels))
    rows = -(-len(panels) // columns)
    sheet = Image.new("RGB", (columns * panel_w, rows * (panel_h + label_height)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (word, note, panel) in enumerate(panels):
        x, y = (i % columns) * panel_w, (i // columns) * (panel_h + label_height)
        centre = x + panel_w // 2
        draw.text((centre, y + (font.size + 8) // 2), word, fill="black", font=font, anchor="mm")
        if note:
            note_y = y + font.size + 8 + note_height // 2
            draw.text((centre, note_y), note, fill=(90, 90, 90), font=note_font, anchor="mm")
        sheet.paste(panel, (x, y + label_height))
    return sheet


# Under each word of the figure: which map it is (captioner/pointing.py).
_KIND_NOTES = {READ: "where it was read", ATTENTION: "attention before it"}
