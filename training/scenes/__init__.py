"""Generated-scenes datasets: scenes drawn with true captions, in the COCO captions format.

Two kinds: coloured shapes on plain or textured backgrounds (shapes.py), and photographed
objects pasted on backgrounds (composites.py). Each image holds 1 to 3 objects and gets five
reference captions from one grammar (grammar.py) covering attributes, counts and spatial
relations; splits.py writes them, and command.py is `captioner-scenes`.

The output is in the COCO captions format (images on disk + one annotations JSON per split), so
the same readers and tools work on it. An image's id is the number its file name ends with
(``000007.png`` is id 7), the rule the batch command's COCO results (``captioner --format coco``)
apply to every file name, so its results for a split score against the split's annotations as
they are. Extra keys, which COCO tools ignore, carry the ground truth for grounding metrics:

- ``images[i]["objects"]``: ``[{"shape", "color", "size", "bbox": [x, y, w, h]}, ...]``, the bbox in
  pixels (COCO convention), tight around the pixels that are at least half covered by the object.
- ``annotations[j]["word_objects"]``: one list per token of ``caption.split(" ")`` (captions are
  lower case, single-spaced, without punctuation). A token's list holds the indices into
  ``objects`` of every object the token names by shape, colour or size, e.g. "red" and "circles"
  in "two red circles" both get ``[0, 2]``; tokens that name no object ("a", "two", "left", ...)
  get ``[]``. Every entry is a list, singular words included, so consumers need no special case.
"""

from training.scenes.grammar import (
    COLORS,
    SHAPE_PLURALS,
    SHAPES,
    Lexicon,
    caption_vocabulary,
    captions_for,
    possible_captions,
)
from training.scenes.shapes import make_scene
from training.scenes.splits import SceneMaker, generate_split

__all__ = [
    "COLORS",
    "SHAPES",
    "SHAPE_PLURALS",
    "Lexicon",
    "SceneMaker",
    "caption_vocabulary",
    "captions_for",
    "generate_split",
    "make_scene",
    "possible_captions",
]
