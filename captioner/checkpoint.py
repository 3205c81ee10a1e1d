"""A model is a directory: config.json, vocab.json and model.safetensors. Nothing is unpickled."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from captioner.vocab import Vocabulary

CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE = "config.json", "vocab.json", "model.safetensors"
FORMAT_VERSION = 1
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar")


class CheckpointError(ValueError):
    """A model directory that is missing, incomplete, or in a format we refuse to load."""


def save_model_dir(
    path: str | os.PathLike, config: dict, vocab: Vocabulary, tensors: dict[str, torch.Tensor]
) -> Path:
    """Write the three files into `path`, atomically: a crash leaves the old directory intact."""
    return write_dir_atomically(path, lambda tmp: write_model_files(tmp, config, vocab, tensors))


def write_model_files(
    directory: Path, config: dict, vocab: Vocabulary, tensors: dict[str, torch.Tensor]
) -> None:
    """The three files, written straight into `directory` (see `write_dir_atomically`)."""
    config = {"format_version": FORMAT_VERSION, **config}
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    vocab.save(directory / VOCAB_FILE)
    # save() rather than save_file(), which creates the file readable by its owner only.
    weights = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    (directory / WEIGHTS_FILE).write_bytes(weights)


def write_dir_atomically(path: str | os.PathLike, write) -> Path:
    """Fill a temporary sibling directory with `write(tmp_dir)`, then swap it in for `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkdtemp, whose directory only its owner may open: a model is made to be shared.
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        write(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_model_dir(path: str | os.PathLike) -> tuple[dict, Vocabulary, dict[str, torch.Tensor]]:
    """Read config, vocabulary and weights; refuse pickle files with an explanation."""
    path = Path(path)
    if path.is_file():
        if path.suffix in PICKLE_SUFFIXES or _looks_pickled(path):
            raise CheckpointError(_pickle_refusal(path))
        raise CheckpointError(
            f"{path}: a model is a directory holding {CONFIG_FILE}, "
            f"{VOCAB_FILE} and {WEIGHTS_FILE}, not a single file"
        )
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such model directory")
    missing = [
        name for name in (CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE) if not (path / name).is_file()
    ]
    if missing:
        pickles = [p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES]
        if pickles:
            raise CheckpointError(_pickle_refusal(pickles[0]))
        raise CheckpointError(
            f"{path}: not a captioner model directory (missing {', '.join(missing)})"
        )
    try:
        config = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path / CONFIG_FILE}: invalid JSON ({err})") from err
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path / CONFIG_FILE}: format_version {version!r} is not supported "
            f"(this captioner reads version {FORMAT_VERSION})"
        )
    try:
        vocab = Vocabulary.load(path / VOCAB_FILE)
        tensors = load_file(path / WEIGHTS_FILE)
    except (
        ValueError,
        OSError,
    ) as err:  # safetensors raises its own errors as ValueError/OSError kin
        raise CheckpointError(f"{path}: {err}") from err
    except Exception as err:  # safetensors_rust.SafetensorError does not derive from the above
        raise CheckpointError(
            f"{path / WEIGHTS_FILE}: not a valid safetensors file ({err})"
        ) from err
    return config, vocab, tensors


def _looks_pickled(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(4)
    return head[:1] == b"\x80" or head == b"PK\x03\x04"  # pickle protocol 2+, or torch's zip


def _pickle_refusal(path: Path) -> str:
    return (
        f"{path}: refusing to load a pickle/PyTorch .pt checkpoint: unpickling can run "
        f"arbitrary code. captioner models are directories with {CONFIG_FILE}, {VOCAB_FILE} "
        f"and {WEIGHTS_FILE}; re-save the model with Captioner.save() or captioner-train."
    )
