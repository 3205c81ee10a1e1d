"""Named-subject rate on real photos: does the caption name what the photo shows?

    python -m training.real_photos --model runs/real/best     # a trained model's captions
    python -m training.real_photos                            # the default (shipped) model
    python -m training.real_photos --head-only                # Lite0's ImageNet head alone

The development set (training/data/real_photos.json) lists photos that installed packages ship,
never the photos themselves: each entry names a Python package (its data folder, see
PYTHON_DATA_DIRS) or a Debian package (checked with dpkg), the file, for a Qt resource bundle
the resource inside it, and the acceptable singular nouns. A photo is named when its caption
holds one of them or its plural as whole words (tokenised like the captions, so multi-word
nouns match as phrases). Photos whose package is missing are skipped, and said so.

--head-only is the baseline a captioning model must beat: the encoder's own ImageNet head
(EfficientNet-Lite0's classifier) on the pooled grid ("pooled") and on each grid cell, taking
the most confident cell ("best cell"), its top class turned into a noun by captioner/nouns.py,
for every weighting of the class-to-noun mapping.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from PIL import Image

from captioner.cli.args import add_device_argument
from captioner.encoder import EFFICIENTNET_LITE, Encoder, EncoderConfig
from captioner.nouns import DEFAULT_WEIGHTING, WEIGHTINGS, NounTable, indefinite_article, pluralize
from captioner.options import DecodeOptions
from captioner.photos.images import load_image
from captioner.vocab import tokenize

DEV_SET_PATH = Path(__file__).parent / "data" / "real_photos.json"

# Where a Python package keeps its bundled photos, relative to the package's folder.
PYTHON_DATA_DIRS = {
    "skimage": "data",
    "sklearn": "datasets/images",
    "matplotlib": "mpl-data/sample_data",
}
PIP_NAMES = {"skimage": "scikit-image", "sklearn": "scikit-learn", "matplotlib": "matplotlib"}


@dataclass(frozen=True)
class RealPhoto:
    """One development-set photo: where it is installed and the nouns that name its subject."""

    id: str
    package: str
    file: str
    nouns: tuple[str, ...]
    path: Path  # the installed file (for a resource, the bundle holding it)
    resource: str | None = None  # a path inside a Qt resource bundle (.rcc)

    def image(self) -> Image.Image:
        """The photo as an upright RGB image, like the captioner reads files."""
        if self.resource is None:
            return load_image(self.path)
        return load_image(Image.open(io.BytesIO(_read_qt_resource(self.path, self.resource))))


@dataclass(frozen=True)
class MissingPhoto:
    id: str
    reason: str  # what to install, or what is wrong


def load_dev_set(path: str | Path = DEV_SET_PATH) -> tuple[list[RealPhoto], list[MissingPhoto]]:
    """The photos of the development set that are installed here, and those that are not."""
    found, missing = [], []
    for entry in json.loads(Path(path).read_text(encoding="utf-8")):
        package, file, resource = entry["package"], entry["file"], entry.get("resource")
        photo_id = f"{package}:{Path(resource or file).stem}"
        if package in PYTHON_DATA_DIRS:
            located, reason = _python_package_file(package, file)
        else:
            located, reason = _debian_package_file(package, file)
        if located is not None and resource is not None and not _has_qt():
            located, reason = None, "reading its Qt resource needs PySide6 (pip install PySide6)"
        if located is None:
            missing.append(MissingPhoto(photo_id, reason))
        else:
            nouns = tuple(entry["nouns"])
            found.append(RealPhoto(photo_id, package, file, nouns, located, resource))
    return found, missing


def _python_package_file(package: str, file: str) -> tuple[Path | None, str]:
    spec = importlib.util.find_spec(package)
    install = f"pip install {PIP_NAMES[package]}"
    if spec is None or spec.origin is None:
        return None, f"Python package {package} is not installed ({install})"
    path = Path(spec.origin).parent / PYTHON_DATA_DIRS[package] / file
    if not path.is_file():
        return None, f"{path} is not in this version of {package} ({install})"
    return path, ""


def _debian_package_file(package: str, file: str) -> tuple[Path | None, str]:
    install = f"apt-get install {package}"
    if file not in _debian_package_files(package):
        return None, f"Debian package {package} is not installed or lacks {file} ({install})"
    if not Path(file).is_file():
        return None, f"{file} of Debian package {package} has been removed ({install} again)"
    return Path(file), ""


@cache
def _debian_package_files(package: str) -> frozenset[str]:
    try:
        listing = subprocess.run(
            ["dpkg-query", "--listfiles", package], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:  # not a Debian system
        return frozenset()
    return frozenset(listing.stdout.splitlines()) if listing.returncode == 0 else frozenset()


def _has_qt() -> bool:
    return importlib.util.find_spec("PySide6") is not None


def _read_qt_resource(bundle: Path, resource: str) -> bytes:
    from PySide6.QtCore import QFile, QIODevice, QResource

    # Registering a bundle twice is harmless; Qt keeps it until the process ends.
    if not QResource.registerResource(str(bundle)):
        raise OSError(f"{bundle}: not a Qt resource bundle")
    file = QFile(resource)
    if not file.open(QIODevice.OpenModeFlag.ReadOnly):
        raise OSError(f"{bundle} holds no {resource}")
    try:
        return bytes(file.readAll().data())
    finally:
        file.close()


@dataclass(frozen=True)
class PhotoResult:
    id: str
    nouns: tuple[str, ...]
    caption: str
    named: bool


@dataclass(frozen=True)
class NamedSubjectReport:
    results: list[PhotoResult]

    @property
    def named(self) -> int:
        return sum(result.named for result in self.results)

    @property
    def rate(self) -> float:
        return self.named / len(self.results) if self.results else 0.0

    def table(self) -> str:
        """One line per photo (id, acceptable nouns, caption, named), then the rate."""
        width = max((len(r.id) for r in self.results), default=5)
        nouns_width = max((len(", ".join(r.nouns)) for r in self.results), default=5)
        lines = [f"{'photo':<{width}}  {'nouns':<{nouns_width}}  named  caption"]
        for r in self.results:
            mark = "yes" if r.named else "no"
            lines.append(
                f"{r.id:<{width}}  {', '.join(r.nouns):<{nouns_width}}  {mark:<5}  {r.caption}"
            )
        lines.append(f"named-subject rate: {self.named}/{len(self.results)} = {self.rate:.0%}")
        return "\n".join(lines)


def names_subject(caption: str, nouns: tuple[str, ...] | list[str]) -> bool:
    """Whether the caption holds one of the nouns, or its plural, as whole words."""
    tokens = tokenize(caption)
    for noun in nouns:
        for form in (noun, pluralize(noun)):
            phrase = tokenize(form)
            if any(
                tokens[i : i + len(phrase)] == phrase for i in range(len(tokens) - len(phrase) + 1)
            ):
                return True
    return False


def named_subject_rate(
    captions: dict[str, str], photos: list[RealPhoto] | None = None
) -> NamedSubjectReport:
    """Score captions keyed by photo id against the development set (installed photos by
    default); a photo with no caption counts as not named."""
    if photos is None:
        photos, _ = load_dev_set()
    results = []
    for photo in photos:
        caption = captions.get(photo.id, "")
        results.append(
            PhotoResult(photo.id, photo.nouns, caption, names_subject(caption, photo.nouns))
        )
    return NamedSubjectReport(results)


# The head-only baseline.


@torch.inference_mode()
def head_class_probabilities(
    images: list[Image.Image], encoder=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lite0's ImageNet class probabilities: (photos, 1000) over the average-pooled grid, as the
    classifier was trained, and (photos, grid_h, grid_w, 1000) for each grid cell alone.

    Photos are preprocessed exactly as the captioner's encoder does (resized, not cropped, to
    224 px); `encoder` defaults to the frozen EfficientNet-Lite0 the captioner uses.
    """
    encoder = encoder or Encoder(EncoderConfig())
    classifier = encoder.backbone._fc
    pixels = torch.stack([encoder.preprocess(load_image(im, min_size=224)) for im in images])
    grid = encoder(pixels)  # (photos, grid_h, grid_w, 1280): the conv head's activations
    pooled = classifier(grid.mean(dim=(1, 2))).softmax(-1)
    cells = classifier(grid).softmax(-1)
    return pooled, cells


