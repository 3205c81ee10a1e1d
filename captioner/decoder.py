"""Soft-attention recurrent decoder ("Show, Attend and Tell", Xu et al. 2015).

At every word the decoder scores each cell of the image's feature grid against its hidden state
(additive attention), averages the features with those weights, scales the average by a learned
gate (the paper's one scalar, or one per feature channel), and feeds [word embedding, gated
context] to its recurrent cell.

With `copy_nouns` it can also copy a noun from the image (as the pointer-generator of See et al.
2017 copies from its source, and LSTM-P and Neural Baby Talk name novel objects): the encoder's
ImageNet classifier runs on every grid cell, a fixed class -> noun matrix turns each cell's
class probabilities into noun probabilities, and at each word a learned gate g mixes the
vocabulary's distribution with the noun distribution of the cells the decoder attends to:

    p(w) = (1 - g) p_vocab(w) + g p_copy(w)

The table's nouns (and their plurals) are masked out of p_vocab, so they are said only by copying
("forced copy"): a vocabulary path learned from a few training images does not transfer to
photos, the ImageNet head does.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

# Pre-activation blocks per cell: LSTM (input, forget, cell, output), GRU (reset, update, new).
GATE_BLOCKS = {"lstm": 4, "gru": 3, "rnn": 1}
START_STATES = ("mean", "learned")
ATTENTION_ACTIVATIONS = ("tanh", "relu")
# "scalar": the paper's one gate for the whole context; "channel": one gate per feature
# channel, as the PyTorch tutorial's f_beta (sgrvinod/a-PyTorch-Tutorial-to-Image-Captioning).
CONTEXT_GATES = ("scalar", "channel")
# Share of each cell's noun distribution spread evenly over all nouns. Without it a noun that
# the ImageNet head gives no probability anywhere (float32 rounds e^-120 to 0) would have a
# log-probability of -inf, an infinite training loss; with it every noun keeps at least
# COPY_SMOOTHING / copy_nouns of the copy path.
COPY_SMOOTHING = 1e-4


@dataclass
class DecoderConfig:
    vocab_size: int
    encoder_dim: int
    embed_dim: int = 256
    decoder_dim: int = 512
    attention_dim: int = 512
    dropout: float = 0.5
    cell: str = "lstm"  # "lstm", "gru" or "rnn"
    # "mean": the paper's start state, computed from the mean feature; "learned": one learned
    # state for every image, so what the decoder knows of the image comes through attention.
    start_state: str = "mean"
    # Append each grid cell's centre (x, y), in [-1, 1], to its features. A CNN's features say
    # what is in a cell but hardly where the cell is, so without them the attended context
    # cannot tell "left of" from "right of"; with them it carries where the decoder looked.
    coordinates: bool = False
    # Layer-normalise each grid cell's features before anything reads them. Mid-network CNN
    # features are far from unit scale (Lite0's stride-16 stage: std 5, channel means up to
    # +-5), which saturates the attention's tanh and the cell's gates at initialisation.
    normalize_features: bool = False
    # Let the attention query see the word being read, not only the state from before it. In
    # the paper the state that chooses where to look has not read the last word yet, so after
    # "a large" the colour is read off wherever the decoder looked before it knew "large" had
    # been chosen over "small".
    word_attention: bool = False
    # Copy mechanism: the number of nouns the decoder can copy from the image (0: none), and
    # the number of classes of the ImageNet classifier it reads them from. The classifier, the
    # class -> noun matrix and the nouns' word ids are buffers set by `attach_noun_head`.
    copy_nouns: int = 0
    copy_classes: int = 1000
    # A copy model only: the decoder reads each cell as the ImageNet classifier sees it (its
    # class log-probabilities) instead of the raw features. Raw features also carry what a
    # photo looks like (texture, lighting, style), which differs between the composites a
    # model learns its sentences from and the photos it captions; what a cell looks like as
    # ImageNet classes is the same kind of thing in both.
    semantic_features: bool = False
    # The attention's nonlinearity between keys + query and the score ("tanh" as in the paper,
    # "relu" as in the PyTorch tutorial), and the context gate's shape (CONTEXT_GATES).
    attention_activation: str = "tanh"
    context_gate: str = "scalar"

    @classmethod
    def from_dict(cls, data: dict) -> DecoderConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class DecoderState(NamedTuple):
    h: torch.Tensor  # (rows, decoder_dim)
    c: torch.Tensor | None  # (rows, decoder_dim), LSTM only

    def repeat_rows(self, times: int) -> DecoderState:
        """Each row `times` times in a row: one state per image -> one per beam or sample."""
        return DecoderState(
            *(s.repeat_interleave(times, 0) if s is not None else None for s in self)
        )

    def select_rows(self, rows: torch.Tensor) -> DecoderState:
        return DecoderState(*(s.index_select(0, rows) if s is not None else None for s in self))


class ImageMemory(NamedTuple):
    """Per-image work done once before decoding, shared by all beams of an image."""

    features: torch.Tensor  # (batch, num_pixels, feature_dim): encoder_dim (+ 2 coordinates)
    attention_keys: torch.Tensor  # (batch, num_pixels, attention_dim)
    # The cell's input projection of each grid cell's features, or None. The gated context
    # enters the cell linearly, W(beta * sum_i alpha_i f_i) = beta * sum_i alpha_i (W f_i), so
    # projecting the features once per image turns each step's (feature_dim x gates) matmul
    # into a weighted sum of projected rows. That pays when features are wide (1280-d Lite0,
    # 2048-d ResNet); narrow ones (the default model's 112-d) are cheaper to average first.
    projected_features: torch.Tensor | None  # (batch, num_pixels, gate_blocks * decoder_dim)
    # Copy models only: each cell's distribution over the copyable nouns (renormalised over the
    # classes the noun table names, and smoothed), and the share of the cell's class
    # probability that those classes hold: low on background.
    noun_probs: torch.Tensor | None = None  # (batch, num_pixels, copy_nouns), rows sum to 1
    noun_mass: torch.Tensor | None = None  # (batch, num_pixels)
    # The distinct word ids the copy path says, and which of them each noun's singular and
    # plural is: a noun whose plural is its singular ("sheep") names one word twice.
    copy_words: torch.Tensor | None = None  # (distinct words,)
    copy_slots: torch.Tensor | None = None  # (2 * copy_nouns,) indices into copy_words

    def select_images(self, images: torch.Tensor) -> ImageMemory:
        """The memory of `images` (indices into the batch) alone, in that order."""
        per_image = ("features", "attention_keys", "projected_features", "noun_probs", "noun_mass")
        return self._replace(
            **{
                name: getattr(self, name).index_select(0, images)
                for name in per_image
                if getattr(self, name) is not None
            }
        )


class StepOutput(NamedTuple):
    logits: torch.Tensor  # (rows, vocab_size)
    state: DecoderState
    alpha: torch.Tensor  # (rows, num_pixels) attention weights, each row sums to 1
    beta: torch.Tensor  # (rows,) the context gate; a gate per channel: their mean
    gates: dict[str, torch.Tensor]  # name -> (rows, decoder_dim) activations, e.g. LSTM "input"
    copy_gate: torch.Tensor | None = None  # (rows,) g, the copy path's share; copy models only


class Decoder(nn.Module):
    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        if config.cell not in GATE_BLOCKS:
            raise ValueError(
                f"unknown decoder cell {config.cell!r}; use one of {list(GATE_BLOCKS)}"
            )
        self.config = config
        c = config
        gate_dim = GATE_BLOCKS[c.cell] * c.decoder_dim
        if c.attention_activation not in ATTENTION_ACTIVATIONS:
            raise ValueError(
                f"unknown attention activation {c.attention_activation!r}; "
                f"use one of {ATTENTION_ACTIVATIONS}"
            )
        if c.context_gate not in CONTEXT_GATES:
            raise ValueError(f"unknown context gate {c.context_gate!r}; use one of {CONTEXT_GATES}")
        if c.semantic_features and not c.copy_nouns:
            raise ValueError("semantic_features needs a copy model (copy_nouns above 0)")
        cell_dim = c.copy_classes if c.semantic_features else c.encoder_dim
        feature_dim = cell_dim + (2 if c.coordinates else 0)
        self.embedding = nn.Embedding(c.vocab_size, c.embed_dim)
        self.feature_norm = nn.LayerNorm(cell_dim) if c.normalize_features else nn.Identity()
        self.encoder_att = nn.Linear(feature_dim, c.attention_dim)
        self.decoder_att = nn.Linear(c.decoder_dim, c.attention_dim)
        self.word_att = nn.Linear(c.embed_dim, c.attention_dim) if c.word_attention else None
        # No bias: softmax ignores a shift, so its gradient is pure rounding noise that Adam
        # would blow up into full-size steps.
        self.full_att = nn.Linear(c.attention_dim, 1, bias=False)
        self.context_gate = nn.Linear(
            c.decoder_dim, feature_dim if c.context_gate == "channel" else 1
        )
        if c.start_state not in START_STATES:
            raise ValueError(f"unknown start state {c.start_state!r}; use one of {START_STATES}")
        if c.start_state == "mean":
            self.init_h = nn.Linear(feature_dim, c.decoder_dim)
            self.init_c = nn.Linear(feature_dim, c.decoder_dim) if c.cell == "lstm" else None
        else:
            self.start_h = nn.Parameter(torch.zeros(c.decoder_dim))
            self.start_c = nn.Parameter(torch.zeros(c.decoder_dim)) if c.cell == "lstm" else None
        # The recurrent cell, written out (rather than nn.LSTMCell) so its gates stay visible.
        self.input_proj = nn.Linear(c.embed_dim + feature_dim, gate_dim)  # [word, context]
        self.hidden_proj = nn.Linear(c.decoder_dim, gate_dim)
        self.dropout = nn.Dropout(c.dropout)
        self.output = nn.Linear(c.decoder_dim, c.vocab_size)
        if c.copy_nouns < 0 or c.copy_classes < 1:
            raise ValueError("copy_nouns must be at least 0 and copy_classes at least 1")
        if c.copy_nouns:
            # The gate reads the state and how much of the attended cells the table names.
            self.copy_gate = nn.Linear(c.decoder_dim + 1, 1)
            self.plural_switch = nn.Linear(c.decoder_dim, 1)
            # Frozen, and saved with the weights so a model directory is self-contained.
            self.register_buffer("noun_head_weight", torch.zeros(c.copy_classes, c.encoder_dim))
            self.register_buffer("noun_head_bias", torch.zeros(c.copy_classes))
            self.register_buffer("class_to_noun", torch.zeros(c.copy_classes, c.copy_nouns))
            self.register_buffer("noun_singular_ids", torch.zeros(c.copy_nouns, dtype=torch.long))
            self.register_buffer("noun_plural_ids", torch.zeros(c.copy_nouns, dtype=torch.long))

    @torch.no_grad()
    def attach_noun_head(
        self,
        head_weight: torch.Tensor,
        head_bias: torch.Tensor,
        class_to_noun: torch.Tensor,
        singular_ids: torch.Tensor,
        plural_ids: torch.Tensor,
    ) -> None:
        """Set what the copy path reads: the encoder's ImageNet classifier (head_weight
        (copy_classes, encoder_dim), head_bias (copy_classes,)), the non-negative class -> noun
        matrix (copy_classes, copy_nouns), and each noun's singular and plural word ids
        (copy_nouns,) each; a noun whose plural is its singular ("sheep") may repeat its id."""
        c = self.config
        if not c.copy_nouns:
            raise ValueError("this decoder has no copy mechanism (copy_nouns is 0)")
        if head_weight.ndim == 2 and head_weight.shape[1] != c.encoder_dim:
            raise ValueError(
                f"the ImageNet classifier reads {head_weight.shape[1]} features per cell, but "
                f"the decoder's encoder_dim is {c.encoder_dim}: the copy mechanism needs the "
                "features the classifier was trained on (Lite0: feature_stride 32, 1280 features)"
            )
        expected = {
            "head_weight": (head_weight, (c.copy_classes, c.encoder_dim)),
            "head_bias": (head_bias, (c.copy_classes,)),
            "class_to_noun": (class_to_noun, (c.copy_classes, c.copy_nouns)),
            "singular_ids": (singular_ids, (c.copy_nouns,)),
            "plural_ids": (plural_ids, (c.copy_nouns,)),
        }
        for name, (tensor, shape) in expected.items():
            if tuple(tensor.shape) != shape:
                raise ValueError(
                    f"{name} has shape {list(tensor.shape)}; copy_classes {c.copy_classes}, "
                    f"copy_nouns {c.copy_nouns} and encoder_dim {c.encoder_dim} need {list(shape)}"
                )
        if not (torch.isfinite(class_to_noun).all() and (class_to_noun >= 0).all()):
            raise ValueError("class_to_noun must hold finite, non-negative weights")
        for name in ("singular_ids", "plural_ids"):
            ids = expected[name][0]
            if ids.is_floating_point() or not ((ids >= 0) & (ids < c.vocab_size)).all():
                raise ValueError(f"{name} must be word ids below vocab_size {c.vocab_size}")
        self.noun_head_weight.copy_(head_weight)
        self.noun_head_bias.copy_(head_bias)
        self.class_to_noun.copy_(class_to_noun)
        self.noun_singular_ids.copy_(singular_ids)
        self.noun_plural_ids.copy_(plural_ids)

    def prepare(self, features: torch.Tensor) -> ImageMemory:
        """(batch, grid_h, grid_w, encoder_dim) -> the per-image memory `step` reads."""
        copy_memory = self._copy_memory(features)
        features = self._grid_cells(features)  # (batch, num_pixels, feature_dim)
        context_weight = self._context_weight()  # (gates, feature_dim)
        gates, feature_dim = context_weight.shape
        num_pixels = features.shape[1]
        # Multiply-adds per beam and step: weighted sum of projected rows vs average + matmul.
        # A gate per channel must scale the average before it is projected.
        cheaper = num_pixels * gates < feature_dim * (num_pixels + gates)
        project = cheaper and self.config.context_gate == "scalar"
        return ImageMemory(
            features=features,
            attention_keys=self.encoder_att(features),
            projected_features=features @ context_weight.T if project else None,
            **copy_memory,
        )

    def initial_state(self, memory: ImageMemory) -> DecoderState:
        if self.config.start_state == "learned":
            batch = memory.features.shape[0]
            c = self.start_c.expand(batch, -1) if self.start_c is not None else None
            return DecoderState(self.start_h.expand(batch, -1), c)
        mean_features = memory.features.mean(dim=1)  # (batch, feature_dim)
        c = self.init_c(mean_features) if self.init_c is not None else None
        return DecoderState(self.init_h(mean_features), c)

    def attend(
        self, memory: ImageMemory, h: torch.Tensor, embedded_words: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention weights (rows, num_pixels) and the context gate for (batch * beams) rows:
        their hidden state `h` from the last step and the embedding of the word they read now.
        The gate is (rows, 1), or (rows, feature_dim) with a gate per channel."""
        batch, num_pixels, _ = memory.attention_keys.shape
        query = self.decoder_att(h)  # (rows, attention_dim)
        if self.word_att is not None:
            query = query + self.word_att(embedded_words)
        query = query.view(batch, -1, 1, self.config.attention_dim)
        # In place: this is the decoder's largest tensor; allocating a second one for the
        # activation's output costs more than the arithmetic (7x slower decoding at 196 cells
        # on a CPU).
        energy = memory.attention_keys.unsqueeze(1) + query  # (batch, beams, P, A)
        energy = energy.relu_() if self.config.attention_activation == "relu" else energy.tanh_()
        alpha = self.full_att(energy).squeeze(-1).softmax(dim=-1)  # (batch, beams, num_pixels)
        gate = torch.sigmoid(self.context_gate(h))  # (batch * beams, 1 or feature_dim)
        return alpha.reshape(-1, num_pixels), gate

    def step(self, words: torch.Tensor, state: DecoderState, memory: ImageMemory) -> StepOutput:
        """One word for each of (batch * beams) rows; rows are grouped by image, beams inner."""
        batch = memory.features.shape[0]
        embedded_words = self.embedding(words)  # (rows, embed_dim)
        alpha, gate = self.attend(memory, state.h, embedded_words)  # (rows, P), (rows, 1 or F)
        if memory.projected_features is not None:  # a scalar gate: it scales the weights
            weights = (alpha * gate).view(batch, -1, alpha.shape[-1])
            context_in = torch.bmm(weights, memory.projected_features)  # (batch, beams, gates)
            context_in = context_in.flatten(0, 1)  # (rows, gates)
        else:
            weights = alpha.view(batch, -1, alpha.shape[-1])
            context = torch.bmm(weights, memory.features).flatten(0, 1)  # (rows, feature_dim)
            context_in = (gate * context) @ self._context_weight().T  # (rows, gates)
        word_weight = self.input_proj.weight[:, : self.config.embed_dim]
        cell_in = F.linear(embedded_words, word_weight, self.input_proj.bias) + context_in
        new_state, gates = self._cell(cell_in, state)
        hidden = self.dropout(new_state.h)
        logits, copy_gate = self._word_scores(hidden, alpha, memory)
        beta = gate.mean(-1)  # (rows,) a gate per channel is reported as their mean
        return StepOutput(logits, new_state, alpha, beta, gates, copy_gate)

    def forward(
        self, features: torch.Tensor, captions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: predict captions[:, 1:] from captions[:, :-1].

        features: (batch, grid_h, grid_w, encoder_dim); captions: (batch, length) ids starting
        with <start>, padded after <end>. Returns logits (batch, length - 1, vocab_size) and
        attention weights (batch, length - 1, num_pixels). This is the direct form of `step`
        (context projected after averaging), which is cheaper when captions are shorter than
        the grid has cells. A copy model's logits are the log-probabilities of its mixture.
        """
        copy_memory = self._copy_memory(features)
        features = self._grid_cells(features)  # (batch, num_pixels, feature_dim)
        memory = ImageMemory(features, self.encoder_att(features), None, **copy_memory)
        state = self.initial_state(memory)
        embeddings = self.embedding(captions)  # (batch, length, embed_dim)
        all_logits, all_alphas = [], []
        for t in range(captions.shape[1] - 1):
            alpha, gate = self.attend(memory, state.h, embeddings[:, t])  # (batch, P), (batch, 1|F)
            context = torch.bmm(alpha.unsqueeze(1), memory.features).squeeze(1)  # (batch, F)
            cell_in = self.input_proj(torch.cat([embeddings[:, t], gate * context], 1))
            state, _ = self._cell(cell_in, state)
            logits, _ = self._word_scores(self.dropout(state.h), alpha, memory)
            all_logits.append(logits)
            all_alphas.append(alpha)
        return torch.stack(all_logits, 1), torch.stack(all_alphas, 1)

    def _copy_memory(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """The ImageMemory fields of the copy path, from (batch, grid_h, grid_w, encoder_dim)
        raw encoder features; none without a copy mechanism. The classifier reads the features
        it was trained on: before layer normalisation and coordinates."""
        if not self.config.copy_nouns:
            return {}
        with _full_precision(features):
            cells = features.flatten(1, 2).float()  # (batch, num_pixels, encoder_dim)
            classes = F.linear(cells, self.noun_head_weight, self.noun_head_bias).softmax(-1)
            nouns = classes @ self.class_to_noun  # (batch, num_pixels, copy_nouns)
            # p_copy is renormalised over the classes the table names, so it stays a
            # distribution; the share those classes hold (low where the head sees background,
            # or a class the table leaves out as too vague) tells the gate how noun-like the
            # cells it looks at are, whatever the matrix's weighting.
            named = (self.class_to_noun.sum(1) > 0).to(classes.dtype)  # (copy_classes,)
            mass = classes @ named  # (batch, num_pixels)
            total = nouns.sum(-1, keepdim=True)
            nouns = nouns / total.clamp_min(torch.finfo(nouns.dtype).tiny)
            smoothed = nouns * (1.0 - COPY_SMOOTHING) + COPY_SMOOTHING / nouns.shape[-1]
        ids = torch.cat([self.noun_singular_ids, self.noun_plural_ids])  # (2 * copy_nouns,)
        words, slots = torch.unique(ids, return_inverse=True)
        return {"noun_probs": smoothed, "noun_mass": mass, "copy_words": words, "copy_slots": slots}

    def _word_scores(
        self, hidden: torch.Tensor, alpha: torch.Tensor, memory: ImageMemory
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (rows, vocab_size) from the (dropped-out) new state, and the copy gate (rows,)
        or None. A copy model's logits are log p(w) of the mixture: normalised, so a softmax,
        a cross-entropy or Gumbel-max sampling reads them exactly as it reads plain logits."""
        logits = self.output(hidden)
        if not self.config.copy_nouns:
            return logits, None
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
            generated = logits.float().index_fill_(1, memory.copy_words, -math.inf)
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
            mixed = generated.scatter_(1, memory.copy_words.expand(rows, -1), total)
            return mixed, torch.sigmoid(gate).squeeze(-1)

    def _grid_cells(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, grid_h, grid_w, encoder_dim) -> (batch, num_pixels, feature_dim)."""
        if self.config.semantic_features:
            with _full_precision(features):
                classes = F.linear(features.float(), self.noun_head_weight, self.noun_head_bias)
                features = classes.log_softmax(-1)  # (batch, grid_h, grid_w, copy_classes)
        features = self.feature_norm(features)
        if self.config.coordinates:
            batch, grid_h, grid_w, _ = features.shape
            ys = torch.linspace(-1, 1, grid_h, device=features.device, dtype=features.dtype)
            xs = torch.linspace(-1, 1, grid_w, device=features.device, dtype=features.dtype)
            ys, xs = torch.meshgrid(ys, xs, indexing="ij")  # (grid_h, grid_w) each
            where = torch.stack([xs, ys], -1).expand(batch, -1, -1, -1)  # (batch, gh, gw, 2)
            features = torch.cat([features, where], -1)
        return features.flatten(1, 2)

    def _context_weight(self) -> torch.Tensor:
        return self.input_proj.weight[:, self.config.embed_dim :]

    def _cell(
        self, cell_in: torch.Tensor, state: DecoderState
    ) -> tuple[DecoderState, dict[str, torch.Tensor]]:
        """The recurrence, from the input projection already computed (rows, gate_blocks * D)."""
        hidden_in = self.hidden_proj(state.h)
        if self.config.cell == "lstm":
            i, f, g, o = (cell_in + hidden_in).chunk(4, dim=1)
            i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
            c = f * state.c + i * torch.tanh(g)
            h = o * torch.tanh(c)
            return DecoderState(h, c), {"input": i, "forget": f, "output": o, "cell": c}
        if self.config.cell == "gru":
            x_r, x_z, x_n = cell_in.chunk(3, dim=1)
            h_r, h_z, h_n = hidden_in.chunk(3, dim=1)
            r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
            n = torch.tanh(x_n + r * h_n)
            h = (1 - z) * n + z * state.h
            return DecoderState(h, None), {"reset": r, "update": z}
        return DecoderState(torch.tanh(cell_in + hidden_in), None), {}


def _full_precision(tensor: torch.Tensor) -> torch.autocast:
    """Autocast off: the copy path takes logs of probabilities that float16 rounds to 0."""
    return torch.autocast(tensor.device.type, enabled=False)
