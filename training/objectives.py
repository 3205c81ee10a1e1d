"""The objectives captioner-train minimises, each the loss of one batch: cross-entropy under
teacher forcing, then optionally self-critical sequence training.

Self-critical sequence training (Rennie et al. 2017) is REINFORCE on the metric people report.
Per image the model draws K captions from its own distribution (training/scst.py); each is
rewarded with its CIDEr-D against the image's training references, and the loss raises the
log-probability of the captions that scored above a baseline and lowers that of the others:

    loss = -sum_samples (reward - baseline) * sum_t log p(w_t)

The baseline is the mean reward of the image's other K - 1 samples ("new self-critical", as in
ruotianluo's self-critical.pytorch; unbiased, and needs no extra decoding), or the reward of
the model's greedy caption (the paper's). The sampled `<end>` is scored as a word, so a caption
cut off at the length limit earns less than one the model finished.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from captioner.distributed import Distributed
from captioner.vocab import Vocabulary
from training.model import CaptionModel, caption_loss, mixed_precision, word_count
from training.scst import CaptionSampler, Drawn, Scorer, SharedNoise

BASELINES = ("mean", "greedy")


class CrossEntropy:
    """Teacher forcing's objective of one batch of (inputs, captions).

    `trained` is the CaptionModel, or its DistributedDataParallel wrapper under torchrun.
    """

    def __init__(self, trained: nn.Module, world: Distributed, attention_lambda: float) -> None:
        self.trained, self.world, self.attention_lambda = trained, world, attention_lambda

    def __call__(
        self, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device
    ) -> tuple[torch.Tensor, float, int]:
        """The loss to back-propagate, the summed cross-entropy of this process's words, and
        the words over all processes."""
        inputs, captions = batch[0].to(device), batch[1].to(device)
        tokens = word_count(captions)
        global_tokens, global_captions = self.world.sum(tokens), self.world.sum(len(captions))
        with mixed_precision(device):
            logits, alphas = self.trained(inputs, captions)
        cross_entropy, penalty = caption_loss(logits, alphas, captions, self.attention_lambda)
        # DDP averages gradients over processes, hence the world-size factor.
        loss = self.world.world_size * (cross_entropy / global_tokens + penalty / global_captions)
        return loss, cross_entropy.item(), global_tokens

    def epoch_row(self) -> dict:
        return {}


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
