"""Soft-attention recurrent decoder ("Show, Attend and Tell", Xu et al. 2015).

At every word the decoder looks at the image's feature grid through its attention (attention.py:
where to look, and how much of what it sees to let in), and feeds [word embedding, gated context]
to its recurrent cell, whose new state scores the vocabulary. A copy model (`copy_nouns`) also
hands that state and where it looked to its copy head (copy_head.py), which can say a noun the
ImageNet classifier sees in the attended cells instead of a word from the vocabulary.

The attention's and the copy head's weights are saved under the names they had when the decoder
held them itself ("encoder_att.weight", "copy_gate.bias"), so every model file keeps loading.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from captioner.attention import ATTENTION_ACTIVATIONS, CONTEXT_GATES, Attention
from captioner.copy_head import CopyHead, CopyMemory
from captioner.noun_tree import Hedge
from captioner.taught import TaughtNouns

# Pre-activation blocks per cell: LSTM (input, forget, cell, output), GRU (reset, update, new).
GATE_BLOCKS = {"lstm": 4, "gru": 3, "rnn": 1}
START_STATES = ("mean", "learned")
# The submodule that holds each weight and buffer the model files name flat ("encoder_att.weight",
# "class_to_noun"), as the decoder held them itself before it had submodules. The state_dict
# hooks below translate, so files keep their names, and attribute access (decoder.copy_gate)
# still finds them.
MOVED_TO = {
    "encoder_att": "attention",
    "decoder_att": "attention",
    "word_att": "attention",
    "full_att": "attention",
    "context_gate": "attention",
    "copy_gate": "copy_head",
    "plural_switch": "copy_head",
    "noun_head_weight": "copy_head",
    "noun_head_bias": "copy_head",
    "class_to_noun": "copy_head",
    "noun_singular_ids": "copy_head",
    "noun_plural_ids": "copy_head",
}


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
    # A model learned from a person's captions (learn.py) may also read each cell's raw
    # features through a projection of this rank (0: none), added to what it reads of the cell:
    # ImageNet classes carry little of what a thing looks like ("a red circle"). See RawAdapter.
    raw_feature_rank: int = 0
    # A copy model's captions all name a noun it copies, so it ends one only after such a noun
    # (rules.CopyGrammar). A model learned from a person's captions that do not all name one
    # ends where theirs do.
    end_after_noun: bool = True
    # Word ids of table nouns that a model learned from a person's captions also says from its
    # vocabulary, as they do: "an orange star" names a colour the ImageNet classifier never
    # sees, and a copy-only "orange" was never said (copy_head.CopyHead.free_nouns).
    free_nouns: tuple[int, ...] = ()
    # The no-repeat n-gram size its searches use when the caller asks for none (0: none).
    # EachNounOnce keeps a copy model from naming a thing twice, but not with the person's new
    # nouns: "a green circle and a green circle".
    no_repeat_ngram_size: int = 0
    # The length penalty its beam searches use when the caller asks for none (0: none): the
    # one whose captions of the held-out photos are as long as the person's captions of them
    # (learn.py); without it a learned model's captions came out shorter than its person's.
    length_penalty: float = 0.0

    @classmethod
    def from_dict(cls, data: dict) -> DecoderConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict:
        """As config.json holds it. The fields learned models added are written only when they
        differ from their defaults, so every other model's file and identity stay as they were."""
        data = dataclasses.asdict(self)
        for name, default in LEARNED_MODEL_FIELDS.items():
            if data[name] == default:
                del data[name]
        return data


