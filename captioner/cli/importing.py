"""`captioner-import FORMAT ...`: another project's trained model as a captioner model directory.

    captioner-import tutorial BEST_checkpoint_coco_5_cap_per_img_5_min_word_freq.pth.tar \\
        WORDMAP_coco_5_cap_per_img_5_min_word_freq.json models/tutorial-coco

reads a checkpoint of sgrvinod/a-PyTorch-Tutorial-to-Image-Captioning without running any of its
pickled code (docs/guides/tutorial_checkpoints.md), and writes config.json, vocab.json and
model.safetensors, which `captioner --model`, the app and `Captioner.load` read.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from captioner.files.checkpoint import save_model_dir
from captioner.files.safe_unpickle import UnsafePickleError
from captioner.files.tutorial_import import (
    SOURCE,
    TutorialImportError,
    read_word_map,
    tutorial_model_files,
)
from captioner.registry import CARD_FILE, CONFIG_FILE, METRICS_FILE, MODEL_FILES

PROGRAM = "captioner-import"
# What a model directory holds: its three files, and the model card and captioner-evaluate
# report that captioner-push publishes with them (captioner/cli/push.py). The app caches ONNX
# graphs elsewhere (onnx_backend.default_cache_root), never in the model directory.
MODEL_DIR_FILES = frozenset({*MODEL_FILES, CARD_FILE, METRICS_FILE})


class OutDirError(ValueError):
    """OUT_DIR is no place to write a model directory, or one that must not be replaced."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Turn another project's trained model into a captioner model directory.",
    )
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    tutorial = formats.add_parser(
        "tutorial",
        help=f"a checkpoint of {SOURCE}",
        description=f"Import BEST_checkpoint_*.pth.tar and WORDMAP_*.json of {SOURCE}.",
    )
    tutorial.add_argument("checkpoint", type=Path, help="BEST_checkpoint_<data>.pth.tar")
    tutorial.add_argument("word_map", type=Path, help="WORDMAP_<data>.json")
    tutorial.add_argument("out_dir", type=Path, help="the model directory to write")
    tutorial.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUT_DIR if it is a model directory (its files and no others)",
    )
    return parser


def check_out_dir(out: Path, overwrite: bool, inputs: Sequence[Path] = ()) -> None:
    """Raise OutDirError unless a model directory can be written at `out`: a new directory, or
    with `overwrite` an existing model directory (its files and nothing else), never a link,
    the current directory or one that holds an input."""
    if out.name in ("", ".", ".."):
        raise OutDirError(f"{str(out)!r} names no directory of its own: name the one to write")
    if out.is_symlink():
        # Replacing it would replace the link, and the rename over it fails half way.
        raise OutDirError(f"{out} is a symbolic link; name the directory itself")
    # realpath, not Path.resolve, which raises on a loop of links instead of leaving it as is
    here = Path(os.path.realpath(out))
    for held, what in ((Path.cwd(), "the current directory"), *((p, str(p)) for p in inputs)):
        held = Path(os.path.realpath(held))
        if here == held or here in held.parents:
            raise OutDirError(f"{out} holds {what}; name a directory of its own for the model")
    parent = out.parent
    while not (parent.exists() or parent.is_symlink()) and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutDirError(f"{out} cannot be made: {parent} is not a directory")
    if not out.exists():
        return
    if not overwrite:
        raise OutDirError(f"{out} exists; pass --overwrite to replace it")
    if not out.is_dir():
        raise OutDirError(f"{out} is not a directory; refusing to replace it")
    names = {entry.name: entry for entry in out.iterdir()}
    others = sorted(
        name
        for name, entry in names.items()
        if name not in MODEL_DIR_FILES or entry.is_symlink() or not entry.is_file()
    )
    if others or (names and CONFIG_FILE not in names):
        found = f"it holds {others[0]!r}" if others else f"it has no {CONFIG_FILE}"
        raise OutDirError(
            f"{out} is not a captioner model directory ({found}); refusing to replace it"
        )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out: Path = args.out_dir
    try:
        check_out_dir(out, args.overwrite, (args.checkpoint, args.word_map))
        word_map = read_word_map(args.word_map)
    except OSError as error:  # an unreadable OUT_DIR
        parser.error(f"{out}: {error.strerror or error}")
    except (OutDirError, TutorialImportError) as error:
        parser.error(str(error))
    try:
        config, vocab, tensors = tutorial_model_files(args.checkpoint, word_map)
    except (UnsafePickleError, TutorialImportError) as error:
        print(f"{PROGRAM}: {error}", file=sys.stderr)
        return 1
    dropped = config["imported_from"].get("dropped")
    if dropped:
        print(
            f"{PROGRAM}: note: left out the checkpoint's {', '.join(dropped)}: config.json keeps "
            "only short names of finite numbers and short lines of text",
            file=sys.stderr,
        )
    try:
        save_model_dir(out, config, vocab, tensors)
    except OSError as error:
        print(f"{PROGRAM}: cannot write {out}: {error.strerror or error}", file=sys.stderr)
        return 1
    encoder = config["encoder"]["name"]
    print(
        f"wrote {out}: {encoder} encoder with the checkpoint's weights, {len(vocab)} words; "
        f"caption photos with: captioner --model {out} PHOTO"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
