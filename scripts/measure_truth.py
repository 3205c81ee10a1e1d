"""Does the caption say only what the photo shows? Issue #25's figures on the development photos.

    python scripts/measure_truth.py                       # the default model
    python scripts/measure_truth.py --model DIR --confidence 0.5 --no-people

training/data/real_photo_truth.json lists, for each of the 48 development photos
(training/data/real_photos.json), every noun that is true to say of it. A caption's nouns are
found by longest match against every noun a caption can hold (the noun table's, the noun
tree's hypernyms, "person"; singular or plural), so "a measuring cup" is one noun, not a cup.
Printed: each caption with its false nouns, then

- captions with a false noun (a noun outside the photo's list);
- the main subject named (training.real_photos' named-subject rate, the same test as before);
- at least one true noun and no false one;
- captions opening with a size word ("a large dog", "there is a small ...": a size word
  before the first noun);
- captions that name nothing but "a photo" (true of any photo: neither a true nor a false noun).

--confidence sets the copy path's hedging confidence (docs/guides/hedging.md; 0 turns it off)
and --no-people leaves out the person detector, to compare with and without them.
--size-rule and --size-thresholds choose when a size word may open a caption (rules.py's
size_openings; "never" is the rule before, "free" no rule), to choose the thresholds on
validation composites and the calibration photos. With --composites, each run's BLEU-4
against the composites' reference captions is printed too.
--name-things compares captions that end only once they name the things the model is sure of
(rules.py's NameTheSureThings): 0 (off), 1 (the largest), 2 (the largest and a second one),
"2:4" (a second one of at least 4 cells, rules.SECOND_THING), "2:4:0.95" (cells sure at 0.95,
rules.NAMING_SURE); several values, one row each.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from captioner.nouns import NounTable, pluralize
from captioner.vocab import tokenize
from training.real_photos import load_dev_set, names_subject

DATA = Path(__file__).resolve().parent.parent / "training" / "data"
TRUTH_PATH = DATA / "real_photo_truth.json"
CALIBRATION_PATH = DATA / "calibration_photos.json"
SIZE_WORDS = frozenset({"large", "small", "big", "little", "tiny", "huge"})


def known_nouns() -> dict[tuple[str, ...], str]:
    """Every noun a caption can hold, as its token sequence (singular and plural) -> singular."""
    nouns = set(NounTable.load().nouns) | {"person", "photo"}
    try:
        from captioner.noun_tree import NounTree

        nouns |= set(NounTree.load().nodes)
    except ImportError:  # before the noun tree existed: today's figures
        pass
    forms = {}
    for noun in nouns:
        for form in (noun, pluralize(noun)):
            forms[tuple(tokenize(form))] = noun
    return forms


def caption_nouns(caption: str, forms: dict[tuple[str, ...], str]) -> list[str]:
    """The nouns of a caption, in order, each the longest match at its place."""
    tokens, found, i = tokenize(caption), [], 0
    longest = max(len(form) for form in forms)
    while i < len(tokens):
        for size in range(min(longest, len(tokens) - i), 0, -1):
            noun = forms.get(tuple(tokens[i : i + size]))
            if noun is not None:
                found.append(noun)
                i += size
                break
        else:
            i += 1
    return found


def opens_with_size_word(caption: str, forms: dict[tuple[str, ...], str]) -> bool:
    """Whether a size word comes before the caption's first noun."""
    tokens = tokenize(caption)
    first = caption_nouns(caption, forms)
    stop = len(tokens)
    if first:
        first_tokens = tokenize(first[0])
        for i in range(len(tokens)):
            if tokens[i : i + len(first_tokens)] in (first_tokens, tokenize(pluralize(first[0]))):
                stop = i
                break
    return any(token in SIZE_WORDS for token in tokens[:stop])


@dataclass(frozen=True)
class Scored:
    id: str
    caption: str
    false: list[str]
    true: list[str]
    subject: bool
    size_opening: bool


