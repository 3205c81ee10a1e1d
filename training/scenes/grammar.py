"""The caption grammar of generated scenes: five distinct captions, each true for its image
(fewer only where the grammar has no more wordings).

A scene's objects are read as {"shape", "color", "size", "bbox"}: "shape" is the noun, "color" a
colour word or "" when the object has none. The grammar covers attributes, counts and spatial
relations: a mention always names exactly the objects of that shape and colour (with a count
when there are two), and spatial relations are computed from bbox centres and only used when
clear (see `_relation`). Each caption comes with, per token, the objects it names (the
"word_objects" of the COCO file, see training/scenes/__init__.py).

The shapes scenes' words are the grammar's own lexicon; composites bring theirs (`Lexicon`).
"""

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

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


# When a mention may say its objects' size: "any" scene (half the time, as the shapes scenes
# always have), or only one whose objects differ in size ("contrast"): "a small dog and a large
# bicycle", never "a large dog" for a lone dog, where the word says nothing a photo could show.
SIZE_WORD_POLICIES = ("any", "contrast")


CAPTIONS_PER_IMAGE = 5


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
    size_words: str = "any"  # one of SIZE_WORD_POLICIES


SHAPES_LEXICON = Lexicon(SHAPE_PLURALS)


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
    may_say_size = lexicon.size_words == "any" or len({obj["size"] for obj in objects}) > 1
    if len(sizes) == 1 and may_say_size and (unit.size_required or rng.random() < 0.5):
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
    naming every object (2, or all 5 otherwise); fewer where no more wordings exist. objects as
    Lexicon describes; returns [{"caption", "word_objects"}] (see training/scenes/__init__.py)."""
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
            break  # every wording has been said: a lone object with no size to say has four
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


def caption_vocabulary() -> list[str]:
    """Every word the caption grammar can produce, sorted."""
    words = {"a", "an", "one", "there", "is", "are", "and", "with", "of", "different", "sizes"}
    words |= set(NUMBER_WORDS.values()) | set(COLORS) | set(SHAPES) | set(SHAPE_PLURALS.values())
    words |= {word for choices in SIZE_WORDS.values() for word in choices}
    phrases = [p for ps in RELATION_PHRASES.values() for p in ps]
    phrases += list(NEAR_PHRASES) + list(WITHIN_PAIR_PHRASES.values())
    words |= {word for phrase in phrases for word in phrase}
    return sorted(words)
