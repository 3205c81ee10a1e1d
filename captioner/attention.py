"""Additive soft attention with a context gate ("Show, Attend and Tell", Xu et al. 2015, 4.2).

Before each word the decoder asks where in the image to look: every cell of the feature grid has
a key, the decoder's hidden state (and, optionally, the word it is reading) makes a query, and

    alpha_i = softmax_i( w . act(K f_i + Q h) )

weights the cells. A gate beta = sigmoid(G h) then says how much of the attended features the
decoder lets in at this word: little for "a" or "of", much for a noun.

The layers keep the names of the PyTorch tutorial's Attention module (sgrvinod/a-PyTorch-Tutorial-
to-Image-Captioning), whose weights tutorial_import reads into these.
"""

from __future__ import annotations

import torch
from torch import nn

ATTENTION_ACTIVATIONS = ("tanh", "relu")
# "scalar": the paper's one gate for the whole context; "channel": one gate per feature
# channel, as the PyTorch tutorial's f_beta.
CONTEXT_GATES = ("scalar", "channel")


class Attention(nn.Module):
    def __init__(
        self,
        feature_dim: int,
        decoder_dim: int,
        attention_dim: int,
        word_dim: int | None = None,
        activation: str = "tanh",
        gate: str = "scalar",
    ) -> None:
        """`word_dim`: the word embedding's size, if the query reads the word too (see
        DecoderConfig.word_attention); `activation` one of ATTENTION_ACTIVATIONS, `gate` one of
        CONTEXT_GATES."""
        super().__init__()
        self.attention_dim = attention_dim
        self.activation = activation
        self.encoder_att = nn.Linear(feature_dim, attention_dim)  # keys
        self.decoder_att = nn.Linear(decoder_dim, attention_dim)  # the state's query
        self.word_att = nn.Linear(word_dim, attention_dim) if word_dim is not None else None
        # No bias: softmax ignores a shift, so its gradient is pure rounding noise that Adam
        # would blow up into full-size steps.
        self.full_att = nn.Linear(attention_dim, 1, bias=False)
        self.context_gate = nn.Linear(decoder_dim, feature_dim if gate == "channel" else 1)

    def keys(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, num_pixels, feature_dim) -> (batch, num_pixels, attention_dim); computed once
        per image, as they do not change from word to word."""
        return self.encoder_att(features)

    def forward(
        self, keys: torch.Tensor, h: torch.Tensor, embedded_words: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention weights (rows, num_pixels) and the context gate for (batch * beams) rows,
        beams inner: their hidden state `h` (rows, decoder_dim) from the last step and the
        embedding (rows, word_dim) of the word they read now. The gate is (rows, 1), or
        (rows, feature_dim) with a gate per channel."""
        batch, num_pixels, _ = keys.shape
        query = self.decoder_att(h)  # (rows, attention_dim)
        if self.word_att is not None:
            query = query + self.word_att(embedded_words)
        query = query.view(batch, -1, 1, self.attention_dim)  # (batch, beams, 1, A)
        # In place: this is the decoder's largest tensor; allocating a second one for the
        # activation's output costs more than the arithmetic (docs/reports/benchmarks.md).
        energy = keys.unsqueeze(1) + query  # (batch, beams, num_pixels, A)
        energy = energy.relu_() if self.activation == "relu" else energy.tanh_()
        alpha = self.full_att(energy).squeeze(-1).softmax(dim=-1)  # (batch, beams, num_pixels)
        gate = torch.sigmoid(self.context_gate(h))  # (rows, 1 or feature_dim)
        return alpha.reshape(-1, num_pixels), gate
