"""The copy head: say a noun by pointing at the image, not by remembering the word.

As the pointer-generator of See et al. 2017 copies from its source (and LSTM-P and Neural Baby
Talk name novel objects), the encoder's ImageNet classifier runs on every grid cell, a fixed
class -> noun matrix turns each cell's class probabilities into noun probabilities, and at each
word a learned gate g mixes the vocabulary's distribution with the noun distribution of the cells
the decoder attends to:

    p(w) = (1 - g) p_vocab(w) + g p_copy(w)

The table's nouns (and their plurals) are masked out of p_vocab, so they are said only by copying
("forced copy"): a vocabulary path learned from a few training images does not transfer to
photos, the ImageNet head does. A second switch picks the singular or the plural.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from captioner.noun_tree import Hedge
    from captioner.taught import TaughtNouns

# Share of each cell's noun distribution spread evenly over all nouns. Without it a noun that
# the ImageNet head gives no probability anywhere (float32 rounds e^-120 to 0) would have a
# log-probability of -inf, an infinite training loss; with it every noun keeps at least
# COPY_SMOOTHING / copy_nouns of the copy path.
COPY_SMOOTHING = 1e-4


class CopyMemory(NamedTuple):
    """Per image, what the copy head reads at every step: the copy fields of ImageMemory."""

    # Each cell's distribution over the copyable nouns (renormalised over the classes the noun
    # table names, and smoothed), and the share of the cell's class probability that those
    # classes hold: low on background.
    noun_probs: torch.Tensor  # (batch, num_pixels, copy_nouns), rows sum to 1
    noun_mass: torch.Tensor  # (batch, num_pixels)
    # The distinct word ids the copy path says, and which of them each noun's singular and
    # plural is: a noun whose plural is its singular ("sheep") names one word twice.
    copy_words: torch.Tensor  # (distinct words,)
    copy_slots: torch.Tensor  # (2 * copy_nouns,) indices into copy_words
    # Words taught from the caption library (taught.py), copied as further nouns: then
    # copy_nouns above counts them too, and word ids reach taught.word_count.
    taught: TaughtNouns | None = None
    # Hedging (noun_tree.py): the hypernyms the copy path may say instead of an unsure noun,
    # their word ids from hedge_base on (past the vocabulary's and the taught words').
    hedge: Hedge | None = None
    hedge_base: int | None = None

    @property
    def word_count(self) -> int | None:
        """The number of word ids a step scores when words are taught or hypernyms can be
        said, else None: then it is the model's vocab_size."""
        if self.hedge is not None:
            return self.hedge_base + self.hedge.id_count
        return self.taught.word_count if self.taught is not None else None


