"""Composites dataset: photographed objects pasted onto backgrounds, with true captions.

The objects are the photographic cut-outs of Tux Paint's stamps (Debian package
tuxpaint-stamps-default, GPL-2, never committed here): training/data/stamps.tsv lists the ones
used, each with a noun of captioner's ImageNet noun table, its plural and, where the object
clearly has one, a colour word (scripts/select_stamps.py writes it). A composite holds 1 to 3 of
them, flipped, scaled, slightly turned and with brightness, contrast and saturation jitter that
keeps them recognisable, on a background: a photo from a Debian wallpaper package, a
scikit-image texture in random colours, a plain colour, a gradient or blurred noise.

Composites reuse the shapes scenes' machinery (training/scenes/): placement (disjoint boxes
off the edges, a clear relation between some pair when there are several objects), the caption
grammar (counts, small/large, colours, left/right/above relations, five distinct captions) and
the COCO output of generate_split, so whatever reads generated scenes reads these.
Objects are {"noun", "color" (a word or null), "size", "bbox", "stamp"}; the bbox is tight around
the stamp's pixels that are at least half opaque, and boxes never overlap, so what a box holds is
that stamp. Nouns are drawn uniformly, then one of the noun's stamps, so a noun with fifteen
photographs (flower) is no more frequent than a noun with one. Everything is a pure function of
the per-image random stream, so the output is byte-identical for a seed on a given machine.

Reserved for an independent evaluation, never a background here: the photos of the Debian
packages darknet, opencv-doc, mate-backgrounds and plasma-workspace-wallpapers
(RESERVED_PHOTO_DIRS are refused).
"""

import colorsys
import csv
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from captioner.nouns import indefinite_article
from training.scenes.grammar import (
    SIZE_WORD_POLICIES,
    Lexicon,
    captions_for,
    has_clear_relation,
)
from training.scenes.shapes import MIN_IMAGE_SIZE, place, texture_crop
from training.scenes.splits import SceneMaker

STAMP_LIST = Path(__file__).parent.parent / "data" / "stamps.tsv"
DEFAULT_STAMPS_DIR = Path("/usr/share/tuxpaint/stamps")
# Landscapes of lomiri-wallpapers-16.04 (CC-BY-4.0, CC-BY-SA-4.0, CC0) without a prominent
# object that the captions would leave unnamed; its other photos show dogs, a bird, a clock, ...
DEFAULT_PHOTOS_DIR = Path("/usr/share/backgrounds")
LANDSCAPE_PHOTOS = (
    "Bridge_by_Sander_Klootwijk.jpg",
    "aitzgorri_by_Aitzol_Berasategi.jpg",
    "analogpattern_by_Peter_Nerlich.jpg",
    "life_by_Aitzol_Berasategi.jpg",
    "picosdeeuropa_by_Aitzol_Berasategi.jpg",
    "seeding_by_Clements_Engelhardt.jpg",
    "sunset_by_Aitzol_Berasategi.jpg",
)
RESERVED_PHOTO_DIRS = (
    Path("/usr/share/darknet"),
    Path("/usr/share/doc/opencv-doc"),
    Path("/usr/share/backgrounds/mate"),
    Path("/usr/share/wallpapers"),  # plasma-workspace-wallpapers
)
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
PHOTO_FORMATS = ("JPEG", "PNG", "WEBP")  # what Pillow may open them as, never EPS and the like
BACKGROUND_KINDS = ("photo", "texture", "plain", "gradient", "noise")
DESCRIPTION = "captioner composites of photographed objects"
INSTALL_HINT = "install tuxpaint-stamps-default (scripts/install_stamps.sh) or pass --stamps DIR"

