"""Shapes scenes: coloured shapes on plain or textured backgrounds.

Each image holds 1 to 3 objects (shape, colour, size), placed with disjoint boxes off the edges
and, with several, a clear relation between some pair, so the caption grammar
(training/scenes/grammar.py) always has true things to say. Composites reuse the placement and
the textures.
"""

import functools
from dataclasses import dataclass

import numpy as np
import skimage.data
from PIL import Image, ImageDraw, ImageFilter

from training.scenes.grammar import COLORS, SHAPES, captions_for, has_clear_relation

MIN_IMAGE_SIZE = 64


# Half the width of an object's unrotated box, as a fraction of the image side; the gap between
# the two ranges keeps "small" and "large" unambiguous.
HALF_EXTENTS = {"small": (0.065, 0.085), "large": (0.13, 0.16)}


TEXTURES = ("grass", "brick", "gravel")


OBJECT_COUNT_WEIGHTS = (0.2, 0.4, 0.4)  # scenes with 1, 2, 3 objects


# Uniform sampling would rarely repeat a shape and colour, so count captions ("two red circles")
# would be rare; this forces a repeat in some multi-object scenes.
REPEAT_PROBABILITY = 0.15


MAX_SAME_SHAPE_AND_COLOR = 2


PLAIN_BACKGROUND_PROBABILITY = 0.4


MAX_ROTATION_DEGREES = 12.0


COLOR_JITTER = 12


EDGE_MARGIN = 0.03  # fractions of the image side from here on


OBJECT_GAP = 0.025


SUPERSAMPLING = 4  # object masks are drawn this much larger, then box-filtered for soft edges


def _outline(shape: str) -> np.ndarray:
    """A shape's polygon centred on the origin within the box [-1, 1]^2; (K, 2) x, y, y down."""
    if shape == "circle":
        angles = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if shape == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float)
    if shape == "triangle":
        return np.array([[0, -0.866], [1, 0.866], [-1, 0.866]])
    if shape == "star":
        angles = np.deg2rad(-90 + 36 * np.arange(10))
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.5)
        points = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
        return points - [0, (points[:, 1].max() + points[:, 1].min()) / 2]
    if shape == "diamond":
        return np.array([[0, -1], [0.7, 0], [0, 1], [-0.7, 0]])
    if shape == "cross":
        w = 0.34
        return np.array(
            [[-w, -1], [w, -1], [w, -w], [1, -w], [1, w], [w, w]]
            + [[w, 1], [-w, 1], [-w, w], [-1, w], [-1, -w], [-w, -w]]
        )
    raise ValueError(f"unknown shape {shape!r}")


OUTLINES = {shape: _outline(shape) for shape in SHAPES}


@dataclass
class _Spec:
    """An object before placement: attributes and its polygon around the origin, in pixels."""

    shape: str
    color: str
    size: str
    polygon: np.ndarray  # (K, 2)


def _box_of(points: np.ndarray) -> tuple[float, float, float, float]:
    return points[:, 0].min(), points[:, 1].min(), points[:, 0].max(), points[:, 1].max()


def _sample_specs(rng: np.random.Generator, size: int) -> list[_Spec]:
    count = 1 + int(rng.choice(len(OBJECT_COUNT_WEIGHTS), p=OBJECT_COUNT_WEIGHTS))
    specs: list[_Spec] = []
    while len(specs) < count:
        if specs and rng.random() < REPEAT_PROBABILITY:
            shape, color = specs[0].shape, specs[0].color
        else:
            shape = SHAPES[rng.integers(len(SHAPES))]
            color = list(COLORS)[rng.integers(len(COLORS))]
        if sum(s.shape == shape and s.color == color for s in specs) >= MAX_SAME_SHAPE_AND_COLOR:
            continue
        size_class = "small" if rng.random() < 0.5 else "large"
        half_extent = rng.uniform(*HALF_EXTENTS[size_class]) * size
        aspect = rng.uniform(0.9, 1.1)  # width / height jitter
        angle = np.deg2rad(rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES))
        cos, sin = np.cos(angle), np.sin(angle)
        rotation = np.array([[cos, -sin], [sin, cos]])
        polygon = (OUTLINES[shape] * [aspect * half_extent, half_extent]) @ rotation.T
        specs.append(_Spec(shape, color, size_class, polygon))
    return specs


def place(
    polygons: list[np.ndarray], rng: np.random.Generator, size: int
) -> list[np.ndarray] | None:
    """Polygons (K, 2) around the origin moved to random positions with disjoint boxes kept off
    the edges, or None when they did not fit or (several objects) no pair has a clear relation."""
    margin, gap = EDGE_MARGIN * size, OBJECT_GAP * size
    placed: list[np.ndarray] = []
    boxes: list[tuple[float, float, float, float]] = []
    for polygon in polygons:
        x0, y0, x1, y1 = _box_of(polygon)
        for _ in range(30):
            cx = rng.uniform(margin - x0, size - margin - x1)
            cy = rng.uniform(margin - y0, size - margin - y1)
            box = (cx + x0, cy + y0, cx + x1, cy + y1)
            if all(
                box[2] + gap <= b[0]
                or b[2] + gap <= box[0]
                or box[3] + gap <= b[1]
                or b[3] + gap <= box[1]
                for b in boxes
            ):
                placed.append(polygon + [cx, cy])
                boxes.append(box)
                break
        else:
            return None
    xywh = [[b[0], b[1], b[2] - b[0], b[3] - b[1]] for b in boxes]
    return placed if has_clear_relation(xywh, size) else None


