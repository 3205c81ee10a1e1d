"""Where a run stands, and the checkpoint files that let `--resume` continue it exactly.

A run's last/ is a model directory (captioner/checkpoint.py) plus two files: the optimizer
moments and RNG states as tensors (safetensors), and the rest as JSON (no pickle). The JSON's
"progress" object is a `TrainingState`, field for field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from captioner import Captioner
from captioner.files.checkpoint import write_model_files
from captioner.photos.atomic import write_dir_atomically

STATE_TENSORS, STATE_JSON = "training_state.safetensors", "training_state.json"


@dataclass
class TrainingState:
    """Epochs and batches done, the running loss of the epoch under way, and the best score."""

    epoch: int = 0  # epochs finished
    batch: int = 0  # batches of the next epoch finished
    loss_sum: float = 0.0  # summed cross-entropy of those batches, over every process
    tokens: int = 0  # words they held
    best: float = -math.inf  # the best epoch's score (the model selection metric)
    best_epoch: int = 0
    stale_epochs: int = 0  # epochs since the best one

    @property
    def train_loss(self) -> float:
        """Cross-entropy per word of the epoch under way."""
        return self.loss_sum / max(self.tokens, 1)

    def end_epoch(self, score: float) -> bool:
        """Count the epoch just trained and validated; returns whether `score` is a new best."""
        improved = score > self.best
        self.epoch, self.batch, self.loss_sum, self.tokens = self.epoch + 1, 0, 0.0, 0
        if improved:
            self.best, self.best_epoch, self.stale_epochs = score, self.epoch, 0
        else:
            self.stale_epochs += 1
        return improved


def save_model(
    directory: Path,
    captioner: Captioner,
    training: dict,
    add_files: Callable[[Path], None] | None = None,
) -> None:
    """Replace `directory` by the model `Captioner.load` reads, atomically; `training` goes to
    config.json's "training" section, and `add_files(folder)` may add files (last/'s state)."""
    files = captioner.model_files({"training": training})

    def write(folder: Path) -> None:
        write_model_files(folder, *files)
        if add_files:
            add_files(folder)

    write_dir_atomically(directory, write)


def save_training_state(
    directory: Path,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau,
    state: TrainingState,
    options: dict,
) -> None:
    """Optimizer moments, RNG states, scheduler, progress and the options --resume keeps."""
    optimizer_state = optimizer.state_dict()
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    for index, moments in optimizer_state["state"].items():
        for name, value in moments.items():
            # A conv weight's moments keep its memory format (channels_last under a fine-tuned
            # encoder), and safetensors writes only contiguous tensors.
            tensors[f"optimizer.{index}.{name}"] = value.detach().cpu().contiguous()
    save_file(tensors, directory / STATE_TENSORS)
    meta = {"progress": asdict(state), "optimizer_param_groups": optimizer_state["param_groups"],
            "scheduler": scheduler.state_dict(), "options": options}  # fmt: skip
    (directory / STATE_JSON).write_text(json.dumps(meta, indent=1) + "\n")


def saved_options(directory: Path) -> dict:
    """The options a checkpoint saved for --resume to keep; none in one from before they were
    saved."""
    return json.loads((directory / STATE_JSON).read_text()).get("options", {})


def load_training_state(
    directory: Path,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau,
) -> TrainingState:
    """Restore the optimizer, scheduler and RNG states saved in `directory` (the weights are
    the model directory's, which `Captioner.load` reads); returns where the run stands."""
    tensors = load_file(directory / STATE_TENSORS)
    meta = json.loads((directory / STATE_JSON).read_text())
    moments: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            moments.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": moments, "param_groups": meta["optimizer_param_groups"]})
    scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)
    return TrainingState(**meta["progress"])
