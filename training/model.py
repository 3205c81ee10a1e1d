"""What captioner-train trains: the encoder-decoder pair, its loss, and its configuration from
the command line.

A run's model options are the fields of EncoderConfig and DecoderConfig under their
command-line names; their defaults are the dataclasses' own, so they are written once.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from captioner.decoder import Decoder, DecoderConfig
from captioner.encoder import Encoder, EncoderConfig
from captioner.vocab import Vocabulary

if TYPE_CHECKING:  # train_run reads the options' defaults from here
    from training.train_run import TrainRun

# Options the model is built from, and where a run's config.json records each. Resuming
# rebuilds the model from config.json, so a different value on the command line is refused.
MODEL_OPTIONS = {
    "encoder": ("encoder", "name"),
    "encoder_weights": ("encoder", "weights"),
    "image_size": ("encoder", "image_size"),
    "feature_stride": ("encoder", "feature_stride"),
    "grid_size": ("encoder", "grid_size"),
    "fine_tune_blocks": ("encoder", "fine_tune_blocks"),
    "cell": ("decoder", "cell"),
    "start_state": ("decoder", "start_state"),
    "coordinates": ("decoder", "coordinates"),
    "word_attention": ("decoder", "word_attention"),
    "normalize_features": ("decoder", "normalize_features"),
    "embed_dim": ("decoder", "embed_dim"),
    "decoder_dim": ("decoder", "decoder_dim"),
    "attention_dim": ("decoder", "attention_dim"),
    "dropout": ("decoder", "dropout"),
    "copy_nouns": ("decoder", "copy_nouns"),  # a flag here, the number of nouns in config.json
    "semantic_features": ("decoder", "semantic_features"),
}
_CONFIGS = {"encoder": EncoderConfig, "decoder": DecoderConfig}


def config_default(option: str) -> object:
    """The default of a model option: that of the config field it sets."""
    section, key = MODEL_OPTIONS[option]
    return next(f.default for f in dataclasses.fields(_CONFIGS[section]) if f.name == key)


def model_option_values(config: dict) -> dict:
    """The model options a saved model's config.json records, by option name (copy_nouns as
    the flag the command line gives)."""
    values = {dest: config[section].get(key) for dest, (section, key) in MODEL_OPTIONS.items()}
    values["copy_nouns"] = bool(values["copy_nouns"])
    return values


def _fields(run: TrainRun, section: str) -> dict:
    return {
        key: getattr(run, dest) for dest, (part, key) in MODEL_OPTIONS.items() if part == section
    }


def encoder_config(run: TrainRun) -> EncoderConfig:
    return EncoderConfig(**_fields(run, "encoder"))


def decoder_config(
    run: TrainRun, vocab_size: int, encoder_dim: int, copy_nouns: int
) -> DecoderConfig:
    """The decoder the options describe, for a vocabulary and an encoder; `copy_nouns` is the
    number of nouns the decoder copies (0: none)."""
    fields = {**_fields(run, "decoder"), "copy_nouns": copy_nouns}
    return DecoderConfig(vocab_size=vocab_size, encoder_dim=encoder_dim, **fields)


class CaptionModel(nn.Module):
    """The trainable pair. Inputs are cached features, or pixels when the encoder is fine-tuned."""

    def __init__(self, encoder: Encoder, decoder: Decoder) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def features(self, inputs: torch.Tensor) -> torch.Tensor:
        """(batch, grid_h, grid_w, encoder_dim) features: the inputs are, unless they are pixels."""
        return self.encoder(inputs) if self.encoder.trainable else inputs

    def forward(self, inputs: torch.Tensor, captions: torch.Tensor):
        return self.decoder(self.features(inputs), captions)

    def parameter_groups(self, lr: float, encoder_lr: float) -> list[dict]:
        """The optimizer's groups: the decoder's weights, then the fine-tuned encoder blocks'."""
        groups = [{"params": list(self.decoder.parameters()), "lr": lr}]
        if self.encoder.trainable:
            tuned = [p for p in self.encoder.parameters() if p.requires_grad]
            groups.append({"params": tuned, "lr": encoder_lr})
        return groups


def mixed_precision(device: torch.device) -> torch.autocast:
    """bfloat16 autocast on CUDA, where it is faster; full precision elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def caption_loss(
    logits: torch.Tensor, alphas: torch.Tensor, captions: torch.Tensor, attention_lambda: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy over real words, and the summed doubly stochastic penalty.

    logits (batch, T, vocab), alphas (batch, T, pixels), captions (batch, T + 1). The penalty
    lambda * sum_pixels (1 - sum_t alpha)^2 pushes every grid cell to get attention at some
    word. Sums (not means) let the caller divide by counts over all processes.
    """
    targets = captions[:, 1:]
    real = (targets != Vocabulary.pad_id).unsqueeze(-1)  # (batch, T, 1)
    cross_entropy = F.cross_entropy(
        logits.transpose(1, 2).float(), targets, ignore_index=Vocabulary.pad_id, reduction="sum"
    )
    coverage = (alphas.float() * real).sum(dim=1)  # (batch, pixels)
    penalty = attention_lambda * ((1.0 - coverage) ** 2).sum()
    return cross_entropy, penalty


def word_count(captions: torch.Tensor) -> int:
    """The words a batch of captions (batch, T + 1) asks the decoder for: all but <start> and
    padding."""
    return int((captions[:, 1:] != Vocabulary.pad_id).sum())