LEARNED_MODEL_FIELDS = {
    "raw_feature_rank": 0,
    "end_after_noun": True,
    "free_nouns": (),
    "no_repeat_ngram_size": 0,
    "length_penalty": 0.0,
}


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

    # encoder_dim (+ 2 coordinates); None after select_images where projected_features is set
    features: torch.Tensor | None  # (batch, num_pixels, feature_dim)
    attention_keys: torch.Tensor  # (batch, num_pixels, attention_dim)
    # The cell's input projection of each grid cell's features, or None. The gated context
    # enters the cell linearly, W(beta * sum_i alpha_i f_i) = beta * sum_i alpha_i (W f_i), so
    # projecting the features once per image turns each step's (feature_dim x gates) matmul
    # into a weighted sum of projected rows. That pays when features are wide (1280-d Lite0,
    # 2048-d ResNet); narrow ones (the default model's 112-d) are cheaper to average first.
    projected_features: torch.Tensor | None  # (batch, num_pixels, gate_blocks * decoder_dim)
    # Copy models only: the fields of copy_head.CopyMemory, which says what they hold.
    noun_probs: torch.Tensor | None = None  # (batch, num_pixels, copy_nouns)
    noun_mass: torch.Tensor | None = None  # (batch, num_pixels)
    copy_words: torch.Tensor | None = None  # (distinct words,)
    copy_slots: torch.Tensor | None = None  # (2 * copy_nouns,)
    taught: TaughtNouns | None = None
    hedge: Hedge | None = None
    hedge_base: int | None = None

    def select_images(self, images: torch.Tensor) -> ImageMemory:
        """The memory of `images` (indices into the batch) alone, in that order. A step that
        reads the projected rows never reads the features, so they are dropped, not copied:
        beam search selects at every step that finishes an image."""
        per_image = ("features", "attention_keys", "projected_features", "noun_probs", "noun_mass")
        selected = {
            name: getattr(self, name).index_select(0, images)
            for name in per_image
            if getattr(self, name) is not None
            and not (name == "features" and self.projected_features is not None)
        }
        return self._replace(**({"features": None} | selected))

    def image_range(self, start: int, stop: int) -> ImageMemory:
        """The memory of images start to stop - 1, every field as it is: views, no copies."""
        per_image = ("features", "attention_keys", "projected_features", "noun_probs", "noun_mass")
        return self._replace(
            **{
                name: getattr(self, name)[start:stop]
                for name in per_image
                if getattr(self, name) is not None
            }
        )

    def copy_memory(self) -> CopyMemory:
        return CopyMemory(
            self.noun_probs,
            self.noun_mass,
            self.copy_words,
            self.copy_slots,
            self.taught,
            self.hedge,
            self.hedge_base,
        )

    @property
    def word_count(self) -> int | None:
        """The number of word ids a step scores when words are taught or hypernyms can be
        said (vocab_size and theirs), else None: then it is the model's vocab_size."""
        return self.copy_memory().word_count


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
        # Built in the order the weights were before the submodules existed, so a seed gives the
        # same initial weights and parameters() (what an optimizer's saved state is matched by)
        # the same order.
        self.embedding = nn.Embedding(c.vocab_size, c.embed_dim)
        self.feature_norm = nn.LayerNorm(cell_dim) if c.normalize_features else nn.Identity()
        self.attention = Attention(
            feature_dim,
            c.decoder_dim,
            c.attention_dim,
            word_dim=c.embed_dim if c.word_attention else None,
            activation=c.attention_activation,
            gate=c.context_gate,
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
        self.copy_head = (
            CopyHead(
                c.vocab_size,
                c.encoder_dim,
                c.decoder_dim,
                c.copy_classes,
                c.copy_nouns,
                free_nouns=c.free_nouns,
            )
            if c.copy_nouns
            else None
        )
        # Built last, so a model without it gets the same initial weights from a seed.
        self.raw_features = (
            RawAdapter(c.encoder_dim, cell_dim, c.raw_feature_rank) if c.raw_feature_rank else None
        )
        # Words taught from the caption library, copied beside the table's nouns (taught.py):
        # a plain attribute, so no model file, state_dict or identity ever holds them.
        self.taught: TaughtNouns | None = None
        # The noun tree, when the copy path hedges (noun_tree.py): a plain attribute too.
        self.hedge: Hedge | None = None
        # The ids of the size words ("large", "small"), which a copy model says only after its
        # first noun (rules.py); set by whoever holds the vocabulary (Captioner).
        self.size_word_ids: tuple[int, ...] = ()
        self.small_word_ids: tuple[int, ...] = ()  # those of them that say "small"
        self.register_state_dict_post_hook(_save_flat_names)
        self.register_load_state_dict_pre_hook(_load_flat_names)

    def __getattr__(self, name: str) -> Any:
        """nn.Module's lookup, and the old names of what moved into a submodule (MOVED_TO)."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            owner = getattr(self, MOVED_TO[name], None) if name in MOVED_TO else None
            if owner is None:
                raise
            return getattr(owner, name)

    def attach_noun_head(
        self,
        head_weight: torch.Tensor,
        head_bias: torch.Tensor,
        class_to_noun: torch.Tensor,
        singular_ids: torch.Tensor,
        plural_ids: torch.Tensor,
    ) -> None:
        """Set what the copy head reads: the encoder's ImageNet classifier (head_weight
        (copy_classes, encoder_dim), head_bias (copy_classes,)), the non-negative class -> noun
        matrix (copy_classes, copy_nouns), and each noun's singular and plural word ids
        (copy_nouns,) each; a noun whose plural is its singular ("sheep") may repeat its id."""
        if self.copy_head is None:
            raise ValueError("this decoder has no copy mechanism (copy_nouns is 0)")
        self.copy_head.attach(head_weight, head_bias, class_to_noun, singular_ids, plural_ids)

    def set_hedge(self, hedge: Hedge | None) -> None:
        """Hedge from the next `prepare` on (None: never), when not training."""
        if hedge is not None and self.copy_head is None:
            raise ValueError("this model has no copy path (copy_nouns is 0): nothing to hedge")
        self.hedge = hedge

    def set_taught(self, taught: TaughtNouns | None) -> None:
        """Copy these taught words from the next `prepare` on (None: none). A search already
        under way keeps the words its memory was prepared with."""
        if taught is not None and self.copy_head is None:
            raise ValueError(
                "this model has no copy path (copy_nouns is 0), so it cannot say taught words"
            )
        self.taught = taught

    def prepare(
        self, features: torch.Tensor, class_log_probs: torch.Tensor | None = None
    ) -> ImageMemory:
        """(batch, grid_h, grid_w, encoder_dim) -> the per-image memory `step` reads.
        class_log_probs: a copy model's `copy_head.class_log_probs(features)` (batch, grid_h,
        grid_w, copy_classes), when the encoder computed them beside the features."""
        classes = self._class_log_probs(features, class_log_probs)
        copy_memory = self._copy_memory(features, classes)
        features = self._grid_cells(features, classes)  # (batch, num_pixels, feature_dim)
        context_weight = self._context_weight()  # (gates, feature_dim)
        gates, feature_dim = context_weight.shape
        num_pixels = features.shape[1]
        # Multiply-adds per beam and step: weighted sum of projected rows vs average + matmul.
        # A gate per channel must scale the average before it is projected.
        cheaper = num_pixels * gates < feature_dim * (num_pixels + gates)
        project = cheaper and self.config.context_gate == "scalar"
        return ImageMemory(
            features=features,
            attention_keys=self.attention.keys(features),
            projected_features=features @ context_weight.T if project else None,
            **copy_memory,
        )

    def initial_state(self, memory: ImageMemory) -> DecoderState:
        if self.config.start_state == "learned":
            batch = memory.attention_keys.shape[0]
            c = self.start_c.expand(batch, -1) if self.start_c is not None else None
            return DecoderState(self.start_h.expand(batch, -1), c)
        mean_features = memory.features.mean(dim=1)  # (batch, feature_dim)
        c = self.init_c(mean_features) if self.init_c is not None else None
        return DecoderState(self.init_h(mean_features), c)

    def step(self, words: torch.Tensor, state: DecoderState, memory: ImageMemory) -> StepOutput:
        """One word for each of (batch * beams) rows; rows are grouped by image, beams inner."""
        batch = memory.attention_keys.shape[0]
        embedded_words = self._embed(words, memory)  # (rows, embed_dim)
        # (rows, num_pixels), (rows, 1 or feature_dim)
        alpha, gate = self.attention(memory.attention_keys, state.h, embedded_words)
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
        classes = self._class_log_probs(features)
        # Teacher forcing scores the caption's own nouns: never hedged.
        copy_memory = self._copy_memory(features, classes, hedge=False)
        features = self._grid_cells(features, classes)  # (batch, num_pixels, feature_dim)
        memory = ImageMemory(features, self.attention.keys(features), None, **copy_memory)
        state = self.initial_state(memory)
        embeddings = self.embedding(captions)  # (batch, length, embed_dim)
        all_logits, all_alphas = [], []
        for t in range(captions.shape[1] - 1):
            # (batch, num_pixels), (batch, 1 or feature_dim)
            alpha, gate = self.attention(memory.attention_keys, state.h, embeddings[:, t])
            context = torch.bmm(alpha.unsqueeze(1), memory.features).squeeze(1)  # (batch, F)
            cell_in = self.input_proj(torch.cat([embeddings[:, t], gate * context], 1))
            state, _ = self._cell(cell_in, state)
            logits, _ = self._word_scores(self.dropout(state.h), alpha, memory)
            all_logits.append(logits)
            all_alphas.append(alpha)
        return torch.stack(all_logits, 1), torch.stack(all_alphas, 1)

    def _class_log_probs(
        self, features: torch.Tensor, given: torch.Tensor | None = None
    ) -> torch.Tensor | None:
        """Each cell's ImageNet class log-probabilities (batch, grid_h, grid_w, copy_classes),
        computed once for the copy memory and the semantic features (None without a copy
        head); `given` when the encoder computed them."""
        if self.copy_head is None:
            return None
        return given if given is not None else self.copy_head.class_log_probs(features)

    def _copy_memory(
        self, features: torch.Tensor, classes: torch.Tensor | None, hedge: bool = True
    ) -> dict[str, torch.Tensor]:
        """The ImageMemory fields of the copy head, from (batch, grid_h, grid_w, encoder_dim)
        raw encoder features and their class log-probabilities; none without one. hedge:
        with the noun tree, when one is set and the decoder is not training."""
        if self.copy_head is None:
            return {}
        hedge = self.hedge if hedge and not self.training else None  # a loss is the nouns' own
        return self.copy_head.prepare(features, self.taught, classes, hedge)._asdict()

    def _embed(self, words: torch.Tensor, memory: ImageMemory) -> torch.Tensor:
        """(rows,) word ids -> (rows, embed_dim), taught words' and hypernyms' ids too."""

        def known(ids: torch.Tensor) -> torch.Tensor:
            if memory.taught is not None:  # ids from vocab_size on are taught words
                return memory.taught.embed(self.embedding, ids)
            return self.embedding(ids)

        if memory.hedge is not None:  # and from hedge_base on, hypernyms
            return memory.hedge.embed(words, memory.hedge_base, known)
        return known(words)

    def _word_scores(
        self, hidden: torch.Tensor, alpha: torch.Tensor, memory: ImageMemory
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (rows, vocab_size) from the (dropped-out) new state, and the copy gate (rows,)
        or None. A copy model's logits are log p(w) of the mixture: normalised, so a softmax,
        a cross-entropy or Gumbel-max sampling reads them exactly as it reads plain logits."""
        logits = self.output(hidden)
        if self.copy_head is None:
            return logits, None
        return self.copy_head(logits, hidden, alpha, memory.copy_memory())

    def _grid_cells(self, features: torch.Tensor, classes: torch.Tensor | None) -> torch.Tensor:
        """(batch, grid_h, grid_w, encoder_dim) and their class log-probabilities (a copy
        model's) -> (batch, num_pixels, feature_dim)."""
        raw = features
        if self.config.semantic_features:
            features = classes  # (batch, grid_h, grid_w, copy_classes)
        features = self.feature_norm(features)
        if self.raw_features is not None:
            features = features + self.raw_features(raw)  # (batch, gh, gw, cell_dim)
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