def head_nouns(
    pooled: torch.Tensor, cells: torch.Tensor, table: NounTable, weighting: str
) -> tuple[list[str | None], list[str | None]]:
    """The top noun of the pooled head, and of the most confident cell, for each photo; None
    when all the mass sits on left-out classes."""
    pooled_nouns = table.noun_probabilities(pooled, weighting)
    cell_nouns = table.noun_probabilities(cells.flatten(1, 2), weighting)  # (photos, cells, N)
    best_cell = cell_nouns.amax(-1).argmax(-1)
    best_cell_nouns = cell_nouns[torch.arange(len(cells)), best_cell]

    def top(probabilities: torch.Tensor) -> list[str | None]:
        values, indices = probabilities.max(-1)
        return [
            table.nouns[i] if v > 0 else None
            for v, i in zip(values.tolist(), indices.tolist(), strict=True)
        ]

    return top(pooled_nouns), top(best_cell_nouns)


def noun_caption(noun: str | None) -> str:
    return f"{indefinite_article(noun)} {noun}" if noun else ""


def head_only_reports(
    photos: list[RealPhoto], table: NounTable | None = None, weightings=WEIGHTINGS, encoder=None
) -> dict[tuple[str, str], NamedSubjectReport]:
    """{(weighting, "pooled" | "best cell"): report} for the head-only baseline."""
    table = table or NounTable.load()
    pooled, cells = head_class_probabilities([photo.image() for photo in photos], encoder)
    reports = {}
    for weighting in weightings:
        for where, nouns in zip(
            ("pooled", "best cell"), head_nouns(pooled, cells, table, weighting), strict=True
        ):
            captions = {
                photo.id: noun_caption(noun) for photo, noun in zip(photos, nouns, strict=True)
            }
            reports[weighting, where] = named_subject_rate(captions, photos)
    return reports


