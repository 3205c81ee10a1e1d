"""Soft-attention recurrent decoder ("Show, Attend and Tell", Xu et al. 2015).

At every word the decoder scores each cell of the image's feature grid against its hidden state
(additive attention), averages the features with those weights, scales the average by a learned
scalar gate, and feeds [word embedding, gated context] to its recurrent cell.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

# Pre-activation blocks per cell: LSTM (input, forget, cell, output), GRU (reset, update, new).
GATE_BLOCKS = {"lstm": 4, "gru": 3, "rnn": 1}
START_STATES = ("mean", "learned")


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


class StepOutput(NamedTuple):
    logits: torch.Tensor  # (rows, vocab_size)
    state: DecoderState
    alpha: torch.Tensor  # (rows, num_pixels) attention weights, each row sums to 1
    beta: torch.Tensor  # (rows,) the context gate
    gates: dict[str, torch.Tensor]  # name -> (rows, decoder_dim) activations, e.g. LSTM "input"


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
        feature_dim = c.encoder_dim + (2 if c.coordinates else 0)
        self.embedding = nn.Embedding(c.vocab_size, c.embed_dim)
        self.feature_norm = nn.LayerNorm(c.encoder_dim) if c.normalize_features else nn.Identity()
        self.encoder_att = nn.Linear(feature_dim, c.attention_dim)
        self.decoder_att = nn.Linear(c.decoder_dim, c.attention_dim)
        self.word_att = nn.Linear(c.embed_dim, c.attention_dim) if c.word_attention else None
        # No bias: softmax ignores a shift, so its gradient is pure rounding noise that Adam
        # would blow up into full-size steps.
        self.full_att = nn.Linear(c.attention_dim, 1, bias=False)
        self.context_gate = nn.Linear(c.decoder_dim, 1)
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

    def prepare(self, features: torch.Tensor) -> ImageMemory:
        """(batch, grid_h, grid_w, encoder_dim) -> the per-image memory `step` reads."""
        features = self._grid_cells(features)  # (batch, num_pixels, feature_dim)
        context_weight = self._context_weight()  # (gates, feature_dim)
        gates, feature_dim = context_weight.shape
        num_pixels = features.shape[1]
        # Multiply-adds per beam and step: weighted sum of projected rows vs average + matmul.
        project = num_pixels * gates < feature_dim * (num_pixels + gates)
        return ImageMemory(
            features=features,
            attention_keys=self.encoder_att(features),
            projected_features=features @ context_weight.T if project else None,
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
        """Attention weights and the context gate for (batch * beams) rows: their hidden
        state `h` from the last step and the embedding of the word they read now."""
        batch, num_pixels, _ = memory.attention_keys.shape
        query = self.decoder_att(h)  # (rows, attention_dim)
        if self.word_att is not None:
            query = query + self.word_att(embedded_words)
        query = query.view(batch, -1, 1, self.config.attention_dim)
        # In place: this is the decoder's largest tensor; allocating a second one for tanh's
        # output costs more than the arithmetic (7x slower decoding at 196 cells on a CPU).
        energy = (memory.attention_keys.unsqueeze(1) + query).tanh_()  # (batch, beams, P, A)
        alpha = self.full_att(energy).squeeze(-1).softmax(dim=-1)  # (batch, beams, num_pixels)
        beta = torch.sigmoid(self.context_gate(h)).squeeze(-1)  # (batch * beams,)
        return alpha.reshape(-1, num_pixels), beta

    def step(self, words: torch.Tensor, state: DecoderState, memory: ImageMemory) -> StepOutput:
        """One word for each of (batch * beams) rows; rows are grouped by image, beams inner."""
        batch = memory.features.shape[0]
        embedded_words = self.embedding(words)  # (rows, embed_dim)
        alpha, beta = self.attend(memory, state.h, embedded_words)  # (rows, P), (rows,)
        weights = (alpha * beta.unsqueeze(-1)).view(batch, -1, alpha.shape[-1])
        if memory.projected_features is not None:
            context_in = torch.bmm(weights, memory.projected_features)  # (batch, beams, gates)
            context_in = context_in.flatten(0, 1)  # (rows, gates)
        else:
            context = torch.bmm(weights, memory.features).flatten(0, 1)  # (rows, feature_dim)
            context_in = context @ self._context_weight().T  # (rows, gates)
        word_weight = self.input_proj.weight[:, : self.config.embed_dim]
        cell_in = F.linear(embedded_words, word_weight, self.input_proj.bias) + context_in
        new_state, gates = self._cell(cell_in, state)
        logits = self.output(self.dropout(new_state.h))
        return StepOutput(logits, new_state, alpha, beta, gates)

    def forward(
        self, features: torch.Tensor, captions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: predict captions[:, 1:] from captions[:, :-1].

        features: (batch, grid_h, grid_w, encoder_dim); captions: (batch, length) ids starting
        with <start>, padded after <end>. Returns logits (batch, length - 1, vocab_size) and
        attention weights (batch, length - 1, num_pixels). This is the direct form of `step`
        (context projected after averaging), which is cheaper when captions are shorter than
        the grid has cells.
        """
        features = self._grid_cells(features)  # (batch, num_pixels, feature_dim)
        memory = ImageMemory(features, self.encoder_att(features), None)
        state = self.initial_state(memory)
        embeddings = self.embedding(captions)  # (batch, length, embed_dim)
        all_logits, all_alphas = [], []
        for t in range(captions.shape[1] - 1):
            alpha, beta = self.attend(memory, state.h, embeddings[:, t])  # (batch, P), (batch,)
            context = torch.bmm(alpha.unsqueeze(1), memory.features).squeeze(1)  # (batch, enc)
            cell_in = self.input_proj(torch.cat([embeddings[:, t], beta.unsqueeze(1) * context], 1))
            state, _ = self._cell(cell_in, state)
            all_logits.append(self.output(self.dropout(state.h)))
            all_alphas.append(alpha)
        return torch.stack(all_logits, 1), torch.stack(all_alphas, 1)

    def _grid_cells(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, grid_h, grid_w, encoder_dim) -> (batch, num_pixels, feature_dim)."""
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
