"""Which model a name means, asked by everything that takes one (the API, the commands, the app).

A `--model` value is a Hugging Face Hub model ("hf:OWNER/NAME[@REVISION]"), a model directory,
or the name of a model shipped in the package ("default", "shapes"). A model directory holds the
files named here. Torch-free, so the app's window and the commands' --help can ask it before
torch is imported.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from captioner.files.hub import HubError, download_files

CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE = "config.json", "vocab.json", "model.safetensors"
MODEL_FILES = (CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE)  # what loading a model reads
CARD_FILE = "README.md"  # the model card, which the app shows and captioner-push writes
METRICS_FILE = "metrics.json"  # a captioner-evaluate report kept beside the model, if any
# Beside a caption library's file: the models learned from its captions (captioner/learn.py).
LEARNED_MODELS_FOLDER = "models"
HUB_FILES = (*MODEL_FILES, CARD_FILE)  # what is downloaded of a Hub model's repository

MODELS_DIR = Path(__file__).parent / "models"  # the models shipped in the package, by name
DEFAULT_MODEL_DIR = MODELS_DIR / "default"

HUB_PREFIX = "hf:"
# Hub repository ids: OWNER/NAME, each of letters, digits, "-", "_", "." (huggingface_hub's rule).
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


class CheckpointError(ValueError):
    """A model directory that is missing, incomplete, or in a format we refuse to load."""


@dataclass(frozen=True)
class HubModel:
    repo_id: str  # OWNER/NAME
    revision: str | None  # a branch, tag or commit; None is the repository's default branch

    def __str__(self) -> str:
        return HUB_PREFIX + self.repo_id + (f"@{self.revision}" if self.revision else "")


def is_hub_model(model: str) -> bool:
    """Whether a --model value names a Hub model ("hf:OWNER/NAME[@REVISION]") rather than a
    directory or a shipped model. The prefix always wins: a directory whose path starts with
    "hf:" is given as "./hf:..."."""
    return model.startswith(HUB_PREFIX)


def parse_hub_model(model: str) -> HubModel:
    """Parse "hf:OWNER/NAME[@REVISION]" into a HubModel; HubError for anything else."""
    if not is_hub_model(model):
        raise HubError(f"{model}: a Hub model's name starts with {HUB_PREFIX}")
    repo_id, at, revision = model[len(HUB_PREFIX) :].partition("@")
    if not _REPO_ID.fullmatch(repo_id) or ".." in repo_id or (at and not revision):
        raise HubError(
            f"{model}: not a Hub model name; write hf:OWNER/NAME or hf:OWNER/NAME@REVISION "
            "(a branch, tag or commit), e.g. hf:someone/captioner-coco@main"
        )
    return HubModel(repo_id, revision or None)


def is_model_name(model: str) -> bool:
    """Whether a --model value is spelled as a shipped model's name ("shapes") rather than a
    directory or a Hub model: a name has no slash, and is not "", "." or ".."."""
    return (
        model == os.path.basename(model)
        and model not in ("", ".", "..")
        and not is_hub_model(model)
    )


def names_shipped_model(model: str) -> bool:
    """Whether a --model value means a shipped model: a bare name ("shapes") that is no path
    here. An existing folder of that name wins, as on any command line."""
    return is_model_name(model) and not Path(model).exists()


def shipped_models() -> list[str]:
    """The names of the models shipped in the package, sorted ("default", "shapes")."""
    return sorted(p.name for p in MODELS_DIR.iterdir() if (p / CONFIG_FILE).is_file())


def shipped_model(name: str) -> Path:
    """The directory of the shipped model `name`; CheckpointError if there is none."""
    directory = DEFAULT_MODEL_DIR if name == "default" else MODELS_DIR / name
    if Path(name).name == name and (directory / CONFIG_FILE).is_file():
        return directory
    if name == "default":
        raise CheckpointError(
            "no default model is installed in this copy of captioner. Pass a model "
            "directory, e.g. Captioner.load('runs/scenes/best') or `--model DIR`: one "
            "written by captioner-train, holding config.json, vocab.json, model.safetensors"
        )
    raise CheckpointError(
        f"{name}: no such model directory, nor a model shipped with captioner "
        f"(those are: {', '.join(shipped_models()) or 'none'})"
    )


def download_model(model: str) -> Path:
    """The directory of the Hub model `model` names, in huggingface_hub's cache (downloaded
    once, then read from the cache, offline too). Raises HubError with the reason; loading
    then checks the files like any directory's."""
    hub_model = parse_hub_model(model)
    folder = download_files(hub_model.repo_id, hub_model.revision, HUB_FILES, name=model)
    if not (folder / CONFIG_FILE).is_file():
        raise HubError(
            f"{model}: not a captioner model: the repository has no {CONFIG_FILE} (a captioner "
            f"model holds {', '.join(MODEL_FILES)})"
        )
    return folder


def resolve_model(model: str | os.PathLike | None) -> Path:
    """The directory `Captioner.load(model)` reads: for "hf:OWNER/NAME[@REVISION]", the Hub
    model's, downloaded into huggingface_hub's cache if it is not there; else a path that
    exists; else, for a bare name ("shapes", no slash), the shipped model of that name; else
    the path, which loading reports missing. None is the shipped "default"."""
    if model is None:
        return shipped_model("default")
    text = os.fspath(model)
    if is_hub_model(text):
        return download_model(text)
    if names_shipped_model(text):
        return shipped_model(text)
    return Path(text)
