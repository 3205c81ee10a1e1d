"""Attention heatmaps: one word's map over the photo, and the grid figure of every word."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

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
) -> Image.Image:
    """The paper's figure: the photo, then each word above its attention overlay.

    tokens: the caption's words; alphas: (len(tokens), grid_h, grid_w).
    """
    if len(tokens) != len(alphas):
        raise ValueError(f"{len(tokens)} words but {len(alphas)} attention maps")
    thumb = image.convert("RGB").resize((cell_size, cell_size), Image.Resampling.BILINEAR)
    panels = [("", thumb)] + [
        (w, overlay(thumb, a, opacity)) for w, a in zip(tokens, alphas, strict=True)
    ]
    font = ImageFont.load_default(size=max(12, cell_size // 10))
    label_height = font.size + 8
    columns = min(columns, len(panels))
    rows = -(-len(panels) // columns)
    sheet = Image.new("RGB", (columns * cell_size, rows * (cell_size + label_height)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (word, panel) in enumerate(panels):
        x, y = (i % columns) * cell_size, (i // columns) * (cell_size + label_height)
        draw.text(
            (x + cell_size // 2, y + label_height // 2), word, fill="black", font=font, anchor="mm"
        )
        sheet.paste(panel, (x, y + label_height))
    return sheet