class RawAdapter(nn.Module):
    """Each cell's raw encoder features, normalised and projected through `rank` dimensions
    onto what the decoder reads of a cell (cell_dim), to be added to it. The projection's
    second layer starts at zero, so a decoder given one captions exactly as before until it
    learns (learn.py)."""

    def __init__(self, encoder_dim: int, cell_dim: int, rank: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(encoder_dim, elementwise_affine=False)
        self.down = nn.Linear(encoder_dim, rank, bias=False)
        self.up = nn.Linear(rank, cell_dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        """(..., encoder_dim) -> (..., cell_dim)."""
        return self.up(self.down(self.norm(raw)))


def _save_flat_names(
    decoder: Decoder, state_dict: dict[str, torch.Tensor], prefix: str, local_metadata: dict
) -> None:
    """state_dict post-hook: "attention.encoder_att.weight" is saved as "encoder_att.weight",
    in the order nn.Module gave when the decoder held everything itself: its own tensors (the
    names without a dot) before its layers'. The decoder's keys are the last in `state_dict`
    when the hook runs, so putting them back at its end keeps everyone else's order."""
    submodules = set(MOVED_TO.values())
    flat = {}  # key -> its saved name
    for key in [k for k in state_dict if k.startswith(prefix)]:
        submodule, _, name = key.removeprefix(prefix).partition(".")
        flat[key] = name if submodule in submodules else key.removeprefix(prefix)
    for key in sorted(flat, key=lambda key: "." in flat[key]):
        state_dict[prefix + flat[key]] = state_dict.pop(key)


def _load_flat_names(
    decoder: Decoder, state_dict: dict[str, torch.Tensor], prefix: str, *_
) -> None:
    """load_state_dict pre-hook: "encoder_att.weight" is loaded into attention.encoder_att. A
    name this decoder lacks (a copy head's, into a decoder without one) is left as it is, so
    the error names it as the file does."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        name = key.removeprefix(prefix)
        held_by = name.split(".")[0]
        if held_by in MOVED_TO and getattr(decoder, held_by, None) is not None:
            state_dict[f"{prefix}{MOVED_TO[held_by]}.{name}"] = state_dict.pop(key)