def model_report(
    photos: list[RealPhoto], model: str | None, device: str, length_penalty: float = 0.0
) -> NamedSubjectReport:
    """The named-subject rate of a captioning model's best (beam search) captions."""
    from captioner.api import Captioner

    captioner = Captioner.load(model, device=device)
    results = captioner.caption(
        [photo.image() for photo in photos], DecodeOptions(length_penalty=length_penalty)
    )
    return named_subject_rate({p.id: r.text for p, r in zip(photos, results, strict=True)}, photos)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Named-subject rate on the real-photo dev set.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", help="model directory (default: the shipped model)")
    source.add_argument(
        "--head-only", action="store_true", help="the ImageNet head's top noun, no decoder"
    )
    parser.add_argument(
        "--weighting",
        choices=WEIGHTINGS,
        default=DEFAULT_WEIGHTING,
        help="class-to-noun weighting whose per-photo table --head-only prints",
    )
    parser.add_argument(
        "--encoder",
        choices=EFFICIENTNET_LITE,
        default=EncoderConfig.name,
        help="--head-only: whose ImageNet classifier (the shipped models use Lite0)",
    )
    parser.add_argument(
        "--image-size", type=int, default=EncoderConfig.image_size, help="--head-only: pixels"
    )
    parser.add_argument("--length-penalty", type=float, default=0.0, help="the model's beam search")
    add_device_argument(parser)
    parser.add_argument("--dev-set", type=Path, default=DEV_SET_PATH)
    args = parser.parse_args(argv)

    photos, missing = load_dev_set(args.dev_set)
    for photo in missing:
        print(f"skipped {photo.id}: {photo.reason}", file=sys.stderr)
    if not photos:
        print("no development-set photo is installed", file=sys.stderr)
        return 1
    table = NounTable.load()
    not_in_table = [p.id for p in photos if not set(p.nouns) & set(table.nouns)]
    if not_in_table:
        print(f"no acceptable noun of these is in the noun table: {', '.join(not_in_table)}")
    if args.head_only:
        try:
            encoder = Encoder(EncoderConfig(name=args.encoder, image_size=args.image_size))
        except ModuleNotFoundError as error:
            print(error, file=sys.stderr)
            return 2
        reports = head_only_reports(photos, table, encoder=encoder)
        for where in ("pooled", "best cell"):
            print(f"\n== head only, {where}, weighting {args.weighting}")
            print(reports[args.weighting, where].table())
        print(f"\n== head only, named-subject rate on {len(photos)} photos")
        print(f"{'weighting':<10} {'pooled':>8} {'best cell':>10}")
        for weighting in WEIGHTINGS:
            pooled, cell = reports[weighting, "pooled"], reports[weighting, "best cell"]
            print(f"{weighting:<10} {pooled.rate:>8.0%} {cell.rate:>10.0%}")
    else:
        print(model_report(photos, args.model, args.device, args.length_penalty).table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
