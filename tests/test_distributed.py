"""captioner.distributed: reading torchrun's environment, and the GPU each process takes."""

from __future__ import annotations

import pytest
import torch

from captioner.distributed import Distributed


def test_without_torchrun_there_is_one_main_process():
    world = Distributed.from_environment({})
    assert world == Distributed(rank=0, world_size=1, local_rank=0)
    assert world.main and not world.launched
    assert world.sum(2.5) == 2.5  # no process group needed
    world.barrier()


def test_torchrun_variables_give_rank_world_size_and_local_rank():
    world = Distributed.from_environment({"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1"})
    assert world == Distributed(rank=5, world_size=8, local_rank=1)
    assert world.launched and not world.main
    assert Distributed.from_environment({"RANK": "0", "WORLD_SIZE": "2"}).local_rank == 0


def test_a_world_of_one_ignores_the_other_variables():
    assert Distributed.from_environment({"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "3"}) == (
        Distributed()
    )


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two'"),
        ({"WORLD_SIZE": "2"}, "RANK=None"),
        ({"WORLD_SIZE": "2", "RANK": "-1"}, "RANK='-1'"),
        ({"WORLD_SIZE": "2", "RANK": "2"}, "expected 0 <= RANK < WORLD_SIZE"),
        ({"WORLD_SIZE": "0", "RANK": "0"}, "expected 0 <= RANK < WORLD_SIZE"),
        ({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "x"}, "LOCAL_RANK='x'"),
    ],
)
def test_bad_variables_are_one_line_errors(environment, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Distributed.from_environment(environment)


def test_each_launched_process_takes_its_own_gpu():
    world = Distributed(rank=3, world_size=4, local_rank=1)
    assert world.local_device(torch.device("cuda")) == torch.device("cuda", 1)
    assert world.local_device(torch.device("cuda", 0)) == torch.device("cuda", 1)
    assert world.local_device(torch.device("cpu")) == torch.device("cpu")
    assert Distributed().local_device(torch.device("cuda")) == torch.device("cuda")