def score(
    captions: dict[str, str], truth: dict[str, list[str]], subjects: dict[str, tuple[str, ...]]
) -> list[Scored]:
    forms = known_nouns()
    scored = []
    for photo_id, caption in captions.items():
        nouns = caption_nouns(caption, forms)
        # "a photo" is true of any photo, so it counts as neither a true nor a false noun.
        allowed = set(truth[photo_id])
        scored.append(
            Scored(
                photo_id,
                caption,
                [n for n in nouns if n not in allowed and n != "photo"],
                [n for n in nouns if n in allowed and n != "photo"],
                names_subject(caption, subjects[photo_id]),
                opens_with_size_word(caption, forms),
            )
        )
    return scored


def summary(scored: list[Scored]) -> dict[str, int]:
    return {
        "photos": len(scored),
        "false noun": sum(bool(s.false) for s in scored),
        "subject named": sum(s.subject for s in scored),
        "true and no false": sum(bool(s.true) and not s.false for s in scored),
        "size-word opening": sum(s.size_opening for s in scored),
        "only 'a photo'": sum(not s.true and not s.false for s in scored),
        "empty": sum(not s.caption.strip() for s in scored),
    }


def photo_set(name: str) -> tuple[list, dict[str, list[str]]]:
    """The photos and their true nouns: "dev" (the 48 development photos), or "calibration"
    (training/data/calibration_photos.json: other installed photos, never the development
    ones, for choosing the hedging confidence), "calibration-a" / "calibration-b" its halves."""
    if name == "dev":
        truth = json.loads(TRUTH_PATH.read_text(encoding="utf-8"))["photos"]
        photos, missing = load_dev_set()
    else:
        entries = json.loads(CALIBRATION_PATH.read_text(encoding="utf-8"))
        photos, missing = load_dev_set(CALIBRATION_PATH)
        truth = {photo.id: entry["true"] for photo, entry in zip(photos, entries, strict=True)}
        if name != "calibration":
            photos = photos[name == "calibration-b" :: 2]
    for photo in missing:
        print(f"skipped {photo.id}: {photo.reason}", file=sys.stderr)
    return photos, truth


def composite_set(folder: Path, split: str, limit: int) -> tuple[list[Path], dict, dict]:
    """Composites (captioner-scenes --kind composites): paths, the true nouns of each (its
    objects' nouns and their hypernyms in the noun tree) and the subject nouns (its objects')."""
    from captioner.noun_tree import NounTree

    tree = NounTree.load()
    annotations = json.loads((folder / f"captions_{split}.json").read_text(encoding="utf-8"))
    paths, truth, subjects = [], {}, {}
    for image in annotations["images"][:limit]:
        nouns = {obj["noun"] for obj in image["objects"]}
        above = {a for noun in nouns if noun in tree.nodes for a in tree.ancestors(noun)}
        paths.append(folder / split / image["file_name"])
        truth[str(paths[-1])] = sorted(nouns | above)
        subjects[str(paths[-1])] = tuple(sorted(nouns))
    return paths, truth, subjects


def composite_bleu(folder: Path, split: str, captions: dict[str, str]) -> float:
    """BLEU-4 of the captions (keyed by image path) against the composites' references."""
    from training.metrics import coco_metrics

    annotations = json.loads((folder / f"captions_{split}.json").read_text(encoding="utf-8"))
    paths = {
        image["id"]: str(folder / split / image["file_name"]) for image in annotations["images"]
    }
    references: dict[str, list[str]] = {}
    for annotation in annotations["annotations"]:
        path = paths[annotation["image_id"]]
        if path in captions:
            references.setdefault(path, []).append(annotation["caption"])
    return coco_metrics(references, captions, meteor=False)["Bleu_4"]


def set_size_rule(captioner, rule: str, thresholds: list[float] | None) -> None:
    """When the captioner's copy model may open a caption with a size word: "contrast" (where
    rules.size_openings says, at `thresholds` or the shipped ones), "never", or "free"."""
    from captioner import rules

    if thresholds is not None:
        rules.SURE_CELL, rules.THING_CELLS, rules.SIZE_RATIO, rules.SMALL_THING = thresholds
    if rule == "never":  # no thing is big enough to count, and none small enough
        rules.THING_CELLS, rules.SMALL_THING = math.inf, -1
    elif rule == "free":
        captioner.decoder.size_word_ids = ()


