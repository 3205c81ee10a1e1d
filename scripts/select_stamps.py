"""Chooses the photographic Tux Paint stamps that training/scenes/composites.py pastes onto
backgrounds.

    .venv/bin/python scripts/select_stamps.py [--stamps /usr/share/tuxpaint/stamps] [--out FILE]

Writes training/data/stamps.tsv: one row per photograph kept, with the noun it is captioned with,
the noun's plural (both from the noun table), a colour word where the object clearly has one
("-" otherwise) and whether it may be mirrored. The stamps themselves (GPL-2, Debian package
tuxpaint-stamps-default) are never committed; only this list of paths is.

A stamp is a photograph unless a rule says clipart: a "cartoon" folder, an .svg original next to
the PNG, a symbols/ folder other than money, or colour statistics typical of drawings (a large
share of perfectly flat pixels and little fine texture). The rules were checked against every
stamp by eye; PHOTO_OVERRIDES holds the stamps they get wrong. The noun is proposed from the
stamp's .txt caption ("A Sumatran tiger." -> "tiger"), raised by SYNONYMS to the table noun
above it (hen -> chicken) and corrected by NOUN_OVERRIDES; a stamp whose noun is not a noun of
captioner's ImageNet noun table (captioner/nouns.py) is left out, because the copy mechanism
can only name table nouns. Colour words come from the caption ("A red apple.") and
COLOUR_OVERRIDES.
"""

import argparse
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from captioner.nouns import NounTable
from training.scenes.composites import DEFAULT_STAMPS_DIR, STAMP_LIST

# Drawings have large areas of one exact colour; photographs, even ones reduced to a 256-colour
# palette, have fine texture almost everywhere.
MAX_CLIPART_TEXTURE_SHARE = 0.3
MIN_CLIPART_FLAT_SHARE = 0.2
TEXTURE_STD = (1.5, 25.0)  # 3x3 luminance std: below is flat, above is an edge

# Stamp path -> True (photograph) or False (clipart) where the rules above are wrong.
PHOTO_OVERRIDES = {
    "clothes/armor/cartoon/knight_helmet.png": True,  # a photo filed under cartoon
    "animals/insects/fly.png": False,
    "household/dishes/glass.png": True,  # a glass of water: see-through, so no opaque pixel
    "clothes/button.png": False,
    "naturalforces/explosion.png": True,
    "naturalforces/fire.png": True,
    "naturalforces/lightningbolt.png": True,
    "seasonal/christmas/lamp.png": True,
    "space/moon/moon_crescent.png": True,
    "space/planets/0_sun.png": True,
    "space/planets/6_saturn.png": False,
    "town/monuments/inukshuk-outline.png": False,
    **dict.fromkeys(
        [
            "seasonal/christmas/Santa.png",
            "seasonal/christmas/hard_candy.png",
            "seasonal/christmas/santahat.png",
            "seasonal/christmas/stocking.png",
            "seasonal/christmas/xmas_tp_bulb.png",
            "seasonal/easter/bluebird.png",
            "seasonal/easter/bunny-egg.png",
            "seasonal/easter/bunny-head.png",
            "seasonal/easter/bunny.png",
            "seasonal/easter/butterfly.png",
            "seasonal/easter/chick-hatched.png",
            "seasonal/easter/chick.png",
            "seasonal/easter/daffodil.png",
            "seasonal/easter/wrapped_chocolate_easter_egg.png",
            "seasonal/easter/wrapped_chocolate_easter_egg_2.png",
            "seasonal/hanukkah/holiday_candle.png",
            "seasonal/hanukkah/menorah.png",
            "seasonal/newyears/confetti.png",
            "seasonal/newyears/fireworks.png",
            "seasonal/newyears/fireworks2.png",
            "seasonal/newyears/party-hat.png",
            "seasonal/newyears/party-horn-in.png",
            "seasonal/newyears/party-horn-out.png",
            "town/roadsigns/no_uturn.png",
            "town/roadsigns/railroad_crossing.png",
            "town/roadsigns/toilets.png",
            "town/roadsigns/traffic_cone.png",
        ],
        False,
    ),
}

# Words before the head noun that the caption rule skips, and where a caption's noun phrase ends.
LEADING_WORDS = re.compile(
    r"^(a|an|the|one|two|some|our|another|it's|this|pair of|head of|plant of|couple of|bunch of"
    r"|string of)\s+"
)
PHRASE_END = re.compile(r"[.!?,;:—(]| is | are | with | called | of | in | from | at ")

