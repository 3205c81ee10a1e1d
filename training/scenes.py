"""Generated-scenes dataset: coloured shapes on plain or textured backgrounds, with true captions.

Each image holds 1 to 3 objects (shape, colour, size) and gets five reference captions from a small
grammar covering attributes, counts and spatial relations. The output is in the COCO captions
format (images on disk + one annotations JSON per split), so the same readers and tools work on
it. An image's id is the number its file name ends with (``000007.png`` is id 7), the rule the
batch command's COCO results (``captioner --format coco``) apply to every file name, so its
results for a split score against the split's annotations as they are. Extra keys, which COCO
tools ignore, carry the ground truth for grounding metrics:

- ``images[i]["objects"]``: ``[{"shape", "color", "size", "bbox": [x, y, w, h]}, ...]``, the bbox in
  pixels (COCO convention), tight around the pixels that are at least half covered by the object.
- ``annotations[j]["word_objects"]``: one list per token of ``caption.split(" ")`` (captions are
  lower case, single-spaced, without punctuation). A token's list holds the indices into
  ``objects`` of every object the token names by shape, colour or size, e.g. "red" and "circles"
  in "two red circles" both get ``[0, 2]``; tokens that name no object ("a", "two", "left", ...)
  get ``[]``. Every entry is a list, singular words included, so consumers need no special case.

Captions are true for their image: a mention always names exactly the objects of that shape and
colour (with a count when there are two), and spatial relations are computed from bbox centres
and only used when clear (see ``_relation``). Everything is derived from a per-image seed built
from (seed, split, index), so the output is byte-identical whatever the worker count and the
splits never share a random stream.
"""

import argparse
import functools
import io
import json
import math
import multiprocessing
import os
import re
import sys
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image, ImageDraw, ImageFilter

from captioner.photos.atomic import write_atomically

SHAPES = ("circle", "square", "triangle", "star", "diamond", "cross")
SHAPE_PLURALS = {
    "circle": "circles",
    "square": "squares",
    "triangle": "triangles",
    "star": "stars",
    "diamond": "diamonds",
    "cross": "crosses",
}
# Saturated, well-separated hues: backgrounds are near grey, so these always stand out.
COLORS = {
    "red": (215, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 215),
    "yellow": (235, 205, 35),
    "purple": (140, 60, 185),
    "orange": (240, 135, 30),
}
SIZE_WORDS = {"small": ("small",), "large": ("large", "big")}
# Half the width of an object's unrotated box, as a fraction of the image side; the gap between
# the two ranges keeps "small" and "large" unambiguous.
HALF_EXTENTS = {"small": (0.065, 0.085), "large": (0.13, 0.16)}
TEXTURES = ("grass", "brick", "gravel")
IMAGE_FORMATS = ("png", "jpg")
CAPTIONS_PER_IMAGE = 5
MIN_IMAGE_SIZE = 64

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
RELATION_MARGIN = 0.1
# A relation holds only when the centres are offset mostly along one axis: the offset across it
# must be at most this fraction of the offset along it (about 27 degrees), so "left of" is never
# said of a pair that could as well be "above".
RELATION_SLOPE = 0.5
NEAR_GAP = 0.25  # "next to" / "beside" only when the boxes are at most this far apart
RELATION_PHRASES = {
    "left": (("to", "the", "left", "of"), ("left", "of")),
    "right": (("to", "the", "right", "of"), ("right", "of")),
    "above": (("above",),),
    "below": (("below",), ("under",)),
}
NEAR_PHRASES = (("next", "to"), ("beside",))
WITHIN_PAIR_PHRASES = {
    "left": ("side", "by", "side"),
    "right": ("side", "by", "side"),
    "above": ("one", "above", "the", "other"),
    "below": ("one", "above", "the", "other"),
}
NUMBER_WORDS = {2: "two"}
CHUNK_SIZE = 64  # images per worker task
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


@dataclass(frozen=True)
class _Unit:
    """Objects that one noun phrase names: all share shape and colour."""

    members: tuple[int, ...]
    size_required: bool  # the group was split by size, so only the size word tells them apart


