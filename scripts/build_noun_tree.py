"""Write captioner/data/noun_tree.tsv: each copyable noun's parent, up to everyday hypernyms.

The hedged copy path (captioner/noun_tree.py, docs/guides/hedging.md) says "an animal" when the
classifier's mass splits between jaguar, leopard and cheetah: a node's probability is the sum
of its classes', as in Deng et al., "Hedging Your Bets" (CVPR 2012), on ImageNet's WordNet tree.
This script builds that tree over the noun table's nouns (captioner/data/imagenet_nouns.tsv)
from WordNet 3.0, keeping only the hypernyms a caption would use (HYPERNYMS below): a noun's
parent is the nearest of them above all of its classes (breadth-first over WordNet's
hypernyms), a hypernym's parent the nearest one above it. A noun none of them covers is a root.

Source, offline: WordNet 3.0 from Debian's wordnet-base, read as build_noun_table.py reads it.

Usage: python scripts/build_noun_tree.py [--out captioner/data/noun_tree.tsv]
"""

import argparse
import csv
import tempfile
from collections import Counter
from pathlib import Path

from build_noun_table import open_wordnet

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "captioner" / "data" / "imagenet_nouns.tsv"
DEFAULT_OUT = ROOT / "captioner" / "data" / "noun_tree.tsv"

# WordNet synset -> the everyday word a caption says for anything below it.
HYPERNYMS = {
    "animal.n.01": "animal",
    "bird.n.01": "bird",
    "fish.n.01": "fish",
    "reptile.n.01": "reptile",
    "insect.n.01": "insect",
    "dog.n.01": "dog",
    "feline.n.01": "cat",
    "bear.n.01": "bear",
    "monkey.n.01": "monkey",
    "snake.n.01": "snake",
    "plant.n.02": "plant",
    "flower.n.01": "flower",
    "tree.n.01": "tree",
    "food.n.01": "food",
    "food.n.02": "food",
    "edible_fruit.n.01": "fruit",
    "vegetable.n.01": "vegetable",
    "vehicle.n.01": "vehicle",
    "conveyance.n.03": "vehicle",
    "car.n.01": "car",
    "boat.n.01": "boat",
    "ship.n.01": "boat",
    "aircraft.n.01": "aircraft",
    "building.n.01": "building",
    "tool.n.01": "tool",
    "container.n.01": "container",
    "device.n.01": "device",
    "electronic_equipment.n.01": "device",
    "musical_instrument.n.01": "instrument",
    "furniture.n.01": "furniture",
    "clothing.n.01": "clothing",
    "ball.n.01": "ball",
    "weapon.n.01": "weapon",
    "kitchen_utensil.n.01": "utensil",
}
PRIORITY = list(dict.fromkeys(HYPERNYMS.values()))

# Where the table's classes mislead WordNet: ImageNet's "cup" and "plate" are the food senses
# (a punch, a dish of food) though its photos show the crockery; a spoon is a "container" in
# WordNet; a party balloon is no aircraft. None: a root.
PARENT_OVERRIDES = {"cup": "container", "plate": "container", "spoon": "utensil", "balloon": None}
# ImageNet has no person class: the table names people by what they wear (build_noun_table.py),
# so "person" has garments' classes, yet a person is no garment.
PARENT_OVERRIDES["person"] = None


def ancestors_by_distance(synset) -> list[list]:
    """The synset's hypernyms (instance ones too), nearest first, one list per distance."""
    levels, frontier, seen = [], [synset], {synset}
    while frontier:
        levels.append(frontier)
        frontier = [
            h
            for s in frontier
            for h in s.hypernyms() + s.instance_hypernyms()
            if h not in seen and not seen.add(h)
        ]
    return levels


def nearest_hypernym(synset, exclude: str) -> str | None:
    """The word of the nearest HYPERNYMS entry above the synset, other than `exclude`."""
    for level in ancestors_by_distance(synset):
        words = {HYPERNYMS[s.name()] for s in level if s.name() in HYPERNYMS} - {exclude}
        if words:  # equally near: HYPERNYMS' order (a wheeled vehicle is a vehicle first)
            return min(words, key=PRIORITY.index)
    return None


def parent_of(noun: str, synsets: list) -> str | None:
    """The hypernym nearest to most of a noun's classes, if it is nearest to at least half of
    them (the table merges classes: a car grille is a car too, but no vehicle)."""
    votes = Counter(nearest_hypernym(synset, noun) for synset in synsets)
    word, count = votes.most_common(1)[0]
    return word if 2 * count >= len(synsets) else None


def build(wordnet) -> list[tuple[str, str]]:
    """(noun, parent or '-') rows: the table's nouns in table order, then the hypernyms."""
    for name in HYPERNYMS:
        wordnet.synset(name)  # raises on a misspelt entry
    classes: dict[str, list] = {}
    with TABLE.open(encoding="utf-8") as table:
        for row in csv.DictReader(table, delimiter="\t"):
            if row["noun"] != "-":
                synset = wordnet.synset_from_pos_and_offset("n", int(row["wnid"][1:]))
                classes.setdefault(row["noun"], []).append(synset)
    hypernym_synsets: dict[str, list] = {}
    for name, word in HYPERNYMS.items():
        hypernym_synsets.setdefault(word, []).append(wordnet.synset(name))
    parents = {noun: parent_of(noun, synsets) for noun, synsets in classes.items()}
    for word, synsets in hypernym_synsets.items():
        # A hypernym hangs where its most general sense does, also when the table has it as a
        # noun of a few classes (the table's "plant" is a flowerpot's noun).
        general = min(synsets, key=lambda s: s.min_depth())
        parents[word] = nearest_hypernym(general, word)
    parents.update(PARENT_OVERRIDES)
    # A hypernym above none of the table's nouns ("tree": ImageNet has no tree class) is
    # left out: the copy path could never say it.
    while empty := [
        w
        for w in hypernym_synsets
        if w in parents and w not in classes and w not in parents.values()
    ]:
        for word in empty:
            del parents[word]
    return [(noun, parent or "-") for noun, parent in parents.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        rows = build(open_wordnet(Path(workdir)))
    lines = ["noun\tparent"] + [f"{noun}\t{parent}" for noun, parent in rows]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    roots = sum(parent == "-" for _, parent in rows)
    print(f"{args.out}: {len(rows)} nouns, {roots} roots")


if __name__ == "__main__":
    main()