OBJECT_COUNT_WEIGHTS = (0.35, 0.4, 0.25)  # composites with 1, 2, 3 stamps
# Independent draws would rarely repeat a noun, so counts ("two apples") would be rare.
REPEAT_PROBABILITY = 0.2
MAX_SAME_NOUN = 2  # the grammar counts up to two
# The stamp's longer side as a fraction of the image; the gap keeps "small" and "large" apart.
LONG_SIDES = {"small": (0.2, 0.27), "large": (0.36, 0.48), "close-up": (0.55, 0.8)}
# A close-up is a lone stamp that fills most of the frame, as the subject of a real photo does;
# its captions call it large.
CLOSE_UP_SIZE_WORD = "large"
MAX_ROTATION_DEGREES = 8.0
# Brightness, contrast and saturation factors: enough to vary lighting, not to change a colour
# word ("a red apple" stays red).
ENHANCE_RANGE = (0.85, 1.15)
COLOR_PROBABILITY = 0.6  # a mention says the stamp's colour word this often
# Background colours stay muted (saturation at most this) so saturated objects stand out and a
# colour word always names the object, never the ground.
MAX_BACKGROUND_SATURATION = 0.4
PHOTO_SIDE = 768  # photos are decoded once per worker at about this shorter side
PHOTO_CROP = (0.35, 1.0)  # crop side as a fraction of the photo's shorter side


@dataclass(frozen=True)
class Stamp:
    """One row of the stamp list."""

    path: str  # relative to the stamps folder
    noun: str
    plural: str
    color: str | None
    mirror: bool  # may be mirrored left-right (Tux Paint marks stamps with text "nomirror")


@dataclass(frozen=True)
class CompositeConfig:
    """Everything a worker needs to draw composites; picklable, checked by load_config."""

    stamps_dir: str
    stamps: tuple[Stamp, ...]
    photos: tuple[str, ...]
    backgrounds: tuple[str, ...]
    max_objects: int = 3
    close_ups: float = 0.0  # share of single-stamp composites drawn as close-ups
    size_words: str = "any"  # when captions say a size: grammar.SIZE_WORD_POLICIES


def read_stamp_list(path: Path = STAMP_LIST) -> list[Stamp]:
    """The rows of a stamps.tsv (columns stamp, noun, plural, colour, mirror; "-" for no colour)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [
        Stamp(
            row["stamp"],
            row["noun"],
            row["plural"],
            None if row["colour"] == "-" else row["colour"],
            row["mirror"] == "yes",
        )
        for row in rows
    ]


def _refuse_reserved(path: Path) -> None:
    """ValueError when path, links resolved, lies in one of the RESERVED_PHOTO_DIRS."""
    resolved = path.resolve()
    if any(resolved.is_relative_to(reserved) for reserved in RESERVED_PHOTO_DIRS):
        raise ValueError(
            f"{path} is reserved for the independent evaluation; its photos are never used "
            "as backgrounds"
        )


def _find_photos(paths: list[Path] | None) -> list[Path]:
    """Photo files: given ones (files, or folders' images), else the installed landscapes."""
    if paths is None:
        return [
            DEFAULT_PHOTOS_DIR / name
            for name in LANDSCAPE_PHOTOS
            if (DEFAULT_PHOTOS_DIR / name).is_file()
        ]
    found: list[Path] = []
    for path in paths:
        _refuse_reserved(path)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"background photos not found: {path}")
    if not found:
        raise FileNotFoundError(f"no photos ({', '.join(PHOTO_SUFFIXES)}) in {paths}")
    for path in found:  # a link in a folder of one's own must not bring a reserved photo in
        _refuse_reserved(path)
    return found


