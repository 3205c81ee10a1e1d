"""Everyday caption nouns for the encoder's ImageNet classes, and their articles and plurals.

The table (captioner/data/imagenet_nouns.tsv, written by scripts/build_noun_table.py) maps each
of Lite0's 1,000 ImageNet classes, in class-index order, to a lower-case noun and its plural,
or leaves it out ("-"). People: ImageNet has no "person" class, so its three person classes
and the garments it photographs being worn (suit, uniform, gown, ...) map to "person".

Some nouns are two words ("teddy bear", "traffic light"): captioner.vocab.tokenize splits them
into two tokens, so whatever writes a noun into a caption writes every word of it. Hyphenated
nouns ("go-kart") stay one token. A few nouns are plural-only ("sunglasses", "binoculars"):
their plural is the noun itself.

torch is imported only by the methods that return tensors, so light code can read the table.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

NOUN_TABLE_PATH = Path(__file__).parent / "data" / "imagenet_nouns.tsv"
NUM_CLASSES = 1000
LEFT_OUT = "-"

# How class probabilities become noun probabilities. "sum" adds a noun's classes, so nouns
# with many classes (122 for dog) win whenever the head is unsure; "sqrt" and "mean" divide the
# sum by the square root or the number of the noun's classes, then scale all nouns back to the
# mapped classes' total; "max" takes each noun's most probable class, scaled the same way.
# DEFAULT_WEIGHTING named the most subjects with the head alone on the 48-photo real-photo
# development set (python -m training.real_photos --head-only; pooled / best cell): sqrt 65/65%,
# sum 62/62%, mean 58/65%, max 62/62%.
WEIGHTINGS = ("sum", "sqrt", "mean", "max")
DEFAULT_WEIGHTING = "sqrt"

# Spelling says vowel or consonant, except for these word beginnings.
_VOWEL_SOUND_CONSONANTS = ("hour", "honest", "honor", "honour", "heir")
_CONSONANT_SOUND_VOWELS = ("uni", "use", "usu", "uti", "ute", "eu", "ewe", "one", "once", "uk")


# Plurals the suffix rules get wrong (and mass or plural-only nouns that keep their form).
IRREGULAR_PLURALS = {
    "person": "people",
    "man": "men",
    "woman": "women",
    "child": "children",
    "mouse": "mice",
    "goose": "geese",
    "sheep": "sheep",
    "bison": "bison",
    "moose": "moose",
    "deer": "deer",
    "buffalo": "buffaloes",
    "potato": "potatoes",
    "tomato": "tomatoes",
    "volcano": "volcanoes",
    "wolf": "wolves",
    "knife": "knives",
    "leaf": "leaves",
    "shelf": "shelves",
    "broccoli": "broccoli",
    "corn": "corn",
    "hay": "hay",
    "dough": "dough",
    "yarn": "yarn",
    "armor": "armor",
    "bread": "bread",
    "guacamole": "guacamole",
    "pasta": "pasta",
    "paper": "paper",
    "meatloaf": "meatloaves",
    "binoculars": "binoculars",
    "sunglasses": "sunglasses",
    "scissors": "scissors",
}


def pluralize(noun: str) -> str:
    """English plural of a noun or noun phrase (its last word): "teddy bear" -> "teddy bears".

    Suffix rules plus IRREGULAR_PLURALS; scripts/build_noun_table.py writes the table's plurals
    with it, so NounTable.plural_of gives the same answer for the table's nouns.
    """
    *head, last = noun.split(" ")
    if last in IRREGULAR_PLURALS:
        last = IRREGULAR_PLURALS[last]
    elif last.endswith("fish"):
        pass
    elif last.endswith(("s", "x", "z", "ch", "sh")):
        last += "es"
    elif last.endswith("y") and last[-2:-1] not in ("a", "e", "i", "o", "u"):
        last = last[:-1] + "ies"
    else:
        last += "s"
    return " ".join([*head, last])


def indefinite_article(phrase: str) -> str:
    """ "a" or "an" for a phrase, by the sound of its first word: "an apple", "a unicorn",
    "an hour", "a one-way street", "an umbrella"."""
    word = phrase.strip().lower()
    if word.startswith(_VOWEL_SOUND_CONSONANTS):
        return "an"
    if word.startswith(_CONSONANT_SOUND_VOWELS):
        return "a"
    return "an" if word[:1] in ("a", "e", "i", "o", "u") else "a"


@dataclass(frozen=True)
class NounTable:
    """Distinct nouns (sorted), their plurals (same order), and each class's noun index or -1."""

    nouns: tuple[str, ...]
    plurals: tuple[str, ...]
    class_noun: tuple[int, ...]

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> NounTable:
        """The table in `path`, by default the one shipped in the package."""
        path = Path(path) if path is not None else NOUN_TABLE_PATH
        with path.open(newline="", encoding="utf-8") as file:
            rows = list(csv.DictReader(file, delimiter="\t", quoting=csv.QUOTE_NONE))
        if [int(row["index"]) for row in rows] != list(range(NUM_CLASSES)):
            raise ValueError(f"{path}: expected rows for classes 0..{NUM_CLASSES - 1} in order")
        plural_of = {row["noun"]: row["plural"] for row in rows if row["noun"] != LEFT_OUT}
        nouns = tuple(sorted(plural_of))
        index_of = {noun: i for i, noun in enumerate(nouns)}
        return cls(
            nouns=nouns,
            plurals=tuple(plural_of[noun] for noun in nouns),
            class_noun=tuple(index_of.get(row["noun"], -1) for row in rows),
        )

    def plural_of(self, noun: str) -> str:
        """The table's plural of a noun ("person" -> "people"); KeyError if it is not one."""
        return self.plurals[self.nouns.index(noun)]

    def classes_per_noun(self) -> list[int]:
        counts = [0] * len(self.nouns)
        for noun in self.class_noun:
            if noun >= 0:
                counts[noun] += 1
        return counts

    def class_to_noun_matrix(self, weighting: str = "sum") -> torch.Tensor:
        """(1000, num_nouns): class probabilities @ matrix = unnormalised noun scores.

        Each class's row holds its noun's weight: 1 ("sum"), 1/sqrt(classes) ("sqrt"),
        1/classes ("mean"). noun_probabilities scales the scores into probabilities.
        """
        import torch

        counts = torch.tensor(self.classes_per_noun(), dtype=torch.float32).clamp(min=1)
        weight = {"sum": torch.ones_like(counts), "sqrt": counts.rsqrt(), "mean": 1 / counts}
        if weighting not in weight:
            raise ValueError(f"weighting {weighting!r}: a matrix exists for {sorted(weight)}")
        matrix = torch.zeros(NUM_CLASSES, len(self.nouns))
        classes = torch.tensor([c for c, n in enumerate(self.class_noun) if n >= 0])
        nouns = torch.tensor([n for n in self.class_noun if n >= 0])
        matrix[classes, nouns] = weight[weighting][nouns]
        return matrix

    def noun_probabilities(
        self, class_probs: torch.Tensor, weighting: str = DEFAULT_WEIGHTING
    ) -> torch.Tensor:
        """(..., 1000) class probabilities -> (..., num_nouns) noun probabilities.

        Every weighting gives the nouns, together, the probability of the mapped classes (the
        left-out classes' share is nobody's), so each row sums to at most 1; only "sum" gives
        each noun exactly its classes' total.
        """
        import torch

        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting {weighting!r}: choose one of {', '.join(WEIGHTINGS)}")
        mapped = torch.tensor(self.class_noun, device=class_probs.device) >= 0
        if weighting == "max":
            nouns = torch.tensor(self.class_noun, device=class_probs.device).clamp(min=0)
            scores = class_probs.new_zeros(*class_probs.shape[:-1], len(self.nouns))
            index = nouns.expand_as(class_probs)
            scores = scores.scatter_reduce(-1, index, class_probs * mapped, "amax")
        else:
            matrix = self.class_to_noun_matrix(weighting).to(class_probs)
            scores = class_probs @ matrix
            if weighting == "sum":
                return scores
        mapped_mass = (class_probs * mapped).sum(-1, keepdim=True)
        return scores / scores.sum(-1, keepdim=True).clamp(min=1e-12) * mapped_mass
