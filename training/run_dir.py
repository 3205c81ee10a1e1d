"""A run directory: refused unless the command says to continue it (--resume) or replace it
(--overwrite), and what either does to the files a run wrote."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from captioner.photos.atomic import write_atomically
from captioner.registry import CONFIG_FILE
from training.model import model_option_values
from training.state import STATE_JSON, saved_options

RUN_FILES = ("best", "last", "log.jsonl", "curves.png")  # what a run writes in its directory
# Options a resumed run keeps from its checkpoint, which saves them: the vocabulary, the
# optimizer and scheduler states and the batch order were made with them. Not given, they
# take the run's values; given, they must equal them.
KEPT_OPTIONS = ("min_word_count", "batch_size", "seed", "lr", "encoder_lr", "metric", "lr_patience")


def check_run_dir(
    parser: argparse.ArgumentParser, args: argparse.Namespace, given: set[str]
) -> bool:
    """Exit with a usage error where the command would replace a run or ignore an option.

    Returns whether the run in OUT is resumed from its last/ checkpoint.
    """
    last = args.out / "last"
    holds_run = any((args.out / name).exists() for name in RUN_FILES)
    if not args.resume:
        if holds_run and not args.overwrite:
            parser.error(
                f"{args.out} already holds a training run: pass --resume to continue it, or "
                "--overwrite to start again (its best/ model is replaced)"
            )
        return False
    if not (last / STATE_JSON).is_file():
        if holds_run:
            parser.error(
                f"{args.out} holds a training run but no checkpoint to resume in {last}: "
                "pass --overwrite to start again (its best/ model is replaced)"
            )
        return False
    run_values = model_option_values(json.loads((last / CONFIG_FILE).read_text()))
    # Checkpoints from before the options were saved have none: those options go unchecked.
    kept = saved_options(last)
    run_values.update({dest: kept[dest] for dest in KEPT_OPTIONS if dest in kept})
    for dest in [dest for dest in run_values if dest in given]:
        ours, theirs = getattr(args, dest), run_values[dest]
        if ours != theirs:
            option = "--" + dest.replace("_", "-")
            stated = option if isinstance(ours, bool) else f"{option} {ours}"
            if theirs is False:
                was = "model (made without it)"
            elif theirs is None:
                was = "default"
            else:
                was = theirs
            parser.error(
                f"{stated} differs from the run's {was} in {last}; drop it to resume, "
                "or start a new --out"
            )
    return True


def clear_run(run_dir: Path) -> None:
    """Remove what a run wrote (--overwrite), so that none of it mixes with the new run."""
    for name in RUN_FILES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def truncate_log(path: Path, epochs_done: int) -> None:
    """Drop log lines of epochs after the checkpoint, which the resumed run will redo."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line)["epoch"] <= epochs_done]
    write_atomically(path, "".join(line + "\n" for line in kept).encode())


def append_log(run_dir: Path, row: dict) -> None:
    """One epoch's line of log.jsonl."""
    with open(run_dir / "log.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