def vowel_article(phrase: str) -> str:
    """The article before phrase by its first letter: right for every phrase of the shapes."""
    return "an" if phrase[:1] in ("a", "e", "i", "o", "u") else "a"


@dataclass(frozen=True)
class Lexicon:
    """What the caption grammar needs to know about the nouns it names.

    The grammar reads objects as {"shape", "color", "size", "bbox"}: "shape" is the noun, "color"
    a colour word or "" when the object has none. Other generators (training/composites.py) give
    it such views of their objects with their own nouns.
    """

    plurals: Mapping[str, str]
    article: Callable[[str], str] = vowel_article  # "a" or "an" before a phrase
    # Chance that a mention says an object's colour; below 1, captions vary by naming it or not.
    color_probability: float = 1.0


SHAPES_LEXICON = Lexicon(SHAPE_PLURALS)


def _box_of(points: np.ndarray) -> tuple[float, float, float, float]:
    return points[:, 0].min(), points[:, 1].min(), points[:, 0].max(), points[:, 1].max()


def _relation(box_a: list[int], box_b: list[int], size: int) -> str | None:
    """Where a lies relative to b ("left", "right", "above", "below") when clear, else None.

    Boxes are [x, y, w, h]; their centres decide. The offset along the dominant axis must be at
    least RELATION_MARGIN of the image and the offset across it small (RELATION_SLOPE).
    """
    dx = (box_b[0] + box_b[2] / 2) - (box_a[0] + box_a[2] / 2)  # > 0: a is left of b
    dy = (box_b[1] + box_b[3] / 2) - (box_a[1] + box_a[3] / 2)  # > 0: a is above b (y down)
    margin = RELATION_MARGIN * size
    if abs(dx) >= margin and abs(dy) <= RELATION_SLOPE * abs(dx):
        return "left" if dx > 0 else "right"
    if abs(dy) >= margin and abs(dx) <= RELATION_SLOPE * abs(dy):
        return "above" if dy > 0 else "below"
    return None


