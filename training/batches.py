"""Training pairs (photo, one caption) and length-bucketed batches of them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset, Sampler

from captioner.vocab import Vocabulary
from training.readers import Sample


class CaptionPairs(Dataset):
    """Every (photo, reference caption) pair; an epoch sees each caption once.

    `load` turns a photo path into the model's input: cached features (frozen encoder) or
    preprocessed pixels (fine-tuning).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        vocab: Vocabulary,
        load: Callable[[Path], torch.Tensor],
        max_length: int = 50,
    ) -> None:
        self.load = load
        self.pairs: list[tuple[Path, list[int]]] = []
        self.clipped = 0
        for sample in samples:
            for tokens in sample.tokens:  # tokenized once, also for the vocabulary
                ids = vocab.encode_tokens(tokens)  # <start> words <end>
                if len(ids) - 2 > max_length:
                    ids = ids[: max_length + 1] + [vocab.end_id]
                    self.clipped += 1
                self.pairs.append((sample.image_path, ids))

    def __len__(self) -> int:
        return len(self.pairs)

    def lengths(self) -> list[int]:
        return [len(ids) for _, ids in self.pairs]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        path, ids = self.pairs[index]
        return self.load(path), torch.tensor(ids)


def collate(items: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack inputs; pad captions with <pad> (id 0) to the longest in the batch."""
    inputs = torch.stack([x for x, _ in items])
    captions = torch.nn.utils.rnn.pad_sequence([c for _, c in items], batch_first=True)
    return inputs, captions  # (batch, ...), (batch, longest)


class BucketBatchSampler(Sampler[list[int]]):
    """Shuffled batches of captions of similar length, so little compute goes to padding.

    Each epoch: shuffle, cut into pools of `pool_batches` batches, sort each pool by length,
    batch it, shuffle the batches. The order depends only on (seed, epoch), which makes a
    resumed run see the same batches. With several processes, each global batch is split
    between ranks (rank r takes every world-th item), so any world size trains on the same
    global batches.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pool_batches: int = 50,
    ) -> None:
        self.lengths = torch.tensor(lengths)
        self.batch_size, self.seed = batch_size, seed
        self.rank, self.world_size, self.pool_batches = rank, world_size, pool_batches
        self.epoch, self.skip_batches = 0, 0

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        """Batches of `epoch`, less the first `skip_batches` (done before an interruption)."""
        self.epoch, self.skip_batches = epoch, skip_batches

    def global_batches(self) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator)
        pool_size = self.batch_size * self.pool_batches
        batches = []
        for start in range(0, len(order), pool_size):
            pool = order[start : start + pool_size]
            pool = pool[torch.argsort(self.lengths[pool], stable=True)]
            batches += [
                pool[i : i + self.batch_size].tolist() for i in range(0, len(pool), self.batch_size)
            ]
        shuffle = torch.randperm(len(batches), generator=generator).tolist()
        return [batches[i] for i in shuffle]

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches()[self.skip_batches :]:
            if len(batch) >= self.world_size:  # a rank with nothing to do would stall the others
                yield batch[self.rank :: self.world_size]

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)
