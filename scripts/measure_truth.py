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
  before the first noun).

--confidence sets the copy path's hedging confidence (docs/guides/hedging.md; 0 turns it off)
and --no-people leaves out the person detector, to compare with and without them.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from captioner.nouns import NounTable, pluralize
from captioner.vocab import tokenize
from training.real_photos import load_dev_set, names_subject

TRUTH_PATH = Path(__file__).resolve().parent.parent / "training" / "data" / "real_photo_truth.json"
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
        allowed = set(truth[photo_id]) | {"photo"}
        scored.append(
            Scored(
                photo_id,
                caption,
                [n for n in nouns if n not in allowed],
                [n for n in nouns if n in allowed],
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
        "empty": sum(not s.caption.strip() for s in scored),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model directory or name (default model)")
    parser.add_argument("--confidence", type=float, default=None, help="hedging; 0: off")
    parser.add_argument("--no-people", action="store_true", help="without the person detector")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="also write the figures and captions here")
    args = parser.parse_args(argv)

    from captioner.api import Captioner

    truth = json.loads(TRUTH_PATH.read_text(encoding="utf-8"))["photos"]
    photos, missing = load_dev_set()
    for photo in missing:
        print(f"skipped {photo.id}: {photo.reason}", file=sys.stderr)
    captioner = Captioner.load(args.model, device=args.device)
    if args.confidence is not None:
        captioner.set_hedging(args.confidence or None)
    if args.no_people:
        captioner.set_people(False)
    results = captioner.caption([photo.image() for photo in photos])
    captions = {photo.id: r.text for photo, r in zip(photos, results, strict=True)}
    scored = score(captions, truth, {p.id: p.nouns for p in photos})
    width = max(len(s.id) for s in scored)
    for s in scored:
        mark = f"  FALSE: {', '.join(s.false)}" if s.false else ""
        print(f"{s.id:<{width}}  {'S' if s.subject else '-'}  {s.caption}{mark}")
    figures = summary(scored)
    n = figures["photos"]
    print()
    for name, count in figures.items():
        if name != "photos":
            print(f"{name:<20} {count:>3}/{n} = {count / n:.0%}")
    if args.json:
        args.json.write_text(json.dumps({"figures": figures, "captions": captions}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
