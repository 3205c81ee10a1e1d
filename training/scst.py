"""Self-critical sequence training (Rennie et al. 2017): REINFORCE on the metric people report.

Per image the model draws K captions from its own distribution; each is rewarded with its
CIDEr-D against the image's training references, and the loss raises the log-probability of
the captions that scored above a baseline and lowers that of the others:

    loss = -sum_samples (reward - baseline) * sum_t log p(w_t)

The baseline is the mean reward of the image's other K - 1 samples ("new self-critical", as in
ruotianluo's self-critical.pytorch; unbiased, and needs no extra decoding), or the reward of
the model's greedy caption (the paper's). The sampled `<end>` is scored as a word, so a caption
cut off at the length limit earns less than one the model finished.
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
from training.model import CaptionModel, mixed_precision
from training.readers import Sample

BASELINES = ("mean", "greedy")
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
    nltk's BLEU costs about 0.2 ms per caption against 5 references (one CPU core), 70 ms
    for a batch of 64 images x 5 samples, so the mix slows training."""

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


def candidates(words: torch.Tensor) -> list[list[int]]:
    """The (rows, steps) drawn ids as the scorer reads them: each row without its padding."""
    return [[w for w in row if w != Vocabulary.pad_id] for row in words.tolist()]


def rewards(scorer: Scorer, images: Sequence[int], drawn: Drawn, num_samples: int) -> torch.Tensor:
    """(len(images), num_samples) CIDEr-D of the drawn captions of `images`."""
    indices = np.repeat(np.asarray(images), num_samples)
    scores = np.asarray(scorer.scores(indices.tolist(), candidates(drawn.words)), dtype=np.float32)
    return torch.from_numpy(scores).view(len(images), num_samples)


def mean_of_others(rewards: torch.Tensor) -> torch.Tensor:
    """(images, K) -> (images, K): each sample's baseline, the mean reward of the image's
    other K - 1 samples (K >= 2)."""
    num_samples = rewards.shape[1]
    return (rewards.sum(1, keepdim=True) - rewards) / (num_samples - 1)


def scst_loss(log_probs: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """Summed policy-gradient loss: -(reward - baseline) * log p(caption), over (rows,)
    captions. A sum, so the caller can divide by the tokens drawn over all processes."""
    return -(advantages.detach() * log_probs).sum()


class SelfCritical:
    """The SCST objective of one batch of (inputs, image indices), and the epoch's statistics.

    `trained` is a CaptionSampler, or its DistributedDataParallel wrapper under torchrun.
    """

    def __init__(
        self,
        trained: nn.Module,
        model: CaptionModel,
        scorer: Scorer,
        world: Distributed,
        *,
        num_samples: int,
        baseline: str,
        max_length: int,
    ) -> None:
        if baseline not in BASELINES or num_samples < (2 if baseline == "mean" else 1):
            raise ValueError(f"baseline one of {BASELINES}; the mean of others needs 2 samples")
        self.trained, self.greedy = trained, CaptionSampler(model)
        self.scorer, self.world = scorer, world
        self.num_samples, self.baseline, self.max_length = num_samples, baseline, max_length
        self.sums = dict.fromkeys(("reward", "baseline", "length", "entropy", "captions"), 0.0)

    def __call__(
        self, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device
    ) -> tuple[torch.Tensor, float, int]:
        """The loss to back-propagate (per token drawn over all processes, the usual
        normalisation, as cross-entropy's), the summed loss of this process's captions, and
        the tokens drawn over all processes."""
        inputs, images = batch[0].to(device), batch[1].tolist()
        global_images = int(self.world.sum(len(images)))
        noise = SharedNoise(global_images, self.num_samples, self.world, device)
        with mixed_precision(device):
            drawn = self.trained(inputs, self.num_samples, self.max_length, noise)
        reward = rewards(self.scorer, images, drawn, self.num_samples)  # (images, K)
        if self.baseline == "mean":
            baseline = mean_of_others(reward)
        else:
            model = self.greedy.model
            model.eval()
            with torch.no_grad(), mixed_precision(device):
                greedy = self.greedy(inputs, 1, self.max_length)
            model.train()
            baseline = rewards(self.scorer, images, greedy, 1).expand_as(reward)
        advantages = (reward - baseline).flatten().to(device)  # (images * K,)
        summed = scst_loss(drawn.log_probs, advantages)
        tokens = int(self.world.sum(float(drawn.lengths.sum())))
        batch_sums = {
            "reward": float(reward.sum()),
            "baseline": float(baseline.sum()),
            "length": float(drawn.lengths.sum()),
            "entropy": float(drawn.entropy.sum()),
            "captions": float(reward.numel()),
        }
        for key, value in batch_sums.items():
            self.sums[key] += self.world.sum(value)
        return self.world.world_size * summed / tokens, summed.item(), tokens

    def epoch_row(self) -> dict:
        """The log's SCST columns for the batches run since the last call (in a resumed
        epoch, those since it resumed), and a fresh start for the next epoch: mean sample
        reward and baseline, mean caption length (tokens, <end> included) and the mean
        entropy of the word distributions drawn from (nats per token)."""
        s = self.sums
        captions, tokens = max(s["captions"], 1.0), max(s["length"], 1.0)
        row = {
            "sample_reward": round(s["reward"] / captions, 6),
            "baseline_reward": round(s["baseline"] / captions, 6),
            "caption_length": round(s["length"] / captions, 3),
            "entropy": round(s["entropy"] / tokens, 6),
        }
        self.sums = dict.fromkeys(self.sums, 0.0)
        return row


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
