"""This process's place in a torchrun launch: the one reading of RANK, WORLD_SIZE and LOCAL_RANK.

The batch command only needs to know its share of the photos and its GPU; training also joins
the process group, so its processes can wait for each other and add up their numbers. Without
torchrun's variables there is one process and every method here is free.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # which of this machine's GPUs is this process's

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size or self.local_rank < 0:
            raise ValueError(
                f"RANK={self.rank}, WORLD_SIZE={self.world_size}, LOCAL_RANK={self.local_rank}: "
                "expected 0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0"
            )

    @classmethod
    def from_environment(cls, environment: Mapping[str, str] = os.environ) -> Distributed:
        """torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; without them this is a single process.

        Raises ValueError with a one-line reason when they are not whole numbers in range.
        """
        world_size = _whole_number(environment, "WORLD_SIZE", default=1)
        if world_size == 1:
            return cls()
        return cls(
            rank=_whole_number(environment, "RANK", default=None),
            world_size=world_size,
            local_rank=_whole_number(environment, "LOCAL_RANK", default=0),
        )

    @property
    def launched(self) -> bool:
        """Started by torchrun with more than one process."""
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """The process that logs and saves: rank 0."""
        return self.rank == 0

    def local_device(self, device: torch.device) -> torch.device:
        """The device this process runs on: under torchrun a CUDA device is its own GPU.

        Every process asking for "cuda" (or "auto" on a CUDA machine) would otherwise share the
        first GPU, and DistributedDataParallel needs one GPU per process.
        """
        if self.launched and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def start(self, device: torch.device) -> None:
        """Join the process group (training): NCCL between GPUs, Gloo between CPU processes."""
        if not self.launched:
            return
        if device.type == "cuda":
            torch.cuda.set_device(device)  # before the group, so NCCL uses this process's GPU
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    def stop(self) -> None:
        if self.launched:
            dist.destroy_process_group()

    def barrier(self) -> None:
        if self.launched:
            dist.barrier()

    def sum(self, value: float) -> float:
        """`value` added up over every process (itself when there is one)."""
        if not self.launched:
            return value
        # NCCL reduces only tensors on this process's GPU; Gloo only tensors in memory.
        device = torch.cuda.current_device() if dist.get_backend() == "nccl" else "cpu"
        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.item()


def _whole_number(environment: Mapping[str, str], name: str, default: int | None) -> int:
    text = environment.get(name)
    if text is None and default is not None:
        return default
    if text is None or not text.strip().isdigit():
        raise ValueError(f"{name}={text!r}: torchrun sets it to a whole number")
    return int(text)
