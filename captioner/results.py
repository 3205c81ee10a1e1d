"""CaptionResult: a caption for one image, with where the decoder looked for each word."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from captioner.pointing import ATTENTION


# repr=False: the generated repr would print every array in full, thousands of lines for one
# result with its beams; __repr__ below gives what a person printing a result wants to see.
@dataclass(repr=False)
class CaptionResult:
    """A caption for one image, with where the decoder looked and what its cell did per word."""

    text: str
    tokens: list[str]  # no special tokens
    score: float  # log_prob, divided by the length penalty when one is asked for
    log_prob: float
    alphas: np.ndarray  # (len(tokens), grid_h, grid_w); each map sums to 1
    context_gate: np.ndarray  # (len(tokens),) the attention gate beta
    gates: dict[str, np.ndarray] = field(default_factory=dict)  # LSTM: input/forget/output/cell
    # (len(tokens),) the copy gate: each word's probability of being copied from the image
    # (its noun read where alphas look), for models that copy nouns; None for others.
    copy_gate: np.ndarray | None = None
    beams: list[CaptionResult] = field(default_factory=list)  # all hypotheses, best first
    source: str | None = None  # the path, or a description of an in-memory image
    error: str | None = None  # set instead of a caption when the image could not be used
    # The map each word shows (len(tokens), grid_h, grid_w), each summing to 1, and its kind
    # (captioner/pointing.py): "read" for a copied noun, where the noun was read (the posterior
    # over cells, which alphas, the attention before the word was chosen, is the prior of);
    # "attention" for other words, their alphas as they are. Without them: alphas, "attention".
    maps: np.ndarray | None = None
    map_kinds: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.maps is None:
            self.maps = self.alphas
        if not self.map_kinds:
            self.map_kinds = [ATTENTION] * len(self.tokens)

    def __repr__(self) -> str:
        if self.error is not None:
            return f"CaptionResult(source={self.source!r}, error={self.error!r})"
        shapes = ", ".join(
            f"{name}={tuple(array.shape)}"
            for name, array in [
                ("alphas", self.alphas),
                ("context_gate", self.context_gate),
                *sorted(self.gates.items()),
                ("copy_gate", self.copy_gate),
            ]
            if array is not None
        )
        return (
            f"CaptionResult(text={self.text!r}, score={self.score:.4f}, source={self.source!r}, "
            f"{shapes}, beams={len(self.beams)})"
        )

    @classmethod
    def failed(cls, source: str, error: str) -> CaptionResult:
        return cls(
            "",
            [],
            float("-inf"),
            float("-inf"),
            np.zeros((0, 0, 0)),
            np.zeros(0),
            source=source,
            error=error,
        )