# Caption nouns that are not table nouns but have a true table noun above them (a hen is a
# chicken, a wrasse a fish) or a plain name in it (a dromedary is a camel).
SYNONYMS = {
    **dict.fromkeys(
        ("blackbird", "crow", "cuckoo", "fowl", "gull", "lark", "magpie", "peahen", "pigeon"),
        "bird",
    ),
    **dict.fromkeys(("quetzal", "rhea", "seagull", "turkey"), "bird"),
    **dict.fromkeys(("hen", "rooster"), "chicken"),
    "drake": "duck",
    "gander": "goose",
    **dict.fromkeys(("lorikeet", "rosella"), "parrot"),
    **dict.fromkeys(
        ("butterflyfish", "clownfish", "dolphinfish", "groper", "lionfish", "seahorse", "trout"),
        "fish",
    ),
    "wrasse": "fish",
    "orca": "whale",
    **dict.fromkeys(("abalone", "mussel"), "shell"),
    **dict.fromkeys(("hornet", "xanthia"), "insect"),
    "ram": "sheep",
    **dict.fromkeys(("bull", "zebu"), "cow"),
    **dict.fromkeys(("blackbuck", "gnu"), "antelope"),
    "mountaingoat": "goat",
    "dromedary": "camel",
    "dingo": "dog",
    "tamarin": "monkey",
    "iguana": "lizard",
    "cep": "mushroom",
    **dict.fromkeys(
        (
            "adenium",
            "anthurium",
            "balsam",
            "daffodil",
            "gazania",
            "hibiscus",
            "iris",
            "marigold",
            "petunia",
            "rose",
        ),
        "flower",
    ),
    **dict.fromkeys(("basketball", "football"), "ball"),
    "spade": "shovel",
    "mallet": "hammer",
    "paintbrush": "brush",
    "fireman": "person",
}

# Stamp path -> noun, or None to leave the stamp out, where the caption misleads.
NOUN_OVERRIDES: dict[str, str | None] = {
    "animals/insects/hoverfly.png": "fly",  # "A hoverfly resembles a honeybee drone."
    "animals/mammals/aquatic/sea_lion.png": "sea lion",
    "animals/mammals/bears/toys/edward_bear.png": "teddy bear",
    "animals/mammals/bovines/gnu-baby-stand.png": "antelope",  # "The baby of a gnu."
    "animals/mammals/bovines/gnu-baby.png": "antelope",
    "animals/mammals/wildboar.png": None,  # a boar and a piglet: one noun phrase, two animals
    "hobbies/binoculars.png": None,  # plural-only: the grammar would say "a binoculars"
    "hobbies/music/percussion/drumkit.png": None,  # several drums and cymbals
    "household/arttools/highlighter.png": "pen",
    "household/arttools/pen_dryerase.png": "pen",
    "household/dishes/glass.png": None,  # see-through: its half-opaque pixels are only the rim
    "household/garbagecan.png": "trash can",
    "household/rubberduck.png": None,  # a toy, which "a duck" would misname
    "household/wheelie_bin.png": "trash can",
    "household/toilet.png": "toilet",
    "medical/stethoscope.png": "stethoscope",
    "military/ammunition/old_naval_shell.png": None,  # a shell fired from a gun, not a seashell
    "military/paratrooper.png": "parachute",
    "military/vehicles/bradley.png": "tank",
    "military/vehicles/f22_raptor.png": "airplane",
    "military/vehicles/ww2_german_gun.png": "tank",
    "plants/eggplant.png": "plant",
    "plants/flowers/appooppanthady.png": None,  # milkweed seeds, not a flower
    "plants/flowers/flower9.png": "flower",  # "A flower covered in dew drops."
    "plants/lettuce_bolted.png": "plant",
    "seasonal/christmas/Roast_turkey.png": None,  # a roast, not a bird
    "space/spacewalk.png": "person",
    "sports/australian_rules_football.png": "ball",
    "sports/trophy_cup.png": None,  # a trophy, not a drinking cup
    "town/uk_post_box.png": "mailbox",
    "vehicles/auto/beetle.png": "car",  # a VW Beetle, not the insect
    "vehicles/emergency/firetruck.png": "fire truck",
    "vehicles/masstransit/green_korean_bus.png": "bus",
    "vehicles/race/indycar.png": "race car",
    "vehicles/ship/chineseJunk.png": "ship",
}

# Colour words a stamp may carry: from its caption ("A red apple.") or COLOUR_OVERRIDES, always
# checked by eye; None where the object's colour is not what the word would make one picture
# ("a great blue heron" is grey, "an orange orange" says nothing).
COLOUR_WORDS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black")
COLOUR_OVERRIDES: dict[str, str | None] = {
    "animals/birds/heron_greatblue.png": None,
    "animals/birds/heron_greatblue_flying.png": None,
    "animals/mammals/bovines/gnu-stand.png": None,
    "animals/marsupials/kangaroo.png": None,
    "plants/mushrooms/cep.png": None,
    "food/fruit/apple_fuji.png": "red",
    "food/fruit/apple_granny_smith.png": "green",
    "food/fruit/banana.png": "yellow",
    "food/fruit/pomegranate.png": "red",
    "food/fruit/Strawberry2.png": "red",
    "food/fruit/strawberry.png": "red",
    "food/vegetables/broccoli.png": "green",
    "food/vegetables/chilepepper.png": "red",
    "food/vegetables/pumpkin_small.png": "orange",
    "household/tools/toolbox.png": "red",
    "household/wheelie_bin.png": "green",
    "plants/flowers/rose.png": "red",
    "sports/basketball.png": "orange",
    "sports/cricketball.png": "red",
    "town/uk_post_box.png": "red",
    "town/usps_mailbox.png": "blue",
    "vehicles/auto/sedan.png": "blue",
    "vehicles/auto/sportscar2.png": "red",
    "vehicles/emergency/firetruck.png": "red",
}


