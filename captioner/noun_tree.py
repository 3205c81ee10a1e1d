"""Hedging: say the most specific noun the model is sure of ("an animal", not "a jaguar").

Deng, Krause, Berg and Fei-Fei, "Hedging Your Bets" (CVPR 2012): on a tree of classes a node's
probability is the sum of its leaves', and the answer is the most specific node whose probability
reaches a confidence c. The copy path (copy_head.py) does that in each grid cell: the tree
(captioner/data/noun_tree.tsv, built from WordNet 3.0 by scripts/build_noun_tree.py) hangs the
noun table's nouns under everyday hypernyms (jaguar < cat < animal, cup < container), and where a
cell's top noun is below c but a node above it reaches c, the node's whole subtree mass moves to
the node's noun; a photo none of whose cells is sure of anything says the root, "a photo"
(Deng et al.'s root, whose probability is always 1, for the whole photo). The decoder then
reads the hedged cells as it reads nouns: when the mass splits between jaguar, leopard and
cheetah, the caption says "an animal", with the probability of the three together. Hedging each
cell, not the attended mixture, keeps a cell that is sure of its noun from being blurred by the
background around it (measured: docs/guides/hedging.md).

A hypernym the model has no word for ("animal") gets a word id past the model's vocabulary (and
past taught words'), as taught words do (taught.py). docs/guides/hedging.md has the calibration.
"""

from __future__ import annotations

import csv
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

