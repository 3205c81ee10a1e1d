"""`captioner-import FORMAT ...`: another project's trained model as a captioner model directory.

    captioner-import tutorial BEST_checkpoint_coco_5_cap_per_img_5_min_word_freq.pth.tar \\
        WORDMAP_coco_5_cap_per_img_5_min_word_freq.json models/tutorial-coco

reads a checkpoint of sgrvinod/a-PyTorch-Tutorial-to-Image-Captioning without running any of its
pickled code (docs/tutorial_checkpoints.md), and writes config.json, vocab.json and
model.safetensors, which `captioner --model`, the app and `Captioner.load` read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from captioner.checkpoint import CONFIG_FILE, save_model_dir
from captioner.safe_unpickle import UnsafePickleError
from captioner.tutorial_import import SOURCE, TutorialImportError, tutorial_model_files

PROGRAM = "captioner-import"


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
    tutorial.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out: Path = args.out_dir
    if out.exists():
        if not args.overwrite:
            parser.error(f"{out} exists; pass --overwrite to replace it")
        if not out.is_dir() or (any(out.iterdir()) and not (out / CONFIG_FILE).is_file()):
            parser.error(f"{out} is not a captioner model directory; refusing to replace it")
    try:
        word_map = json.loads(args.word_map.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        parser.error(f"{args.word_map}: cannot read the word map ({error})")
    try:
        config, vocab, tensors = tutorial_model_files(args.checkpoint, word_map)
    except (UnsafePickleError, TutorialImportError) as error:
        print(f"{PROGRAM}: {error}", file=sys.stderr)
        return 1
    save_model_dir(out, config, vocab, tensors)
    encoder = config["encoder"]["name"]
    print(
        f"wrote {out}: {encoder} encoder with the checkpoint's weights, {len(vocab)} words; "
        f"caption photos with: captioner --model {out} PHOTO"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