def has_clear_relation(boxes: list[list], size: int) -> bool:
    """Whether one box [x, y, w, h] alone, or some pair has a clear relation (_relation).

    Several objects with no clear relation between any two could leave too few distinct true
    captions (two same-sized red circles: only "two red circles", "there are two ...", ...).
    """
    if len(boxes) == 1:
        return True
    return any(_relation(a, b, size) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def _is_near(box_a: list[int], box_b: list[int], size: int) -> bool:
    gap = max(box_a[0], box_b[0]) - min(box_a[0] + box_a[2], box_b[0] + box_b[2])
    return gap <= NEAR_GAP * size


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


def _units(objects: list[dict]) -> list[list[_Unit]]:
    """Ways to split the objects into noun phrases: by shape and colour, and, when such a group
    mixes sizes, also one phrase per size ("a small red circle and a large red circle")."""
    groups: dict[tuple[str, str], list[int]] = {}
    for index, obj in enumerate(objects):
        groups.setdefault((obj["shape"], obj["color"]), []).append(index)
    partitions = [[_Unit(tuple(members), False) for members in groups.values()]]
    if any(len({objects[i]["size"] for i in members}) > 1 for members in groups.values()):
        split: list[_Unit] = []
        for members in groups.values():
            by_size: dict[str, list[int]] = {}
            for i in members:
                by_size.setdefault(objects[i]["size"], []).append(i)
            required = len(by_size) > 1
            split.extend(_Unit(tuple(part), required) for part in by_size.values())
        partitions.append(split)
    return partitions


def _mention(
    unit: _Unit, objects: list[dict], rng: np.random.Generator, lexicon: Lexicon
) -> tuple[list[str], list[list[int]]]:
    """A noun phrase naming exactly the unit's objects: tokens and, per token, the objects named."""
    members = list(unit.members)
    first = objects[members[0]]
    sizes = {objects[i]["size"] for i in members}
    words: list[str] = []
    refs: list[list[int]] = []
    if len(members) == 1:
        words.append("one" if rng.random() < 0.2 else "a")
    else:
        words.append(NUMBER_WORDS[len(members)])
    refs.append([])
    if len(sizes) == 1 and (unit.size_required or rng.random() < 0.5):
        choices = SIZE_WORDS[first["size"]]
        words.append(choices[0] if rng.random() < 0.7 else choices[-1])
        refs.append(members)
    # No draw when the colour is always said, so shapes scenes keep their random streams.
    if first["color"] and (
        lexicon.color_probability >= 1 or rng.random() < lexicon.color_probability
    ):
        words.append(first["color"])
        refs.append(members)
    noun = first["shape"] if len(members) == 1 else lexicon.plurals[first["shape"]]
    # A two-word noun ("teddy bear") is two tokens, both naming the unit's objects.
    for word in noun.split(" "):
        words.append(word)
        refs.append(members)
    if len(sizes) > 1 and rng.random() < 0.3:
        words += ["of", "different", "sizes"]
        refs += [[], [], []]
    if words[0] == "a":
        words[0] = lexicon.article(" ".join(words[1:]))
    return words, refs


def _centre_x(obj: dict) -> float:
    return obj["bbox"][0] + obj["bbox"][2] / 2


def _there(first_unit: _Unit) -> list[str]:
    return ["there", "is" if len(first_unit.members) == 1 else "are"]


def _list_caption(
    partitions: list[list[_Unit]], objects: list[dict], rng: np.random.Generator, lexicon: Lexicon
) -> tuple[list[str], list[list[int]]]:
    """Every object: "a red circle", "there is a blue square and two small green stars", ...

    Named left to right, the way a reader scans the scene: the order then says where things are,
    and only the wording is left to chance (a random order made a third of each listing
    unpredictable from the image, which no captioner can learn).
    """
    units = partitions[rng.integers(len(partitions))]
    order = sorted(units, key=lambda unit: min(_centre_x(objects[i]) for i in unit.members))
    words: list[str] = []
    refs: list[list[int]] = []
    if rng.random() < 0.4:
        words += _there(order[0])
        refs += [[], []]
    # Three phrases: "A and B and C" or "A with B and C" (no commas: captions have no punctuation).
    joiners = ["and"] * (len(order) - 1)
    if len(order) == 3 and rng.random() < 0.5:
        joiners[0] = "with"
    for position, unit in enumerate(order):
        if position > 0:
            words.append(joiners[position - 1])
            refs.append([])
        unit_words, unit_refs = _mention(unit, objects, rng, lexicon)
        words += unit_words
        refs += unit_refs
    return words, refs


def _relation_options(partitions: list[list[_Unit]], objects: list[dict], size: int) -> list[tuple]:
    """(subject, object or None, relation) for every clear relation between or within units."""
    boxes = [obj["bbox"] for obj in objects]
    options: dict[tuple, None] = {}  # a dict keeps first-seen order (sets would break determinism)
    for units in partitions:
        for a in units:
            if len(a.members) == 2:
                relation = _relation(boxes[a.members[0]], boxes[a.members[1]], size)
                if relation:
                    options[(a, None, relation)] = None
            for b in units:
                if a is b:
                    continue
                pairs = [(boxes[i], boxes[j]) for i in a.members for j in b.members]
                relations = {_relation(box_a, box_b, size) for box_a, box_b in pairs}
                if len(relations) == 1 and None not in relations:
                    options[(a, b, relations.pop())] = None
    return list(options)


def _relation_caption(
    option: tuple, objects: list[dict], size: int, rng: np.random.Generator, lexicon: Lexicon
) -> tuple[list[str], list[list[int]]]:
    """A spatial caption: "a small red circle to the left of a blue square", "two green stars
    side by side", ..."""
    subject, target, relation = option
    words: list[str] = []
    refs: list[list[int]] = []
    if rng.random() < 0.3:
        words += _there(subject)
        refs += [[], []]
    subject_words, subject_refs = _mention(subject, objects, rng, lexicon)
    words += subject_words
    refs += subject_refs
    if target is None:
        phrase = WITHIN_PAIR_PHRASES[relation]
        return words + list(phrase), refs + [[] for _ in phrase]
    phrases = RELATION_PHRASES[relation]
    boxes = [obj["bbox"] for obj in objects]
    if relation in ("left", "right") and all(
        _is_near(boxes[i], boxes[j], size) for i in subject.members for j in target.members
    ):
        phrases = phrases + NEAR_PHRASES
    phrase = phrases[rng.integers(len(phrases))]
    target_words, target_refs = _mention(target, objects, rng, lexicon)
    return words + list(phrase) + target_words, refs + [[] for _ in phrase] + target_refs


def captions_for(
    objects: list[dict], size: int, rng: np.random.Generator, lexicon: Lexicon = SHAPES_LEXICON
) -> list[dict]:
    """Five distinct true captions: spatial ones (3) when the scene has a clear relation, and ones
    naming every object (2, or all 5 otherwise). objects as Lexicon describes; returns
    [{"caption", "word_objects"}] (see the module docstring)."""
    partitions = _units(objects)
    options = _relation_options(partitions, objects, size)
    kinds = ["relation", "list"] * 2 + ["relation"] if options else ["list"] * CAPTIONS_PER_IMAGE

    def draw(kind: str) -> tuple[list[str], list[list[int]]]:
        if kind == "list":
            return _list_caption(partitions, objects, rng, lexicon)
        return _relation_caption(options[rng.integers(len(options))], objects, size, rng, lexicon)

    captions: dict[str, list[list[int]]] = {}
    for kind in kinds:
        # Fall back to the other kind when this one has run out of new wordings.
        fallback = "relation" if kind == "list" and options else "list"
        for attempt in range(100):
            words, refs = draw(kind if attempt < 50 else fallback)
            text = " ".join(words)
            if text not in captions:
                captions[text] = refs
                break
        else:
            raise RuntimeError(
                f"could not find {CAPTIONS_PER_IMAGE} distinct captions for {objects}"
            )
    texts = list(captions)
    return [
        {"caption": texts[i], "word_objects": captions[texts[i]]}
        for i in rng.permutation(len(texts))
    ]


class _EveryBranch:
    """Stands in for the grammar's random generator to walk all of its branches, one per run.

    The grammar only compares `random()` with a probability and picks with `integers(n)`, so two
    values of `random()` (one below any probability, one above) and every `integers` value reach
    every wording. Each run replays the choices of `path` and takes the first option at new ones;
    `advance` then moves to the next path, depth first.
    """

    def __init__(self) -> None:
        self.path: list[int] = []
        self.widths: list[int] = []
        self.depth = 0

    def _choose(self, width: int) -> int:
        if self.depth == len(self.path):
            self.path.append(0)
            self.widths.append(width)
        choice = self.path[self.depth]
        self.depth += 1
        return choice

    def random(self) -> float:
        return (0.0, 1.0 - 1e-9)[self._choose(2)]

    def integers(self, high: int) -> int:
        return self._choose(int(high))

    def advance(self) -> bool:
        """Move to the next unexplored path; False when every path has been run."""
        del self.path[self.depth :], self.widths[self.depth :]
        self.depth = 0
        while self.path:
            self.path[-1] += 1
            if self.path[-1] < self.widths[-1]:
                return True
            self.path.pop()
            self.widths.pop()
        return False


def possible_captions(
    objects: list[dict], size: int, lexicon: Lexicon = SHAPES_LEXICON
) -> set[str]:
    """Every caption the grammar could write for the scene: every wording of every listing and
    of every clear relation, each of them true. A caption outside this set says something the
    scene does not show, or says it in words the grammar never uses."""
    partitions = _units(objects)
    writers = [lambda rng: _list_caption(partitions, objects, rng, lexicon)]
    writers += [
        functools.partial(_relation_caption, option, objects, size, lexicon=lexicon)
        for option in _relation_options(partitions, objects, size)
    ]
    captions = set()
    for write in writers:
        branches = _EveryBranch()
        while True:
            words, _ = write(rng=branches)
            captions.add(" ".join(words))
            if not branches.advance():
                break
    return captions


def make_scene(
    rng: np.random.Generator, size: int = 256
) -> tuple[Image.Image, list[dict], list[dict]]:
    """One random scene: the RGB image, its objects and five captions.

    objects: [{"shape", "color", "size", "bbox": [x, y, w, h]}]; captions: [{"caption",
    "word_objects"}] (see the module docstring). Pure function of rng's state.
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


def _image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    # crc32 is stable across runs, unlike hash(); it gives each split its own stream.
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(split.encode()), index]))


SceneMaker = Callable[[np.random.Generator, int], tuple[Image.Image, list[dict], list[dict]]]


def _render_chunk(
    job: tuple[SceneMaker, str, int, int, str, str, int, int],
) -> list[tuple[str, list, list]]:
    """Writes images start..stop-1 of a split; returns (file_name, objects, captions) for each."""
    make, split, seed, size, image_format, image_dir, start, stop = job
    records = []
    for index in range(start, stop):
        image, objects, captions = make(_image_rng(seed, split, index), size)
        file_name = f"{index:06d}.{image_format}"
        buffer = io.BytesIO()
        if image_format == "png":
            image.save(buffer, format="PNG")
        else:
            image.save(buffer, format="JPEG", quality=90)
        write_atomically(Path(image_dir) / file_name, buffer.getvalue())
        records.append((file_name, objects, captions))
    return records


def generate_split(
    out_dir: Path,
    split: str,
    count: int,
    seed: int,
    size: int = 256,
    image_format: str = "png",
    workers: int | None = None,
    make: SceneMaker = make_scene,
    info: Mapping[str, object] | None = None,
) -> Path:
    """Writes count scenes to out_dir/split/ and out_dir/captions_{split}.json; returns the latter.

    make(rng, size) draws one scene as make_scene does (another kind of scene: a picklable
    callable, since workers are separate processes); info replaces or adds entries of the JSON's
    "info" (description, ...). The output depends only on (make, seed, split, index, size,
    image_format), never on workers.
    """
    if not re.fullmatch(r"[A-Za-z0-9_-]+", split):
        raise ValueError(f"split name must be letters, digits, '_' or '-', got {split!r}")
    if count < 1:
        raise ValueError(f"count for split {split!r} must be at least 1, got {count}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if size < MIN_IMAGE_SIZE:
        raise ValueError(f"image size must be at least {MIN_IMAGE_SIZE} px, got {size}")
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    workers = max(1, workers or os.cpu_count() or 1)
    out_dir = Path(out_dir)
    image_dir = out_dir / split
    image_dir.mkdir(parents=True, exist_ok=True)
    chunk = max(1, min(CHUNK_SIZE, math.ceil(count / workers)))
    jobs = [
        (make, split, seed, size, image_format, str(image_dir), start, min(start + chunk, count))
        for start in range(0, count, chunk)
    ]
    if workers == 1 or len(jobs) == 1:
        chunks = [_render_chunk(job) for job in jobs]
    else:
        # spawn, not fork: safe when the caller already runs threads (torch, Qt).
        with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
            chunks = pool.map(_render_chunk, jobs)
    images, annotations = [], []
    records = (record for records in chunks for record in records)
    # The id is the number the file name ends with, as the module docstring explains.
    for image_id, (file_name, objects, captions) in enumerate(records):
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "width": size,
                "height": size,
                "objects": objects,
            }
        )
        for caption in captions:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **caption})
    coco = {
        "info": {
            "description": "captioner generated scenes",
            "version": "1",
            **(info or {}),
            "split": split,
            "seed": seed,
            "size": size,
        },
        "images": images,
        "annotations": annotations,
        "licenses": [],
    }
    annotations_path = out_dir / f"captions_{split}.json"
    write_atomically(annotations_path, json.dumps(coco, separators=(",", ":")).encode())
    return annotations_path


def caption_vocabulary() -> list[str]:
    """Every word the caption grammar can produce, sorted."""
    words = {"a", "an", "one", "there", "is", "are", "and", "with", "of", "different", "sizes"}
    words |= set(NUMBER_WORDS.values()) | set(COLORS) | set(SHAPES) | set(SHAPE_PLURALS.values())
    words |= {word for choices in SIZE_WORDS.values() for word in choices}
    phrases = [p for ps in RELATION_PHRASES.values() for p in ps]
    phrases += list(NEAR_PHRASES) + list(WITHIN_PAIR_PHRASES.values())
    words |= {word for phrase in phrases for word in phrase}
    return sorted(words)


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="captioner-scenes",
        description="Generate a captioned dataset of shapes scenes or of composites of "
        "photographed objects, in COCO captions format.",
    )
    parser.add_argument(
        "out_dir", type=Path, help="writes OUT_DIR/<split>/ and OUT_DIR/captions_<split>.json"
    )
    parser.add_argument("--train", type=_count, default=10_000, help="train images (default 10000)")
    parser.add_argument(
        "--val", type=_count, default=1_000, help="validation images (default 1000)"
    )
    parser.add_argument("--test", type=_count, default=1_000, help="test images (default 1000)")
    parser.add_argument("--seed", type=_count, default=0, help="random seed (default 0)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument("--format", choices=IMAGE_FORMATS, default="png", dest="image_format")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    parser.add_argument(
        "--kind",
        choices=("shapes", "composites"),
        default="shapes",
        help="shapes: coloured shapes (default); composites: photographed objects (Tux Paint "
        "stamps) pasted on backgrounds, see training/composites.py",
    )
    group = parser.add_argument_group("composites")
    group.add_argument(
        "--stamps",
        type=Path,
        metavar="DIR",
        help="Tux Paint stamps folder (default /usr/share/tuxpaint/stamps, from the Debian "
        "package tuxpaint-stamps-default: scripts/install_stamps.sh)",
    )
    group.add_argument(
        "--stamp-list",
        type=Path,
        metavar="FILE",
        help="stamps to use, with nouns (default training/data/stamps.tsv)",
    )
    group.add_argument(
        "--photos",
        type=Path,
        nargs="+",
        metavar="PATH",
        help="background photos: files or folders of them (default: the landscapes of "
        "lomiri-wallpapers-16.04 when installed)",
    )
    group.add_argument(
        "--backgrounds",
        type=lambda text: tuple(text.split(",")),
        metavar="KIND,...",
        help="some of photo,texture,plain,gradient,noise (default: all; no photo when no "
        "photos are found)",
    )
    group.add_argument(
        "--max-objects", type=int, metavar="N", help="stamps per composite, 1 to N (default 3)"
    )
    group.add_argument(
        "--close-ups",
        type=float,
        metavar="SHARE",
        help="share of single-stamp composites whose stamp fills most of the frame, as the "
        "subject of a photo does (default 0)",
    )
    args = parser.parse_args(argv)
    if args.size < MIN_IMAGE_SIZE:
        parser.error(f"--size must be at least {MIN_IMAGE_SIZE}, got {args.size}")
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    counts = {"train": args.train, "val": args.val, "test": args.test}
    if not any(counts.values()):
        parser.error("every split count is zero: nothing to generate")
    composite_options = {
        "stamps_dir": args.stamps,
        "stamp_list": args.stamp_list,
        "photos": args.photos,
        "backgrounds": args.backgrounds,
        "max_objects": args.max_objects,
        "close_ups": args.close_ups,
    }
    given = {name: value for name, value in composite_options.items() if value is not None}
    make, info = make_scene, None
    if args.kind == "composites":
        from training import composites  # here, not at the top: composites imports this module

        try:
            config, notes = composites.load_config(**given)
        except (FileNotFoundError, ValueError) as error:
            parser.error(str(error))
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        make, info = composites.scene_maker(config), composites.describe(config)
    elif given:
        parser.error(
            "--stamps, --stamp-list, --photos, --backgrounds, --max-objects and --close-ups "
            "need --kind composites"
        )
    for split, count in counts.items():
        if count == 0:
            continue
        started = time.perf_counter()
        path = generate_split(
            args.out_dir,
            split,
            count,
            args.seed,
            args.size,
            args.image_format,
            args.workers,
            make,
            info,
        )
        print(
            f"{split}: {count} images in {time.perf_counter() - started:.1f} s -> {path}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
