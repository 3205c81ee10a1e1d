"""`captioner-push DIR OWNER/NAME`: publish a model directory on the Hugging Face Hub, with a
generated model card.

huggingface_hub and torch (to check that the model loads before it is pushed) are imported where
they are used, so --help comes up at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from captioner.files.hub import short_reason
from captioner.options import DecodeOptions, is_number
from captioner.registry import (
    CARD_FILE,
    CONFIG_FILE,
    HUB_PREFIX,
    METRICS_FILE,
    MODEL_FILES,
    WEIGHTS_FILE,
    CheckpointError,
    parse_hub_model,
)

DEFAULT_LICENSE = "apache-2.0"  # captioner's own licence
CARD_TAGS = ["captioner", "image-captioning", "image-to-text", "show-attend-tell"]
# Fields of a captioner-evaluate report that are decoding settings or counts, not scores.
_NOT_SCORES = {field.name for field in dataclasses.fields(DecodeOptions)} | {
    "num_images",
    "skipped_images",
}


def model_card(
    config: dict,
    repo_id: str,
    *,
    license: str,
    metrics: dict | None,
    encoder_weights: bool,
    notes: str = "",
) -> str:
    """README.md for the Hub: YAML front matter (licence, tags, library), then what the model
    is, how to use it, its scores (config.json's validation score; a captioner-evaluate report's
    test scores), the data it was trained on (config.json's training.data) and its licence.
    `encoder_weights`: the weights file holds the (fine-tuned) encoder's; `notes`: the model
    directory's own README.md, kept at the end."""
    from huggingface_hub import ModelCardData

    front_matter = ModelCardData(
        license=license, library_name="captioner", pipeline_tag="image-to-text", tags=CARD_TAGS
    ).to_yaml()
    name = config.get("name") or repo_id.split("/")[1]
    encoder, decoder = config["encoder"], config["decoder"]
    training = config.get("training") or {}
    sections = [
        f"---\n{front_matter}\n---",
        f"# {name}",
        "An image-captioning model for captioner (Show, Attend and Tell). Encoder: "
        f"{encoder.get('name', 'a CNN')} at {encoder.get('image_size', '?')} px, "
        + (
            "fine-tuned (its weights are in model.safetensors). "
            if encoder_weights
            else "frozen (its ImageNet weights come with captioner's dependencies, not with "
            "this repository). "
        )
        + f"Decoder: {str(decoder.get('cell', 'lstm')).upper()} with soft attention, "
        f"{decoder['vocab_size']:,} words.",
        "## Use it\n\n"
        "With captioner installed:\n\n"
        "```sh\n"
        f"captioner --model hf:{repo_id} photos/ -o captions.jsonl\n"
        "```\n\n"
        f'In Python, `Captioner.load("hf:{repo_id}").caption("photo.jpg").text`; in the app, '
        f"Settings → Model → Hugging Face Hub model… → `hf:{repo_id}`. Add `@REVISION` (a "
        "branch, tag or commit) to pin a version. The download is cached; with "
        "`HF_HUB_OFFLINE=1` the cached copy is used.",
        "## Scores\n\n" + _scores_table(training, metrics),
        "## Training data\n\n" + _data_list(training.get("data")),
        f"## Licence\n\nThe weights and vocabulary: `{license}`.",
    ]
    if notes.strip():
        sections.append("## Notes from the model directory\n\n" + _strip_front_matter(notes))
    return "\n\n".join(sections).rstrip() + "\n"


def _scores_table(training: dict, metrics: dict | None) -> str:
    rows = []
    if metrics:
        split = metrics.get("split", "test")
        images = metrics.get("num_images")
        where = f"{split}, {images:,} images" if isinstance(images, int) else split
        beam = metrics.get("beam_size")
        where += f", beam {beam}" if beam else ""
        rows += [
            f"| {key} | {value:.4g} | {where} (captioner-evaluate) |"
            for key, value in metrics.items()
            if is_number(value) and key not in _NOT_SCORES
        ]
    epoch = training.get("best_epoch")
    rows += [
        f"| {key} | {value:.4g} | validation, best epoch {epoch} (captioner-train) |"
        for key, value in training.items()
        if is_number(value) and key not in ("epoch", "best_epoch")
    ]
    if not rows:
        return (
            "None recorded: config.json holds no score and no captioner-evaluate report was given."
        )
    return "| metric | value | measured on |\n|---|---:|---|\n" + "\n".join(rows)


def _data_list(data: object) -> str:
    if not isinstance(data, dict) or not data:
        return "Not recorded in config.json."
    lines = []
    for split, source in data.items():
        if isinstance(source, dict):
            facts = ", ".join(f"{key} `{value}`" for key, value in source.items() if value)
        else:
            facts = f"`{source}`"
        lines.append(f"- {split}: {facts or 'no details recorded'}")
    return "\n".join(lines)


def _strip_front_matter(text: str) -> str:
    """A card's text without its own YAML block, which would clash with the generated one."""
    if text.startswith("---\n"):
        end = text.find("\n---", 4)
        if end >= 0:
            return text[end + 4 :].lstrip("\n")
    return text


def push_model(
    directory: str | Path,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    message: str | None = None,
    license: str = DEFAULT_LICENSE,
    metrics: dict | None = None,
) -> str:
    """Upload a model directory's files and a generated card (README.md) to the Hub model
    repository `repo_id`, created if missing (`private` applies then); `revision`: a branch,
    created from the default branch if missing. Returns the commit's id. The token is
    huggingface_hub's (HF_TOKEN, or `hf auth login`). Refuses a directory that does not load
    as a model (CheckpointError)."""
    from huggingface_hub import CommitOperationAdd, HfApi

    from captioner.api import Captioner
    from captioner.files.checkpoint import weight_shapes

    directory = Path(directory)
    parse_hub_model(HUB_PREFIX + repo_id)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such model directory")
    # The whole model is built once, so a directory that pushes is one that loads.
    captioner = Captioner.load(directory, device="cpu", backend="torch")
    config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    weights = directory / WEIGHTS_FILE
    notes_file = directory / CARD_FILE
    notes = notes_file.read_text(encoding="utf-8") if notes_file.is_file() else ""
    encoder_weights = any(name.startswith("encoder.") for name in weight_shapes(weights))
    card = model_card(
        config,
        repo_id,
        license=license,
        metrics=metrics,
        encoder_weights=encoder_weights,
        notes=notes,
    )
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(directory / name))
        for name in MODEL_FILES
    ]
    operations.append(CommitOperationAdd(path_in_repo=CARD_FILE, path_or_fileobj=card.encode()))
    api = HfApi(library_name="captioner")
    api.create_repo(repo_id, private=private, exist_ok=True)
    if revision is not None:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    commit = api.create_commit(
        repo_id,
        operations,
        commit_message=message or f"Upload the captioner model {captioner.name}",
        revision=revision,
    )
    return commit.oid


