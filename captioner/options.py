"""How a caption is searched for: the one set of decoding options, its defaults and limits.

The API, the batch command, `captioner-evaluate`, training's validation and the app all take a
DecodeOptions, so a default or a limit changes here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class DecodeOptions:
    """What beam search needs besides the features; a changed value means re-decoding only."""

    beam_size: int = 5
    max_length: int = 20  # most words in a caption
    length_penalty: float = 0.0  # GNMT alpha; above 0 favours longer captions
    no_repeat_ngram_size: int = 0  # 0: off; n: no n-gram twice in a caption
    consensus_samples: int = 0  # 0: off; k: rank the beams by agreement with k sampled captions
    name_things: int = 0  # 0: off; n: a copy model's caption names n of the things it is sure of

    # Inclusive (lowest, highest) of each option. Beyond 10, GNMT's ((5 + length) / 6) ** alpha
    # overflows; the others bound memory and time to what a caption can use.
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        "beam_size": (1, 50),
        "max_length": (1, 200),
        "length_penalty": (-10.0, 10.0),
        "no_repeat_ngram_size": (0, 10),
        "consensus_samples": (0, 100),
        "name_things": (0, 2),
    }
    HELP: ClassVar[dict[str, str]] = {
        "beam_size": "captions searched side by side; 1 is greedy decoding",
        "max_length": "most words in a caption",
        "length_penalty": "GNMT alpha; above 0 favours longer captions, below 0 shorter ones",
        "no_repeat_ngram_size": "never repeat an n-gram of this many words (0: off)",
        "consensus_samples": "rank the beams by agreement with this many captions sampled "
        "from the model, to prefer its usual description (30 is plenty; 0: off)",
        "name_things": "a copy model's caption ends only once it names this many of the things "
        "it is sure of, the largest first ('a dog and a bicycle'); on photos it adds false "
        "nouns (0: off)",
    }

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            low, high = self.LIMITS[field.name]
            if field.type == "int" and not (is_number(value) and float(value).is_integer()):
                raise ValueError(f"{field.name} must be a whole number, got {value!r}")
            if not is_number(value) or math.isnan(value) or not low <= value <= high:
                raise ValueError(f"{field.name} must be from {low:g} to {high:g}, got {value!r}")

    @classmethod
    def clamped(cls, **values: Any) -> DecodeOptions:
        """Options from values read back from somewhere lenient (the app's settings file): each
        one clamped to its limits, and the default where a value is missing or not a number."""
        kept = {}
        for field in dataclasses.fields(cls):
            if field.name not in values:
                continue
            low, high = cls.LIMITS[field.name]
            convert = int if field.type == "int" else float
            try:
                value = convert(float(values[field.name]))
            except (TypeError, ValueError, OverflowError):
                continue
            if math.isnan(value):
                continue
            kept[field.name] = min(max(value, convert(low)), convert(high))
        return cls(**kept)


def is_number(value: object) -> bool:
    """An int or a float, not a bool (which Python counts as an int)."""
    return isinstance(value, int | float) and not isinstance(value, bool)