class CopyHead(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        encoder_dim: int,
        decoder_dim: int,
        classes: int,
        nouns: int,
        free_nouns: Sequence[int] = (),
    ) -> None:
        super().__init__()
        self.vocab_size, self.encoder_dim = vocab_size, encoder_dim
        self.classes, self.nouns = classes, nouns
        # The gate reads the state and how much of the attended cells the table names.
        self.copy_gate = nn.Linear(decoder_dim + 1, 1)
        self.plural_switch = nn.Linear(decoder_dim, 1)
        # Frozen, and saved with the weights so a model directory is self-contained.
        self.register_buffer("noun_head_weight", torch.zeros(classes, encoder_dim))
        self.register_buffer("noun_head_bias", torch.zeros(classes))
        self.register_buffer("class_to_noun", torch.zeros(classes, nouns))
        self.register_buffer("noun_singular_ids", torch.zeros(nouns, dtype=torch.long))
        self.register_buffer("noun_plural_ids", torch.zeros(nouns, dtype=torch.long))
        # Word ids of table nouns the vocabulary path may say too (a learned model's, see
        # DecoderConfig.free_nouns): from the config, so not saved with the weights.
        free = torch.tensor(list(free_nouns), dtype=torch.long)
        self.register_buffer("free_nouns", free, persistent=False)
        # class_to_noun as _class_nouns gives it, and the buffer's (version, device) it was
        # derived from: attach, load_state_dict and .to() all change one of them.
        self._derived: tuple[tuple, tuple[torch.Tensor, torch.Tensor]] | None = None

    @torch.no_grad()
    def attach(
        self,
        head_weight: torch.Tensor,
        head_bias: torch.Tensor,
        class_to_noun: torch.Tensor,
        singular_ids: torch.Tensor,
        plural_ids: torch.Tensor,
    ) -> None:
        """Set what the head reads; see Decoder.attach_noun_head."""
        if head_weight.ndim == 2 and head_weight.shape[1] != self.encoder_dim:
            raise ValueError(
                f"the ImageNet classifier reads {head_weight.shape[1]} features per cell, but "
                f"the decoder's encoder_dim is {self.encoder_dim}: the copy mechanism needs the "
                "features the classifier was trained on (Lite0: feature_stride 32, 1280 features)"
            )
        expected = {
            "head_weight": (head_weight, (self.classes, self.encoder_dim)),
            "head_bias": (head_bias, (self.classes,)),
            "class_to_noun": (class_to_noun, (self.classes, self.nouns)),
            "singular_ids": (singular_ids, (self.nouns,)),
            "plural_ids": (plural_ids, (self.nouns,)),
        }
        for name, (tensor, shape) in expected.items():
            if tuple(tensor.shape) != shape:
                raise ValueError(
                    f"{name} has shape {list(tensor.shape)}; copy_classes {self.classes}, "
                    f"copy_nouns {self.nouns} and encoder_dim {self.encoder_dim} need {list(shape)}"
                )
        if not (torch.isfinite(class_to_noun).all() and (class_to_noun >= 0).all()):
            raise ValueError("class_to_noun must hold finite, non-negative weights")
        for name in ("singular_ids", "plural_ids"):
            ids = expected[name][0]
            if ids.is_floating_point() or not ((ids >= 0) & (ids < self.vocab_size)).all():
                raise ValueError(f"{name} must be word ids below vocab_size {self.vocab_size}")
        self.noun_head_weight.copy_(head_weight)
        self.noun_head_bias.copy_(head_bias)
        self.class_to_noun.copy_(class_to_noun)
        self.noun_singular_ids.copy_(singular_ids)
        self.noun_plural_ids.copy_(plural_ids)

    def class_log_probs(self, features: torch.Tensor) -> torch.Tensor:
        """(..., encoder_dim) raw encoder features -> (..., copy_classes): each cell as the
        ImageNet classifier sees it. Computed once per photo (Decoder.prepare, or the encoder's
        ONNX graph): the copy memory and the semantic features both read it."""
        with _full_precision(features):
            classes = F.linear(features.float(), self.noun_head_weight, self.noun_head_bias)
            return classes.log_softmax(-1)

    def prepare(
        self,
        features: torch.Tensor,
        taught: TaughtNouns | None = None,
        class_log_probs: torch.Tensor | None = None,
        hedge: Hedge | None = None,
    ) -> CopyMemory:
        """(batch, grid_h, grid_w, encoder_dim) raw encoder features -> the per-image memory
        `forward` reads. The classifier reads the features it was trained on: before layer
        normalisation and coordinates. taught: words to copy beside the table's nouns;
        class_log_probs: `class_log_probs(features)`, when the caller has them already;
        hedge: the noun tree, to say a hypernym where the nouns under it split the mass."""
        if class_log_probs is None:
            class_log_probs = self.class_log_probs(features)
        with _full_precision(features):
            classes = class_log_probs.flatten(1, 2).float().exp()  # (batch, num_pixels, classes)
            nouns, mass = self._noun_probs(classes)
            # p_copy is renormalised over the classes the table names, so it stays a
            # distribution; the share those classes hold (low where the head sees background,
            # or a class the table leaves out as too vague) tells the gate how noun-like the
            # cells it looks at are, whatever the matrix's weighting.
            total = nouns.sum(-1, keepdim=True)
            nouns = nouns / total.clamp_min(torch.finfo(nouns.dtype).tiny)
            singular, plural = self.noun_singular_ids, self.noun_plural_ids
            if taught is not None:
                cells = features.flatten(1, 2).float()  # (batch, num_pixels, encoder_dim)
                nouns, mass = _with_taught(nouns, mass, taught.cell_probs(cells))
                singular = torch.cat([singular, taught.singular_ids])
                plural = torch.cat([plural, taught.plural_ids])
            smoothed = nouns * (1.0 - COPY_SMOOTHING) + COPY_SMOOTHING / nouns.shape[-1]
            if hedge is not None:  # each cell names the most specific thing it is sure of
                hedged = hedge.cells(smoothed)  # (batch, num_pixels, copy_nouns + hypernyms)
                smoothed = hedged.clamp_min(COPY_SMOOTHING / hedged.shape[-1])  # logs stay finite
        hedge_base = None
        if hedge is not None:  # the hypernyms' ids come after all nouns', as their columns do
            hedge_base = taught.word_count if taught is not None else self.vocab_size
            hedge_singular, hedge_plural = hedge.word_ids(hedge_base)
            singular = torch.cat([singular, hedge_singular])
            plural = torch.cat([plural, hedge_plural])
        ids = torch.cat([singular, plural])  # (2 * copy_nouns,)
        words, slots = torch.unique(ids, return_inverse=True)
        return CopyMemory(smoothed, mass, words, slots, taught, hedge, hedge_base)

    def _noun_probs(self, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class probabilities (batch, num_pixels, copy_classes) -> each cell's unnormalised
        noun probabilities (batch, num_pixels, copy_nouns) and the share of the classes the
        table names (batch, num_pixels).

        classes @ class_to_noun as a scatter-add of each class's weighted probability onto its
        noun: a class names at most a noun or two, so the dense product is nearly all zeros
        (and 3x slower on a CPU)."""
        nouns = classes.new_zeros(*classes.shape[:-1], self.nouns + 1)  # + a column for none
        for noun_index, weight in zip(*self._class_nouns(), strict=True):
            shares = classes * weight  # (batch, num_pixels, copy_classes)
            nouns = nouns.scatter_add(-1, noun_index.expand_as(shares), shares)
        named = (self.class_to_noun.sum(1) > 0).to(classes.dtype)  # (copy_classes,)
        return nouns[..., :-1], classes @ named

    def _class_nouns(self) -> tuple[torch.Tensor, torch.Tensor]:
        """class_to_noun as (layers, copy_classes) noun indices and weights: layer r holds each
        class's r-th noun, or the column copy_nouns (dropped) with weight 0 when it has none.
        One layer for the shipped tables, which give each class at most one noun."""
        key = (self.class_to_noun._version, self.class_to_noun.device)
        if self._derived is None or self._derived[0] != key:
            self._derived = key, self._derive_class_nouns()
        return self._derived[1]

    def _derive_class_nouns(self) -> tuple[torch.Tensor, torch.Tensor]:
        class_index, noun_index = self.class_to_noun.nonzero(as_tuple=True)  # by class
        # Each entry's rank among its class's entries: its position after the class's first.
        rank = torch.arange(len(class_index), device=class_index.device)
        rank = rank - torch.searchsorted(class_index, class_index)
        layers = int(rank.max()) + 1 if len(rank) else 1
        indices = torch.full((layers, self.classes), self.nouns, device=class_index.device)
        weights = torch.zeros((layers, self.classes), device=class_index.device)
        indices[rank, class_index] = noun_index
        weights[rank, class_index] = self.class_to_noun[class_index, noun_index]
        return indices, weights

    def forward(
        self, logits: torch.Tensor, hidden: torch.Tensor, alpha: torch.Tensor, memory: CopyMemory
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The vocabulary's logits (rows, vocab_size), the decoder's (dropped-out) new state
        (rows, decoder_dim) and its attention weights (rows, num_pixels) -> log p(w) of the
        mixture (rows, vocab_size) and the copy gate g (rows,). The result is normalised, so a
        softmax, a cross-entropy or Gumbel-max sampling reads it exactly as it reads logits."""
        batch, num_pixels, _ = memory.noun_probs.shape
        with _full_precision(hidden):
            alpha = alpha.float().view(batch, -1, num_pixels)  # (batch, beams, num_pixels)
            copy = torch.bmm(alpha, memory.noun_probs).flatten(0, 1)  # (rows, copy_nouns)
            mass = torch.bmm(alpha, memory.noun_mass.unsqueeze(-1)).flatten(0, 1)  # (rows, 1)
            hidden = hidden.float()
            gate = self.copy_gate(torch.cat([hidden, mass], 1))  # (rows, 1) pre-sigmoid
            plural = self.plural_switch(hidden)  # (rows, 1) pre-sigmoid
            log_copy = copy.log() + F.logsigmoid(gate)
            # (rows, 2 * copy_nouns): every singular, then every plural, as in copy_slots.
            copied = torch.cat(
                [log_copy + F.logsigmoid(-plural), log_copy + F.logsigmoid(plural)], 1
            )
            # Forced copy: the vocabulary path cannot say a table noun, so the two supports are
            # disjoint and each word's log-probability is one path's.
            # In place and fused, as the vocabulary is the step's largest tensor: the output
            # layer's result is not needed for its backward, and log_softmax(z) + log(1 - g)
            # is z - (logsumexp(z) - log(1 - g)).
            generated = logits.float()
            if memory.word_count is not None:  # the new words' ids, which only copying says
                extra = memory.word_count - generated.shape[1]
                generated = F.pad(generated, (0, extra), value=-math.inf)  # (rows, word_count)
            blocked = memory.copy_words
            if self.free_nouns.numel():  # free nouns are the exception: both paths say them
                blocked = blocked[~torch.isin(blocked, self.free_nouns)]
            generated = generated.index_fill_(1, blocked, -math.inf)
            shift = generated.logsumexp(-1, keepdim=True) - F.logsigmoid(-gate)  # (rows, 1)
            generated = generated - shift  # (rows, vocab_size)
            # A word reached twice (a plural that is its singular: "sheep") gets both shares,
            # summed stably as log-sum-exp around the largest.
            rows, words = copied.shape[0], memory.copy_words.shape[0]
            slots = memory.copy_slots.expand(rows, -1)  # (rows, 2 * copy_nouns)
            peak = copied.new_full((rows, words), -math.inf)
            peak = peak.scatter_reduce(1, slots, copied, "amax").detach()  # (rows, words)
            shares = (copied - peak.gather(1, slots)).exp()
            total = copied.new_zeros((rows, words)).scatter_add(1, slots, shares).log() + peak
            if self.free_nouns.numel():  # a free noun's share from the vocabulary path too
                total = torch.logaddexp(total, generated[:, memory.copy_words])
            mixed = generated.scatter_(1, memory.copy_words.expand(rows, -1), total)
            return mixed, torch.sigmoid(gate).squeeze(-1)


def _with_taught(
    nouns: torch.Tensor, mass: torch.Tensor, taught: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A cell's noun distribution (batch, num_pixels, copy_nouns) and named share (batch,
    num_pixels), with the taught words' probabilities (batch, num_pixels, words) beside them:
    a cell that surely shows a taught word gives it (nearly) all of the cell's copy
    distribution, and counts as a named thing for the gate, however little the ImageNet head
    makes of it. Returns (batch, num_pixels, copy_nouns + words) and (batch, num_pixels)."""
    share = taught.sum(-1, keepdim=True).clamp(max=1.0)  # (batch, num_pixels, 1)
    split = taught / taught.sum(-1, keepdim=True).clamp_min(torch.finfo(taught.dtype).tiny)
    nouns = torch.cat([nouns * (1.0 - share), split * share], -1)
    return nouns, mass + (1.0 - mass) * share.squeeze(-1)


def _full_precision(tensor: torch.Tensor) -> torch.autocast:
    """Autocast off: the copy path takes logs of probabilities that float16 rounds to 0."""
    return torch.autocast(tensor.device.type, enabled=False)