def load_config(
    stamps_dir: Path = DEFAULT_STAMPS_DIR,
    stamp_list: Path = STAMP_LIST,
    photos: list[Path] | None = None,
    backgrounds: tuple[str, ...] | None = None,
    max_objects: int = 3,
    close_ups: float = 0.0,
    size_words: str = "any",
) -> tuple[CompositeConfig, list[str]]:
    """The checked configuration, and notes on what is missing but not needed.

    Without photos (none given and lomiri-wallpapers-16.04 not installed), the default
    backgrounds are the synthetic ones and a note says so; asking for photo backgrounds then is
    an error. Raises FileNotFoundError naming what is missing, ValueError for bad values.
    """
    stamps_dir = Path(stamps_dir)
    if not stamps_dir.is_dir():
        raise FileNotFoundError(f"stamps folder not found: {stamps_dir}; {INSTALL_HINT}")
    stamps = read_stamp_list(stamp_list)
    if not stamps:
        raise ValueError(f"no stamps listed in {stamp_list}")
    missing = [stamp.path for stamp in stamps if not (stamps_dir / stamp.path).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of the {len(stamps)} stamps listed in {stamp_list} are not in "
            f"{stamps_dir} (first: {', '.join(missing[:3])}); {INSTALL_HINT}"
        )
    if not 1 <= max_objects <= len(OBJECT_COUNT_WEIGHTS):
        raise ValueError(f"max objects must be 1 to {len(OBJECT_COUNT_WEIGHTS)}, got {max_objects}")
    if not 0 <= close_ups <= 1:
        raise ValueError(f"close-ups must be a share from 0 to 1, got {close_ups}")
    if size_words not in SIZE_WORD_POLICIES:
        raise ValueError(f"size words must be one of {SIZE_WORD_POLICIES}, got {size_words!r}")
    notes = []
    photo_paths = _find_photos(photos)
    if backgrounds is None:
        backgrounds = BACKGROUND_KINDS if photo_paths else BACKGROUND_KINDS[1:]
        if not photo_paths:
            notes.append(
                "background photos not found (install lomiri-wallpapers-16.04 or pass --photos); "
                "using synthetic backgrounds only"
            )
    unknown = sorted(set(backgrounds) - set(BACKGROUND_KINDS))
    if unknown or not backgrounds:
        raise ValueError(f"backgrounds must be some of {BACKGROUND_KINDS}, got {backgrounds}")
    if "photo" in backgrounds and not photo_paths:
        raise FileNotFoundError(
            f"photo backgrounds asked for, but none of {DEFAULT_PHOTOS_DIR}/"
            f"{{{','.join(LANDSCAPE_PHOTOS[:2])},...}} is installed: install "
            "lomiri-wallpapers-16.04 or pass --photos PATH"
        )
    config = CompositeConfig(
        str(stamps_dir),
        tuple(stamps),
        tuple(str(p) for p in photo_paths) if "photo" in backgrounds else (),
        tuple(backgrounds),
        max_objects,
        close_ups,
        size_words,
    )
    return config, notes


@functools.cache
def _stamp_pixels(stamps_dir: str, path: str) -> Image.Image:
    """A stamp as RGBA, cropped to its visible pixels; loaded once per worker."""
    with Image.open(Path(stamps_dir) / path, formats=("PNG",)) as image:
        rgba = image.convert("RGBA")
    return rgba.crop(rgba.getchannel("A").getbbox())


@functools.cache
def _photo_pixels(path: str) -> np.ndarray:
    """A background photo as (H, W, 3) uint8, decoded at about PHOTO_SIDE on its shorter side."""
    with Image.open(path, formats=PHOTO_FORMATS) as image:
        image.draft("RGB", (PHOTO_SIDE, PHOTO_SIDE))  # JPEG: decode at a reduced scale
        rgb = image.convert("RGB")
    scale = PHOTO_SIDE / min(rgb.size)
    if scale < 1:
        size = (round(rgb.width * scale), round(rgb.height * scale))
        rgb = rgb.resize(size, Image.Resampling.LANCZOS)
    return np.asarray(rgb)


def _muted_colour(rng: np.random.Generator) -> np.ndarray:
    hue, saturation = rng.uniform(0, 1), rng.uniform(0.05, MAX_BACKGROUND_SATURATION)
    value = rng.uniform(0.3, 0.9)
    return np.array(colorsys.hsv_to_rgb(hue, saturation, value), dtype=np.float32) * 255


def _ramp(rng: np.random.Generator, size: int) -> np.ndarray:
    """0..1 along a random direction; (size, size)."""
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    ramp = np.cos(angle) * xs + np.sin(angle) * ys
    return (ramp - ramp.min()) / (ramp.max() - ramp.min())