def set_naming(setting: str | None) -> int:
    """DecodeOptions.name_things from "N[:CELLS[:SURE]]", with rules.SECOND_THING and
    NAMING_SURE set for this run; None: 0 (off) and the shipped thresholds."""
    from captioner import rules

    count, cells, sure = ((setting or "0").split(":") + [None, None])[:3]
    rules.SECOND_THING = int(cells) if cells else 2
    rules.NAMING_SURE = float(sure) if sure else rules.SURE_CELL
    return int(count)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model directory or name (default model)")
    parser.add_argument(
        "--photos",
        choices=("dev", "calibration", "calibration-a", "calibration-b"),
        default="dev",
        help="which labelled photos (default: the development photos)",
    )
    parser.add_argument(
        "--composites", type=Path, help="score composites instead (captioner-scenes' folder)"
    )
    parser.add_argument("--split", default="test", help="--composites: which split")
    parser.add_argument("--limit", type=int, default=500, help="--composites: how many")
    parser.add_argument(
        "--confidence",
        type=float,
        nargs="+",
        default=None,
        help="hedging confidences to compare (0: off; default: the model's own)",
    )
    parser.add_argument("--no-people", action="store_true", help="without the person detector")
    parser.add_argument(
        "--no-root", action="store_true", help='hedging never says "a photo" (the top noun then)'
    )
    parser.add_argument(
        "--size-rule",
        choices=("contrast", "never", "free"),
        default="contrast",
        help="size words may open a caption where sizes differ (default), never, or anywhere",
    )
    parser.add_argument(
        "--size-thresholds",
        type=float,
        nargs=4,
        metavar=("SURE", "CELLS", "RATIO", "SMALL"),
        help="rules.py's SURE_CELL, THING_CELLS, SIZE_RATIO and SMALL_THING for this run",
    )
    parser.add_argument(
        "--name-things",
        nargs="+",
        default=None,
        metavar="N[:CELLS[:SURE]]",
        help="sure things a caption names before it ends: 0 off, 1, 2, 2:CELLS (default: shipped)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="also write the figures and captions here")
    args = parser.parse_args(argv)

    from captioner.api import Captioner
    from captioner.noun_tree import ROOT

    if args.composites:
        images, truth, subjects = composite_set(args.composites, args.split, args.limit)
        keys = [str(path) for path in images]
    else:
        photos, truth = photo_set(args.photos)
        images = [photo.image() for photo in photos]
        keys, subjects = [p.id for p in photos], {p.id: p.nouns for p in photos}
    captioner = Captioner.load(args.model, device=args.device)
    if args.no_people:
        captioner.set_people(False)
    set_size_rule(captioner, args.size_rule, args.size_thresholds)
    runs, table = {}, []
    settings = [
        (confidence, naming)
        for confidence in args.confidence or [None]
        for naming in args.name_things or [None]
    ]
    for confidence, naming in settings:
        if confidence is not None:
            captioner.set_hedging(confidence or None, root=None if args.no_root else ROOT)
        results = captioner.caption(images, name_things=set_naming(naming))
        captions = dict(zip(keys, (r.text for r in results), strict=True))
        scored = score(captions, truth, subjects)
        if len(settings) == 1 and not args.composites:
            width = max(len(s.id) for s in scored)
            for s in scored:
                mark = f"  FALSE: {', '.join(s.false)}" if s.false else ""
                print(f"{s.id:<{width}}  {'S' if s.subject else '-'}  {s.caption}{mark}")
        figures = summary(scored)
        if args.composites:
            figures["BLEU-4"] = composite_bleu(args.composites, args.split, captions)
        label = "model's" if confidence is None else ("off" if confidence == 0 else confidence)
        if naming is not None:
            label = f"{label} name {naming}"
        runs[str(label)] = {"figures": figures, "captions": captions}
        table.append((label, figures))
    n = table[0][1]["photos"]
    names = [name for name in table[0][1] if name != "photos"]
    print(f"\n{n} {'composites' if args.composites else 'photos (' + args.photos + ')'}")
    width = max(11, *(len(str(label)) + 1 for label, _ in table))
    print(f"{'confidence':<{width}}" + "".join(f"{name:>20}" for name in names))
    for label, figures in table:
        cells = "".join(
            f"{figures[name]:>20.4f}"
            if name == "BLEU-4"
            else f"{f'{figures[name]} ({figures[name] / n:.0%})':>20}"
            for name in names
        )
        print(f"{label!s:<{width}}{cells}")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