@functools.cache
def _texture(name: str) -> np.ndarray:
    return getattr(skimage.data, name)().astype(np.float32)  # (512, 512) grey


def texture_crop(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random square of one of the TEXTURES (they ship in scikit-image's wheel), turned by a
    multiple of 90 degrees and resized; (size, size) float32 grey."""
    source = _texture(TEXTURES[rng.integers(len(TEXTURES))])
    side = int(rng.integers(source.shape[0] // 3, source.shape[0] + 1))
    top = int(rng.integers(0, source.shape[0] - side + 1))
    left = int(rng.integers(0, source.shape[1] - side + 1))
    crop = np.ascontiguousarray(
        np.rot90(source[top : top + side, left : left + side], rng.integers(4))
    )
    return np.asarray(Image.fromarray(crop).resize((size, size), Image.Resampling.BILINEAR))


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A light, low-contrast, near-grey background; (size, size, 3) float32 in 0..255."""
    tint = rng.uniform(-6, 6, size=3)
    if rng.random() < PLAIN_BACKGROUND_PROBABILITY:
        # A gentle gradient in a random direction, so plain is not perfectly flat.
        level, amplitude, angle = (
            rng.uniform(120, 225),
            rng.uniform(0, 12),
            rng.uniform(0, 2 * np.pi),
        )
        ramp = np.arange(size, dtype=np.float32) / size - 0.5
        grey = level + amplitude * (np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None])
    else:
        resized = texture_crop(rng, size)
        # Lighten and flatten the texture so the saturated objects stay clearly visible.
        contrast, level = rng.uniform(10, 24), rng.uniform(140, 210)
        grey = (resized - resized.mean()) / (resized.std() + 1e-6) * contrast + level
    return grey[..., None] + tint.astype(np.float32)


def _paint(
    canvas: np.ndarray, polygon: np.ndarray, rgb: np.ndarray, rng: np.random.Generator
) -> list[int]:
    """Draws an anti-aliased, slightly shaded polygon into canvas; returns its bbox [x, y, w, h]."""
    height, width = canvas.shape[:2]
    x0 = max(int(np.floor(polygon[:, 0].min())) - 1, 0)
    y0 = max(int(np.floor(polygon[:, 1].min())) - 1, 0)
    x1 = min(int(np.ceil(polygon[:, 0].max())) + 1, width)
    y1 = min(int(np.ceil(polygon[:, 1].max())) + 1, height)
    mask = Image.new("L", ((x1 - x0) * SUPERSAMPLING, (y1 - y0) * SUPERSAMPLING), 0)
    points = [((x - x0) * SUPERSAMPLING, (y - y0) * SUPERSAMPLING) for x, y in polygon]
    ImageDraw.Draw(mask).polygon(points, fill=255)
    alpha = (
        np.asarray(mask.resize((x1 - x0, y1 - y0), Image.Resampling.BOX), dtype=np.float32) / 255
    )
    # A linear light falloff of up to +-10 % across the object, in a random direction.
    strength, angle = rng.uniform(0, 0.1), rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0 : y1 - y0, 0 : x1 - x0].astype(np.float32)
    xs, ys = xs - (x1 - x0) / 2, ys - (y1 - y0) / 2
    ramp = (np.cos(angle) * xs + np.sin(angle) * ys) / (np.hypot(x1 - x0, y1 - y0) / 2)  # -1..1
    shade = 1 + strength * ramp
    colour = np.clip(rgb * shade[..., None], 0, 255)  # (h, w, 3)
    region = canvas[y0:y1, x0:x1]
    region += alpha[..., None] * (colour - region)
    rows = np.flatnonzero((alpha >= 0.5).any(axis=1))
    cols = np.flatnonzero((alpha >= 0.5).any(axis=0))
    return [
        x0 + int(cols[0]),
        y0 + int(rows[0]),
        int(cols[-1] - cols[0] + 1),
        int(rows[-1] - rows[0] + 1),
    ]


def make_scene(
    rng: np.random.Generator, size: int = 256
) -> tuple[Image.Image, list[dict], list[dict]]:
    """One random scene: the RGB image, its objects and five captions.

    objects: [{"shape", "color", "size", "bbox": [x, y, w, h]}]; captions: [{"caption",
    "word_objects"}] (see training/scenes/__init__.py). Pure function of rng's state.
    """
    if size < MIN_IMAGE_SIZE:
        raise ValueError(f"image size must be at least {MIN_IMAGE_SIZE} px, got {size}")
    polygons = None
    while polygons is None:
        specs = _sample_specs(rng, size)
        for _ in range(20):  # then new objects: these may be too big to fit together
            polygons = place([spec.polygon for spec in specs], rng, size)
            if polygons is not None:
                break
    canvas = _background(rng, size)  # (size, size, 3) float32
    objects = []
    for spec, polygon in zip(specs, polygons, strict=True):
        jitter = rng.integers(-COLOR_JITTER, COLOR_JITTER + 1, size=3)
        rgb = np.clip(np.array(COLORS[spec.color]) + jitter, 0, 255).astype(np.float32)
        bbox = _paint(canvas, polygon, rgb, rng)
        objects.append({"shape": spec.shape, "color": spec.color, "size": spec.size, "bbox": bbox})
    image = Image.fromarray(np.clip(canvas, 0, 255).round().astype(np.uint8))
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9)))
    noise = rng.standard_normal((size, size, 3), dtype=np.float32) * rng.uniform(2, 6)
    pixels = np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).round().astype(np.uint8)
    return Image.fromarray(pixels), objects, captions_for(objects, size, rng)