def _background(
    kind: str, rng: np.random.Generator, size: int, config: CompositeConfig
) -> np.ndarray:
    """(size, size, 3) float32 in 0..255."""
    if kind == "photo":
        photo = _photo_pixels(config.photos[rng.integers(len(config.photos))])
        side = int(rng.uniform(*PHOTO_CROP) * min(photo.shape[:2]))
        top = int(rng.integers(0, photo.shape[0] - side + 1))
        left = int(rng.integers(0, photo.shape[1] - side + 1))
        crop = Image.fromarray(photo[top : top + side, left : left + side])
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        pixels = np.asarray(crop.resize((size, size), Image.Resampling.LANCZOS), np.float32)
        return pixels * rng.uniform(0.85, 1.1)
    if kind == "plain":
        return np.broadcast_to(_muted_colour(rng), (size, size, 3)).astype(np.float32)
    if kind == "gradient":
        start, end = _muted_colour(rng), _muted_colour(rng)
        return start + _ramp(rng, size)[..., None] * (end - start)
    if kind == "noise":
        # Smooth blobs: coarse noise upsampled, between two colours.
        cells = int(rng.integers(3, 12))
        coarse = rng.random((cells, cells), dtype=np.float32)
        blobs = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC))
        blobs = np.clip(blobs, 0, 1)
        start, end = _muted_colour(rng), _muted_colour(rng)
        return start + blobs[..., None] * (end - start)
    if kind == "texture":
        grey = texture_crop(rng, size)
        # Adding the same amount to every channel keeps the colour's saturation.
        contrast = rng.uniform(15, 45)
        shade = (grey - grey.mean()) / (grey.std() + 1e-6) * contrast
        return _muted_colour(rng) + shade[..., None]
    raise ValueError(f"unknown background kind {kind!r}")


def _draw_stamps(rng: np.random.Generator, config: CompositeConfig) -> list[Stamp]:
    """1 to max_objects stamps; a noun repeats at most MAX_SAME_NOUN times, always with the same
    colour word, so a phrase naming a noun ("two red apples") names all of its stamps."""
    by_noun: dict[str, list[Stamp]] = {}
    for stamp in config.stamps:
        by_noun.setdefault(stamp.noun, []).append(stamp)
    nouns = sorted(by_noun)
    weights = np.array(OBJECT_COUNT_WEIGHTS[: config.max_objects])
    count = 1 + int(rng.choice(len(weights), p=weights / weights.sum()))
    chosen: list[Stamp] = []
    while len(chosen) < count:
        if chosen and rng.random() < REPEAT_PROBABILITY:
            noun = chosen[0].noun
        else:
            noun = nouns[rng.integers(len(nouns))]
        same = [stamp for stamp in chosen if stamp.noun == noun]
        if len(same) >= MAX_SAME_NOUN:
            continue
        candidates = [s for s in by_noun[noun] if not same or s.color == same[0].color]
        chosen.append(candidates[rng.integers(len(candidates))])
    return chosen


def _transform(
    stamp: Stamp, size_class: str, rng: np.random.Generator, config: CompositeConfig, size: int
) -> Image.Image:
    """The stamp flipped, scaled to its size class, turned and re-lit; RGBA, cropped to it."""
    image = _stamp_pixels(config.stamps_dir, stamp.path)
    if stamp.mirror and rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    long_side = rng.uniform(*LONG_SIDES[size_class]) * size
    scale = long_side / max(image.size)
    new_size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    # Premultiplied alpha, so transparent pixels' colours do not bleed into the edges.
    premultiplied = image.convert("RGBa").resize(new_size, Image.Resampling.LANCZOS)
    angle = rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES)
    premultiplied = premultiplied.rotate(angle, Image.Resampling.BICUBIC, expand=True)
    image = premultiplied.convert("RGBA")
    alpha = image.getchannel("A")
    rgb = image.convert("RGB")
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        rgb = enhancer(rgb).enhance(rng.uniform(*ENHANCE_RANGE))
    rgb.putalpha(alpha)
    return rgb.crop(alpha.getbbox())


def _visible_box(image: Image.Image, left: int, top: int) -> list[int]:
    """[x, y, w, h] of the image's half-opaque pixels once pasted at (left, top)."""
    x0, y0, x1, y1 = image.getchannel("A").point(lambda a: 255 if a >= 128 else 0).getbbox()
    return [left + x0, top + y0, x1 - x0, y1 - y0]


