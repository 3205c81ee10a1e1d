"""What self-critical sequence training (training/objectives.py) draws and scores: captions
sampled from the model with gradients through the decoder, the same noise on every process, and
rewards against the training references.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
import torch
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from torch import nn
from torch.utils.data import Dataset

from captioner.distributed import Distributed
from captioner.rules import apply_rules, decoding_rules
from captioner.sampling import gumbel_noise
from captioner.vocab import Vocabulary
from training.model import CaptionModel
from training.readers import Sample

# Sentence BLEU-4 of a caption sharing no 4-gram would be 0 whatever its shorter n-grams; a tiny
# count for the missing ones (Chen and Cherry 2014's method 1) keeps them ranked.
_smoothing = SmoothingFunction().method1


class Scorer(Protocol):
    """training.cider.CiderD: one score per candidate (token ids ending in <end> when the
    caption ended) against the references of its image (an index into the training images)."""

    def scores(
        self, image_indices: Sequence[int], candidates: Sequence[Sequence[int]]
    ) -> np.ndarray: ...


class MixedReward:
    """CIDEr-D plus `bleu_weight` times sentence BLEU-4 against the same references, for
    --scst-bleu-weight: BLEU rewards the exact wording CIDEr-D's tf-idf weighting discounts.
    nltk scores one caption at a time in Python, so the mix slows training."""

    def __init__(
        self, cider: Scorer, references: Sequence[Sequence[Sequence[int]]], bleu_weight: float
    ) -> None:
        self.cider, self.references, self.bleu_weight = cider, references, bleu_weight

    def scores(
        self, image_indices: Sequence[int], candidates: Sequence[Sequence[int]]
    ) -> np.ndarray:
        bleu = [
            sentence_bleu(self.references[i], list(c), smoothing_function=_smoothing) if c else 0.0
            for i, c in zip(image_indices, candidates, strict=True)
        ]
        return self.cider.scores(image_indices, candidates) + self.bleu_weight * np.array(bleu)


class Photos(Dataset):
    """The training images once each, as (model input, index into `samples`)."""

    def __init__(self, samples: Sequence[Sample], load: Callable[[Path], torch.Tensor]) -> None:
        self.samples, self.load = samples, load

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.load(self.samples[index].image_path), index


def reference_ids(samples: Sequence[Sample], vocab: Vocabulary) -> list[list[list[int]]]:
    """Per image, its reference captions as the scorer reads them: word ids, then <end>."""
    return [[vocab.encode_tokens(tokens)[1:] for tokens in s.tokens] for s in samples]


class Drawn(NamedTuple):
    """Captions decoded for (images * K) rows, an image's K rows together."""

    words: torch.Tensor  # (rows, steps) ids: words, <end> if the caption ended, then <pad>
    log_probs: torch.Tensor  # (rows,) summed log p of the words and <end>, with gradient
    lengths: torch.Tensor  # (rows,) tokens drawn, <end> included
    entropy: torch.Tensor  # (rows,) summed entropy of the distributions drawn from (no gradient)


class CaptionSampler(nn.Module):
    """Decodes captions with gradients through the decoder; the module DDP wraps under
    torchrun, as it wraps CaptionModel in cross-entropy training."""

    def __init__(self, model: CaptionModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        inputs: torch.Tensor,
        num_samples: int,
        max_length: int,
        noise: SharedNoise | None = None,
    ) -> Drawn:
        """`num_samples` captions per image of `inputs`, at most `max_length` tokens each
        (<end> included; one still going then is cut off without it), drawn with `noise`'s
        Gumbel noise; without noise, the most probable word at each step (greedy)."""
        decoder = self.model.decoder
        memory = decoder.prepare(self.model.features(inputs))
        state = decoder.initial_state(memory).repeat_rows(num_samples)
        rows, device = state.h.shape[0], state.h.device
        words = torch.full((rows,), Vocabulary.start_id, dtype=torch.long, device=device)
        # As beam search's, so the policy is never rewarded for a caption it could not return.
        rules = decoding_rules(decoder, end_id=Vocabulary.end_id, device=device)
        going = torch.ones(rows, dtype=torch.bool, device=device)
        history = torch.empty((rows, 0), dtype=torch.long, device=device)  # (rows, t)
        log_probs, entropies = [], []
        for _ in range(max_length):
            out = decoder.step(words, state, memory)
            # A copy model's logits are already log-probabilities; log_softmax renormalises
            # both kinds after the rules.
            log_p = apply_rules(rules, out.logits.float(), history).log_softmax(-1)  # (rows, vocab)
            p = log_p.detach().exp()
            scores = log_p.detach()
            if noise is not None:  # Gumbel-max: the argmax of log p + Gumbel noise draws from p
                scores = scores + noise.draw(scores.shape[1])
            words = scores.argmax(-1)  # (rows,)
            chosen = log_p.gather(1, words.unsqueeze(1)).squeeze(1)
            entropy = -(p * log_p.detach().clamp_min(torch.finfo(p.dtype).min)).sum(-1)
            log_probs.append(torch.where(going, chosen, 0.0))
            entropies.append(torch.where(going, entropy, 0.0))
            words = words.masked_fill(~going, Vocabulary.pad_id)
            history = torch.cat([history, words.unsqueeze(1)], 1)
            going = going & (words != Vocabulary.end_id)
            if not bool(going.any()):
                break
            state = out.state
        return Drawn(
            history,
            torch.stack(log_probs, 1).sum(1),
            (history != Vocabulary.pad_id).sum(1),
            torch.stack(entropies, 1).sum(1),
        )


class SharedNoise:
    """The Gumbel noise of one global batch's draws, the same whichever process draws it.

    Every process seeds a generator alike (from the global torch RNG, in step on all processes
    and saved by last/ for an exact --resume), draws the noise of the whole global batch, and
    keeps the rows of its own images: rank r holds images r, r + W, r + 2W, ... of the global
    batch (the batch sampler's split). So 1 or W processes draw the same captions for an image,
    and DDP trains the same model as one process, as with cross-entropy.
    """

    def __init__(
        self, global_images: int, num_samples: int, world: Distributed, device: torch.device
    ) -> None:
        seed = int(torch.randint(2**62, ()))
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.shape = (global_images, num_samples)
        self.world, self.device = world, device

    def draw(self, vocab_size: int) -> torch.Tensor:
        """(rows, vocab_size) noise for this process's rows: its images' samples, image by
        image (the order of DecoderState.repeat_rows)."""
        uniform = torch.rand(
            (*self.shape, vocab_size), generator=self.generator, device=self.device
        )
        return gumbel_noise(uniform[self.world.rank :: self.world.world_size].flatten(0, 1))


def collapse_warnings(log: Sequence[dict]) -> list[str]:
    """What an SCST run's log (log.jsonl's rows, the last just written) says went wrong: the
    mean sample reward below half its first epoch's (the policy is drifting off good
    captions), or validation CIDEr below half its best so far."""
    warnings = []
    first, last = log[0], log[-1]
    if last["sample_reward"] < 0.5 * first["sample_reward"]:
        warnings.append(
            f"mean sample reward {last['sample_reward']:.3f} is below half of the first "
            f"epoch's {first['sample_reward']:.3f}: lower --lr, or resume from best/"
        )
    best = max((row["CIDEr"] for row in log[:-1] if "CIDEr" in row), default=None)
    if best is not None and "CIDEr" in last and last["CIDEr"] < 0.5 * best:
        warnings.append(
            f"validation CIDEr {last['CIDEr']:.3f} collapsed below half of its best "
            f"{best:.3f}: lower --lr, or resume from best/"
        )
    return warnings
