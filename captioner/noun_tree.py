"""Hedging: say the most specific noun the model is sure of ("an animal", not "a jaguar").

Deng, Krause, Berg and Fei-Fei, "Hedging Your Bets" (CVPR 2012): on a tree of classes a node's
probability is the sum of its leaves', and the answer is the most specific node whose probability
reaches a confidence c. The copy path (copy_head.py) does that on the nouns it copies: the tree
(captioner/data/noun_tree.tsv, built from WordNet 3.0 by scripts/build_noun_tree.py) hangs the
noun table's nouns under everyday hypernyms (jaguar < cat < animal, cup < container), and at each
word, when the attended copy distribution's top noun is below c but a node above it reaches c,
the node's whole subtree mass moves to the node's noun. When the mass splits between jaguar,
leopard and cheetah the caption says "an animal", with the probability of the three together.

A hypernym the model has no word for ("animal") gets a word id past the model's vocabulary (and
past taught words'), as taught words do (taught.py). docs/guides/hedging.md has the calibration.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

TREE_PATH = Path(__file__).parent / "data" / "noun_tree.tsv"
# The hedging confidence of a loaded model (Captioner.set_hedging changes it): the calibration
# on composites and held-out labelled photos is in docs/guides/hedging.md.
DEFAULT_CONFIDENCE = 0.5
# Hypernyms without a plural of their own: "two pieces of furniture" is beyond the grammar, so
# the copy path says the singular for both.
MASS_NOUNS = frozenset({"clothing", "furniture", "food"})


class NounTreeError(ValueError):
    """The noun tree file is not a tree over the model's nouns; the message names the file."""


@dataclass(frozen=True)
class NounTree:
    """Nouns and their parents: parents[i] indexes nodes, -1 for a root."""

    nodes: tuple[str, ...]
    parents: tuple[int, ...]

    @classmethod
    def load(cls, path: str | Path = TREE_PATH, nouns: Sequence[str] | None = None) -> NounTree:
        """Read and check a tree file: a header `noun<TAB>parent`, then one row per noun,
        parent "-" for a root. With `nouns` (the copy path's), every one of them must be in
        the tree, and every other row must be a hypernym of one. NounTreeError otherwise."""
        path = Path(path)
        try:
            with path.open(encoding="utf-8", newline="") as file:
                rows = list(csv.reader(file, delimiter="\t"))
        except (OSError, UnicodeDecodeError) as error:
            raise NounTreeError(f"{path}: cannot read the noun tree ({error})") from error
        if not rows or rows[0] != ["noun", "parent"]:
            raise NounTreeError(f"{path}: a noun tree starts with the header 'noun<TAB>parent'")
        parent_of: dict[str, str | None] = {}
        for line, row in enumerate(rows[1:], start=2):
            if len(row) != 2 or not row[0]:
                raise NounTreeError(f"{path}, line {line}: expected 'noun<TAB>parent'")
            if row[0] in parent_of:
                raise NounTreeError(f"{path}, line {line}: {row[0]!r} is listed twice")
            parent_of[row[0]] = None if row[1] == "-" else row[1]
        for noun, parent in parent_of.items():
            if parent is not None and parent not in parent_of:
                raise NounTreeError(f"{path}: {noun!r} has the parent {parent!r}, which is no row")
        for noun in parent_of:
            seen, node = [noun], parent_of[noun]
            while node is not None:
                if node in seen:
                    circle = " -> ".join([*seen[seen.index(node) :], node])
                    raise NounTreeError(f"{path}: the parents go round a circle: {circle}")
                seen.append(node)
                node = parent_of[node]
        if nouns is not None:
            missing = [noun for noun in nouns if noun not in parent_of]
            if missing:
                raise NounTreeError(
                    f"{path}: the model's nouns {', '.join(map(repr, missing[:5]))} are not in "
                    f"the tree ({len(missing)} missing)"
                )
            hypernyms = {parent for parent in parent_of.values() if parent is not None}
            unknown = [n for n in parent_of if n not in set(nouns) and n not in hypernyms]
            if unknown:
                raise NounTreeError(
                    f"{path}: {', '.join(map(repr, unknown[:5]))} is no noun of the model and "
                    "no hypernym of one"
                )
        nodes = tuple(parent_of)
        index = {node: i for i, node in enumerate(nodes)}
        parents = tuple(-1 if p is None else index[p] for p in parent_of.values())
        return cls(nodes, parents)

    def ancestors(self, noun: str) -> list[str]:
        """The noun's parent, grandparent, ... up to its root."""
        found, i = [], self.parents[self.nodes.index(noun)]
        while i >= 0:
            found.append(self.nodes[i])
            i = self.parents[i]
        return found


@dataclass(frozen=True)
class Hedge:
    """The tree as the copy head reads it, over its copy nouns (the table's, then taught
    words'): nodes are those nouns in order, then the hypernyms that are none of them."""

    words: tuple[str, ...]  # the hypernyms that are no copy noun: their own columns
    under: torch.Tensor  # (copy_nouns, nodes) 1 where the node is the noun or above it
    size: torch.Tensor  # (nodes,) copy nouns under each node, itself included
    confidence: float
    plurals: tuple[str, ...]  # each word's plural ("clothing" stays "clothing")

    @classmethod
    def build(cls, tree: NounTree, nouns: Sequence[str], confidence: float) -> Hedge:
        """nouns: the copy nouns in column order. A noun not in the tree (a taught word)
        is a node of its own, under nothing."""
        from captioner.nouns import pluralize  # light, but only needed here

        if not 0.0 < confidence <= 1.0:
            raise ValueError(f"a hedging confidence is in (0, 1], not {confidence}")
        column = {noun: i for i, noun in enumerate(nouns)}
        words = tuple(node for node in tree.nodes if node not in column)
        column.update({word: len(nouns) + i for i, word in enumerate(words)})
        under = torch.zeros(len(nouns), len(column))
        for i, noun in enumerate(nouns):
            under[i, i] = 1.0
            if noun in tree.nodes:
                for ancestor in tree.ancestors(noun):
                    under[i, column[ancestor]] = 1.0
        plurals = tuple(word if word in MASS_NOUNS else pluralize(word) for word in words)
        return cls(words, under, under.sum(0), confidence, plurals)

    def to(self, device: torch.device | str) -> Hedge:
        return Hedge(
            self.words, self.under.to(device), self.size.to(device), self.confidence, self.plurals
        )

    def __call__(self, copy: torch.Tensor) -> torch.Tensor:
        """(rows, copy_nouns) attended copy distribution -> (rows, nodes): where the top noun
        is below the confidence and a node above it reaches it, the most specific such node
        (fewest nouns under it) takes its subtree's whole mass; elsewhere nothing moves."""
        nodes = copy @ self.under  # (rows, nodes) each node's probability: its subtree's sum
        sure = nodes >= self.confidence
        # The most specific sure node; a row where none is sure keeps its distribution.
        specificity = torch.where(sure, self.size, torch.inf)  # (rows, nodes)
        chosen = specificity.argmin(-1)  # (rows,)
        hedged = sure.any(-1) & (copy.amax(-1) < self.confidence)  # (rows,)
        moved = self.under[:, chosen].T * hedged.unsqueeze(-1)  # (rows, copy_nouns) 1: it moves
        result = torch.cat([copy, copy.new_zeros(len(copy), len(self.words))], -1)
        result[:, : copy.shape[1]] = copy * (1.0 - moved)
        gathered = nodes.gather(1, chosen.unsqueeze(-1)) * hedged.unsqueeze(-1)  # (rows, 1)
        return result.scatter_add(1, chosen.unsqueeze(-1), gathered)
