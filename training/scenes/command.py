"""`captioner-scenes`: write a captioned dataset of generated scenes in COCO captions format.

    captioner-scenes data/shapes --train 10000 --val 1000 --test 1000 --size 224
    captioner-scenes data/composites --kind composites --stamps /usr/share/tuxpaint/stamps

`--kind` picks a generator from GENERATORS: each turns its options into the function that draws
one scene, and the entries of the annotations' "info" that say what the scenes were made of.
"""

import argparse
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from training.scenes import composites
from training.scenes.grammar import SIZE_WORD_POLICIES
from training.scenes.shapes import MIN_IMAGE_SIZE, make_scene
from training.scenes.splits import IMAGE_FORMATS, SceneMaker, generate_split


def shapes(options: Mapping[str, object]) -> tuple[SceneMaker, dict | None]:
    """Coloured shapes (training/scenes/shapes.py); they take no options."""
    return make_scene, None


def stamp_composites(options: Mapping[str, object]) -> tuple[SceneMaker, dict | None]:
    """Photographed objects pasted on backgrounds (training/scenes/composites.py), from the
    composites options given. Raises FileNotFoundError or ValueError, saying which option to
    change, where the stamps or photos cannot be used."""
    config, notes = composites.load_config(**options)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return composites.scene_maker(config), composites.describe(config)


# --kind: what draws each kind of scene, from the options of its argument group.
GENERATORS: dict[str, Callable[[Mapping[str, object]], tuple[SceneMaker, dict | None]]] = {
    "shapes": shapes,
    "composites": stamp_composites,
}


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="captioner-scenes",
        description="Generate a captioned dataset of shapes scenes or of composites of "
        "photographed objects, in COCO captions format.",
    )
    parser.add_argument(
        "out_dir", type=Path, help="writes OUT_DIR/<split>/ and OUT_DIR/captions_<split>.json"
    )
    parser.add_argument("--train", type=_count, default=10_000, help="train images (default 10000)")
    parser.add_argument(
        "--val", type=_count, default=1_000, help="validation images (default 1000)"
    )
    parser.add_argument("--test", type=_count, default=1_000, help="test images (default 1000)")
    parser.add_argument("--seed", type=_count, default=0, help="random seed (default 0)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument("--format", choices=IMAGE_FORMATS, default="png", dest="image_format")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    parser.add_argument(
        "--kind",
        choices=list(GENERATORS),
        default="shapes",
        help="shapes: coloured shapes (default); composites: photographed objects (Tux Paint "
        "stamps) pasted on backgrounds, see training/scenes/composites.py",
    )
    group = parser.add_argument_group("composites")
    group.add_argument(
        "--stamps",
        type=Path,
        metavar="DIR",
        help="Tux Paint stamps folder (default /usr/share/tuxpaint/stamps, from the Debian "
        "package tuxpaint-stamps-default: scripts/install_stamps.sh)",
    )
    group.add_argument(
        "--stamp-list",
        type=Path,
        metavar="FILE",
        help="stamps to use, with nouns (default training/data/stamps.tsv)",
    )
    group.add_argument(
        "--photos",
        type=Path,
        nargs="+",
        metavar="PATH",
        help="background photos: files or folders of them (default: the landscapes of "
        "lomiri-wallpapers-16.04 when installed)",
    )
    group.add_argument(
        "--backgrounds",
        type=lambda text: tuple(text.split(",")),
        metavar="KIND,...",
        help="some of photo,texture,plain,gradient,noise (default: all; no photo when no "
        "photos are found)",
    )
    group.add_argument(
        "--max-objects", type=int, metavar="N", help="stamps per composite, 1 to N (default 3)"
    )
    group.add_argument(
        "--close-ups",
        type=float,
        metavar="SHARE",
        help="share of single-stamp composites whose stamp fills most of the frame, as the "
        "subject of a photo does (default 0)",
    )
    group.add_argument(
        "--size-words",
        choices=SIZE_WORD_POLICIES,
        help="when a caption says an object's size: any (half the mentions, default) or "
        "contrast (only in composites whose objects differ in size: 'a small dog and a large "
        "bicycle', never 'a large dog' alone)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.size < MIN_IMAGE_SIZE:
        parser.error(f"--size must be at least {MIN_IMAGE_SIZE}, got {args.size}")
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    counts = {"train": args.train, "val": args.val, "test": args.test}
    if not any(counts.values()):
        parser.error("every split count is zero: nothing to generate")
    composite_options = {
        "stamps_dir": args.stamps,
        "stamp_list": args.stamp_list,
        "photos": args.photos,
        "backgrounds": args.backgrounds,
        "max_objects": args.max_objects,
        "close_ups": args.close_ups,
        "size_words": args.size_words,
    }
    given = {name: value for name, value in composite_options.items() if value is not None}
    if given and args.kind != "composites":
        parser.error(
            "--stamps, --stamp-list, --photos, --backgrounds, --max-objects, --close-ups and "
            "--size-words need --kind composites"
        )
    try:
        make, info = GENERATORS[args.kind](given)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    for split, count in counts.items():
        if count == 0:
            continue
        started = time.perf_counter()
        path = generate_split(
            args.out_dir,
            split,
            count,
            args.seed,
            args.size,
            args.image_format,
            args.workers,
            make,
            info,
        )
        print(
            f"{split}: {count} images in {time.perf_counter() - started:.1f} s -> {path}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