TREE_FILE = "noun_tree.tsv"  # a model directory's own tree, if it has one
TREE_PATH = Path(__file__).parent / "data" / TREE_FILE
# The hedging confidence of a loaded model (Captioner.set_hedging changes it): the calibration
# on composites and held-out labelled photos is in docs/guides/hedging.md.
DEFAULT_CONFIDENCE = 0.7
# What a caption names when the model is sure of nothing below it: "a photo".
ROOT = "photo"
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

    def without(self, words: Collection[str]) -> NounTree:
        """The tree less these nodes; their children hang from the nearest node above."""
        kept = [i for i, node in enumerate(self.nodes) if node not in words]
        index = {old: new for new, old in enumerate(kept)}

        def parent(i: int) -> int:
            i = self.parents[i]
            while i >= 0 and i not in index:
                i = self.parents[i]
            return index.get(i, -1)

        return NounTree(tuple(self.nodes[i] for i in kept), tuple(parent(i) for i in kept))

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
    # What the decoder reads after saying a hypernym: the mean of its nouns' input embeddings,
    # the nearest thing it knows (as for taught words).
    embedding: torch.Tensor | None = None  # (embed_dim,)
    root: bool = False  # the last word is the root ("photo"), above every noun

    @classmethod
    def build(
        cls,
        tree: NounTree,
        nouns: Sequence[str],
        confidence: float,
        embedding: torch.Tensor | None = None,
        known: Collection[str] = (),
        root: str | None = None,
    ) -> Hedge:
        """nouns: the copy path's table nouns in column order (a taught word is beside
        them, under nothing). embedding: (embed_dim,) what a hypernym reads as. known: the
        words the model says already (its vocabulary, taught words): a hypernym among them,
        or whose plural is, is left out, and the nouns below it hang from the next one up.
        root: a word above everything ("photo"), Deng et al.'s root, whose probability is 1:
        where no node below it reaches the confidence the caption says it ("a photo")."""
        from captioner.nouns import pluralize  # light, but only needed here

        if not 0.0 < confidence <= 1.0:
            raise ValueError(f"a hedging confidence is in (0, 1], not {confidence}")
        known = set(known) - set(nouns)
        tree = tree.without(
            {n for n in tree.nodes if n in known or (n not in nouns and pluralize(n) in known)}
        )
        column = {noun: i for i, noun in enumerate(nouns)}
        # Hypernyms above one of these nouns: a node with none under it could never be said.
        above = {a for noun in nouns if noun in tree.nodes for a in tree.ancestors(noun)}
        words = tuple(node for node in tree.nodes if node in above and node not in column)
        column.update({word: len(nouns) + i for i, word in enumerate(words)})
        under = torch.zeros(len(nouns), len(column))
        for i, noun in enumerate(nouns):
            under[i, i] = 1.0
            if noun in tree.nodes:
                for ancestor in tree.ancestors(noun):
                    under[i, column[ancestor]] = 1.0
        plurals = tuple(word if word in MASS_NOUNS else pluralize(word) for word in words)
        has_root = root is not None and root not in column
        if has_root:  # the last column; no plural: a photo is one
            words, plurals = (*words, root), (*plurals, root)
            under = torch.cat([under, torch.ones(len(nouns), 1)], 1)
        return cls(words, under, under.sum(0), confidence, plurals, embedding, has_root)

    @property
    def new_words(self) -> list[str]:
        """The words the hypernyms add, in the order of their ids: every singular, then the
        plurals of all but the mass nouns."""
        return [*self.words, *(p for w, p in zip(self.words, self.plurals, strict=True) if p != w)]

    @property
    def id_count(self) -> int:
        """How many word ids the hypernyms take."""
        return len(self.new_words)

    def word_ids(self, base: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(words,) singular and plural ids of the hypernyms when their ids start at base
        (the model's vocab_size, or past the taught words')."""
        singular = torch.arange(base, base + len(self.words))
        plural, next_id = singular.clone(), base + len(self.words)
        for i, (word, plural_word) in enumerate(zip(self.words, self.plurals, strict=True)):
            if plural_word != word:
                plural[i], next_id = next_id, next_id + 1
        return singular.to(self.under.device), plural.to(self.under.device)

    def embed(self, words: torch.Tensor, base: int, inner) -> torch.Tensor:
        """(rows,) word ids -> (rows, embed_dim): ids from base on are hypernyms, the rest
        what `inner` (the model's embedding, or the taught words') gives."""
        new = words >= base
        embedded = inner(words.masked_fill(new, 0))  # (rows, embed_dim)
        if self.embedding is None or not bool(new.any()):
            return embedded
        return torch.where(new.unsqueeze(-1), self.embedding.to(embedded.dtype), embedded)

    def to(self, device: torch.device | str) -> Hedge:
        embedding = self.embedding.to(device) if self.embedding is not None else None
        return Hedge(
            self.words,
            self.under.to(device),
            self.size.to(device),
            self.confidence,
            self.plurals,
            embedding,
            self.root,
        )

    def cells(self, noun_probs: torch.Tensor) -> torch.Tensor:
        """(batch, num_pixels, copy_nouns) each cell's noun distribution -> (batch, num_pixels,
        copy_nouns + hypernyms): each cell hedged (`__call__`), and a photo none of whose
        cells is sure of anything below the root says the root ("a photo") everywhere."""
        hedged = self(noun_probs.flatten(0, 1)).view(*noun_probs.shape[:2], -1)
        if not self.root:
            return hedged
        sure = hedged[..., :-1].amax(-1) >= self.confidence  # (batch, num_pixels)
        lost = ~sure.any(-1)  # (batch,)
        photo = torch.zeros_like(hedged[0, 0])
        photo[-1] = 1.0
        return torch.where(lost[:, None, None], photo, hedged)

    def __call__(self, copy: torch.Tensor) -> torch.Tensor:
        """(rows, copy_nouns) attended copy distribution -> (rows, copy_nouns + hypernyms):
        where the top noun is below the confidence and a node above it reaches it, the most
        specific such node (fewest nouns under it) takes its subtree's whole mass; elsewhere
        nothing moves. Columns past the tree's nouns (taught words) stay as they are."""
        taught = copy[:, self.under.shape[0] :]  # (rows, taught words)
        copy = copy[:, : self.under.shape[0]]
        result = torch.cat([copy, copy.new_zeros(len(copy), len(self.words))], -1)
        # Only a row whose top word is below the confidence can hedge: the others keep their
        # distribution, and on a photo most cells are sure of their noun.
        top = torch.cat([copy, taught], -1).amax(-1)  # (rows,)
        unsure = (top < self.confidence).nonzero().squeeze(1)  # (unsure rows,)
        if len(unsure):
            result[unsure] = self._hedge_rows(copy[unsure])
        # Columns: the table's nouns, the taught words, the hypernyms (as the ids are laid).
        nouns = result[:, : copy.shape[1]]
        return torch.cat([nouns, taught, result[:, copy.shape[1] :]], -1)

    @cached_property
    def _nouns_under(self) -> torch.Tensor:
        """(nodes, copy_nouns) bool: the nouns under each node, a row per node (gathered by
        row, at a fifth of the time of gathering columns of `under`)."""
        return self.under.T.contiguous().bool()

    def _hedge_rows(self, copy: torch.Tensor) -> torch.Tensor:
        """(rows, copy_nouns) distributions none of whose words is sure -> (rows, copy_nouns +
        hypernyms): the most specific sure node takes its subtree's mass; a row where no node
        is sure keeps its distribution."""
        nodes = copy @ self.under  # (rows, nodes) each node's probability: its subtree's sum
        sure = nodes >= self.confidence
        if self.root:  # the root is for the whole photo (cells), not one row
            sure[:, -1] = False
        specificity = torch.where(sure, self.size, torch.inf)  # (rows, nodes)
        chosen = specificity.argmin(-1)  # (rows,)
        hedged = sure.any(-1)  # (rows,)
        moved = self._nouns_under[chosen] & hedged.unsqueeze(-1)  # (rows, copy_nouns) it moves
        kept = copy.masked_fill(moved, 0.0)
        result = torch.cat([kept, kept.new_zeros(len(copy), len(self.words))], -1)
        gathered = nodes.gather(1, chosen.unsqueeze(-1)) * hedged.unsqueeze(-1)  # (rows, 1)
        return result.scatter_add(1, chosen.unsqueeze(-1), gathered)


def model_tree(model_dir: str | Path | None, nouns: Sequence[str]) -> NounTree | None:
    """The tree a copy model with these nouns hedges with: its directory's own noun_tree.tsv,
    which must cover them, else the shipped one when it covers them (the shipped models'),
    else None: a model with nouns of its own (an imported or Hub model) works as before.
    NounTreeError, naming the file, for a tree file that is broken."""
    own = Path(model_dir) / TREE_FILE if model_dir is not None else None
    if own is not None and own.is_file():
        return NounTree.load(own, nouns)
    shipped = NounTree.load(TREE_PATH)
    return shipped if set(nouns) <= set(shipped.nodes) else None