def is_clipart_by_rule(png: Path, relative: str) -> bool:
    """The rules of the module docstring, before PHOTO_OVERRIDES."""
    parts = relative.split("/")
    if "cartoon" in parts or png.with_suffix(".svg").exists():
        return True
    if parts[0] == "symbols" and parts[1] != "money":
        return True
    with Image.open(png, formats=("PNG",)) as image:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
    opaque = rgba[..., 3] > 250
    if opaque.sum() < 50:  # a glow or a ghost: nothing is fully opaque
        opaque = rgba[..., 3] > 0
    # Stay two pixels inside the outline: anti-aliased edges are textured in drawings too.
    interior = ndimage.binary_erosion(opaque, iterations=2)
    if interior.sum() < 50:
        interior = opaque
    luminance = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    mean = ndimage.uniform_filter(luminance, 3)
    variance = ndimage.uniform_filter(luminance * luminance, 3) - mean * mean
    std = np.sqrt(np.maximum(variance, 0))[interior]
    flat = float((std < TEXTURE_STD[0]).mean())
    texture = float(((std >= TEXTURE_STD[0]) & (std < TEXTURE_STD[1])).mean())
    return texture < MAX_CLIPART_TEXTURE_SHARE and flat > MIN_CLIPART_FLAT_SHARE


def caption_of(png: Path) -> str:
    text = png.with_suffix(".txt")
    return text.read_text(errors="replace").splitlines()[0] if text.exists() else ""


def proposed_noun(caption: str, singulars: dict[str, str]) -> tuple[str, str | None]:
    """The caption's head noun, singular, and a colour word before it: "A red apple." ->
    ("apple", "red"), "Two flowers." -> ("flower", None). singulars maps plurals to nouns."""
    phrase = PHRASE_END.split(caption.lower())[0].strip()
    phrase = re.sub(r"[“”\"']", "", phrase)
    while (shorter := LEADING_WORDS.sub("", phrase)) != phrase:
        phrase = shorter
    words = phrase.split()
    if not words:
        return "", None
    # Two-word table nouns ("sea lion") first, then the last word.
    for noun in (" ".join(words[-2:]), words[-1]):
        noun = singulars.get(noun, noun)
        if noun in singulars.values():
            break
    noun = SYNONYMS.get(noun, noun)
    colour = next((word for word in words[:-1] if word in COLOUR_WORDS), None)
    return noun, colour


def select(stamps: Path, table: NounTable) -> tuple[list[tuple[str, ...]], dict]:
    """Rows (stamp, noun, plural, colour, mirror) for the photographs kept, and what was left
    out, for the report."""
    singulars = dict(zip(table.plurals, table.nouns, strict=True))
    rows = []
    left_out: dict[str, list[str]] = {"not in the noun table": [], "no noun": []}
    photos = 0
    for png in sorted(stamps.rglob("*.png")):
        relative = png.relative_to(stamps).as_posix()
        photo = PHOTO_OVERRIDES.get(relative)
        if photo is None:
            photo = not is_clipart_by_rule(png, relative)
        if not photo:
            continue
        photos += 1
        noun, colour = proposed_noun(caption_of(png), singulars)
        noun = NOUN_OVERRIDES.get(relative, noun)
        if not noun:
            left_out["no noun"].append(relative)
            continue
        if noun not in table.nouns:
            left_out["not in the noun table"].append(f"{relative} ({noun})")
            continue
        colour = COLOUR_OVERRIDES.get(relative, colour)
        # Tux Paint's "nomirror" marks stamps that must not be mirrored left-right (text on them).
        dat = png.with_suffix(".dat")
        mirror = "no" if dat.exists() and "nomirror" in dat.read_text(errors="replace") else "yes"
        rows.append((relative, noun, table.plural_of(noun), colour or "-", mirror))
    return rows, {"photographs": photos, **left_out}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stamps", type=Path, default=DEFAULT_STAMPS_DIR, help="Tux Paint stamps")
    parser.add_argument("--out", type=Path, default=STAMP_LIST)
    args = parser.parse_args(argv)
    if not args.stamps.is_dir():
        parser.error(
            f"stamps folder not found: {args.stamps} "
            "(run scripts/install_stamps.sh or pass --stamps DIR)"
        )
    rows, report = select(args.stamps, NounTable.load())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    lines = ["stamp\tnoun\tplural\tcolour\tmirror"] + ["\t".join(row) for row in rows]
    args.out.write_text("\n".join(lines) + "\n")
    print(
        f"{report['photographs']} photographs, {len(rows)} kept, "
        f"{len({row[1] for row in rows})} nouns -> {args.out}"
    )
    for reason in ("no noun", "not in the noun table"):
        print(f"left out, {reason}: {len(report[reason])}")
        for entry in report[reason]:
            print(f"  {entry}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