def _paste(canvas: np.ndarray, image: Image.Image, left: int, top: int) -> None:
    """Blends the RGBA image into canvas (float32 RGB) with its top left corner at (left, top)."""
    pixels = np.asarray(image, dtype=np.float32)
    alpha = pixels[..., 3:] / 255
    region = canvas[top : top + image.height, left : left + image.width]
    region += alpha * (pixels[..., :3] - region)


@functools.cache
def _lexicon(config: CompositeConfig) -> Lexicon:
    plurals = {stamp.noun: stamp.plural for stamp in config.stamps}
    return Lexicon(plurals, indefinite_article, COLOR_PROBABILITY, config.size_words)


def make_composite(
    rng: np.random.Generator, size: int, config: CompositeConfig
) -> tuple[Image.Image, list[dict], list[dict]]:
    """One random composite: the RGB image, its objects and five captions (see the module
    docstring). Pure function of rng's state and config."""
    if size < MIN_IMAGE_SIZE:
        raise ValueError(f"image size must be at least {MIN_IMAGE_SIZE} px, got {size}")
    while True:
        stamps = _draw_stamps(rng, config)
        size_classes = ["small" if rng.random() < 0.5 else "large" for _ in stamps]
        # Drawn only when asked for, so composites made without close-ups stay as they were.
        if len(stamps) == 1 and config.close_ups and rng.random() < config.close_ups:
            size_classes = ["close-up"]
        images = [
            _transform(stamp, size_class, rng, config, size)
            for stamp, size_class in zip(stamps, size_classes, strict=True)
        ]
        corners = [
            np.array([[0, 0], [i.width, 0], [i.width, i.height], [0, i.height]], dtype=float)
            - [i.width / 2, i.height / 2]
            for i in images
        ]
        for _ in range(20):  # then other stamps: these may be too big to fit together
            placed = place(corners, rng, size)
            if placed is not None:
                break
        if placed is None:
            continue
        offsets = [
            (int(np.floor(box[:, 0].min())), int(np.floor(box[:, 1].min()))) for box in placed
        ]
        bboxes = [
            _visible_box(image, *offset) for image, offset in zip(images, offsets, strict=True)
        ]
        # place() saw the whole images; the captions see the half-opaque boxes, which can differ
        # enough (a lobster's faint antennae) to lose the relation the captions need.
        if has_clear_relation(bboxes, size):
            break
    canvas = _background(
        config.backgrounds[rng.integers(len(config.backgrounds))], rng, size, config
    )
    objects = []
    for stamp, size_class, image, offset, bbox in zip(
        stamps, size_classes, images, offsets, bboxes, strict=True
    ):
        _paste(canvas, image, *offset)
        objects.append(
            {
                "noun": stamp.noun,
                "color": stamp.color,
                "size": CLOSE_UP_SIZE_WORD if size_class == "close-up" else size_class,
                "bbox": bbox,
                "stamp": stamp.path,
            }
        )
    image = Image.fromarray(np.clip(canvas, 0, 255).round().astype(np.uint8))
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
    noise = rng.standard_normal((size, size, 3), dtype=np.float32) * rng.uniform(1, 4)
    pixels = np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).round().astype(np.uint8)
    views = [
        {"shape": o["noun"], "color": o["color"] or "", "size": o["size"], "bbox": o["bbox"]}
        for o in objects
    ]
    return Image.fromarray(pixels), objects, captions_for(views, size, rng, _lexicon(config))


def describe(config: CompositeConfig) -> dict[str, object]:
    """Entries for the COCO file's "info": what the composites were made of."""
    return {
        "description": DESCRIPTION,
        "stamps": len(config.stamps),
        "nouns": len({stamp.noun for stamp in config.stamps}),
        "backgrounds": list(config.backgrounds),
        "photos": [Path(photo).name for photo in config.photos],
        "max_objects": config.max_objects,
        "close_ups": config.close_ups,
        "size_words": config.size_words,
    }


def scene_maker(config: CompositeConfig) -> SceneMaker:
    """make_composite bound to config, in a form worker processes can receive."""
    return functools.partial(make_composite, config=config)