def main(argv: list[str] | None = None) -> int:
    """captioner-push DIR OWNER/NAME: publish a model directory on the Hugging Face Hub."""
    parser = argparse.ArgumentParser(
        prog="captioner-push",
        description="Upload a captioner model directory to a Hugging Face Hub model repository, "
        "with a generated model card (README.md: licence, scores, training data, how to use "
        "it). The token is huggingface_hub's: HF_TOKEN, or `hf auth login`.",
    )
    parser.add_argument("directory", type=Path, metavar="DIR", help="the model directory")
    parser.add_argument("repo_id", metavar="OWNER/NAME", help="the Hub model repository")
    parser.add_argument(
        "--revision", help="the branch to commit to (created if missing; default: main)"
    )
    parser.add_argument(
        "--private", action="store_true", help="create the repository private (a new one only)"
    )
    parser.add_argument("--message", help="the commit message")
    parser.add_argument(
        "--license",
        default=DEFAULT_LICENSE,
        help="the weights' licence, a Hub licence id (default: %(default)s, captioner's own)",
    )
    parser.add_argument(
        "--metrics",
        type=Path,
        help=f"a captioner-evaluate report whose scores the card lists (default: DIR/"
        f"{METRICS_FILE} if present)",
    )
    args = parser.parse_args(argv)
    metrics_file = args.metrics or args.directory / METRICS_FILE
    try:
        metrics = None
        if args.metrics is not None or metrics_file.is_file():
            metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
            if not isinstance(metrics, dict):
                raise ValueError(f"{metrics_file}: not a captioner-evaluate report (a JSON object)")
        commit = push_model(
            args.directory,
            args.repo_id,
            revision=args.revision,
            private=args.private,
            message=args.message,
            license=args.license,
            metrics=metrics,
        )
    except (ValueError, OSError) as error:  # CheckpointError, HubError, bad JSON, the Hub's
        parser.exit(1, f"{parser.prog}: error: {_push_failure(error)}\n")
    print(f"pushed {args.directory} to {args.repo_id} (commit {commit})")
    print(f"use it: captioner --model hf:{args.repo_id}@{commit} PHOTO...")
    return 0


def _push_failure(error: BaseException) -> str:
    status = getattr(getattr(error, "response", None), "status_code", None)
    if status in (401, 403):
        return (
            f"the Hub refused the upload ({status}): log in with `hf auth login` or set "
            "HF_TOKEN to a token that may write to this repository"
        )
    return short_reason(error)


if __name__ == "__main__":
    sys.exit(main())
