"""Caption dataset readers: every annotation format people have, turned into one list of samples.

Supported formats (detected from the file, or named with ``format=``):

- ``coco``: COCO captions JSON (``captions_train2014.json``): ``images`` + ``annotations``.
- ``karpathy``: Karpathy split JSON (``dataset_coco.json``, ``dataset_flickr8k.json``, ...).
- ``flickr``: Flickr8k/30k token files (``name.jpg#0<TAB>caption``) with optional split lists
  (``Flickr_8k.trainImages.txt``, ``...devImages.txt``, ``...testImages.txt``).
- ``csv``: header ``image,caption`` (optional ``split``), one row per caption.
- ``jsonl``: one object per line, ``{"image": ..., "caption": ...}`` or ``"captions": [...]``.

COCO files, and CSV/JSONL records without a split value, hold one split: the ``split`` argument,
else the split named in the file name (``captions_val2017``), else "train". A Flickr token file
without split lists is all "train". Images keep the order of the file.
"""

from __future__ import annotations

import csv
import functools
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from captioner.vocab import tokenize

FORMATS = ("coco", "karpathy", "flickr", "csv", "jsonl")

# What files call their splits -> our names. "restval" is Karpathy's extra COCO training data.
_SPLIT_NAMES = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "restval": "restval",
}
_SPLIT_IN_FILE_NAME = re.compile(r"(?<![a-z])(train|validation|valid|val|dev|test)(?![a-z])")
_FLICKR_LINE = re.compile(r"([^\t#]+)#(\d+)\t(.*)")
_FLICKR_SPLIT_LISTS = (
    ("train", "*trainImages.txt"),
    ("val", "*devImages.txt"),
    ("val", "*valImages.txt"),
    ("test", "*testImages.txt"),
)
_MISSING_SHOWN = 5  # missing image names quoted in the error
_NAME_SHOWN = 60  # characters of a quoted image name; longer ones are cut in the middle
# Hints name the commands' options; from Python they are read_samples' skip_missing= and format=
_SKIP_MISSING_HINT = "--skip-missing drops them"
_FORMAT_HINT = "name it with --format"
# Formats whose Sample.extra holds a list of per-caption dicts, kept aligned with the captions
_PER_CAPTION_KEY = {"coco": "annotations", "karpathy": "sentences"}


@dataclass(frozen=True)
class Sample:
    """One image and its reference captions."""

    image_path: Path  # absolute, or joined with the images dir
    captions: tuple[str, ...]  # raw text, stripped, at least one
    split: str  # "train" | "val" | "test" ("restval" only with restval_as_train=False)
    image_id: int | str  # COCO image id where known, else the image's file name
    # Format-specific keys kept as-is. COCO: extra["annotations"], Karpathy: extra["sentences"]
    # hold the per-caption dicts, aligned with `captions`.
    extra: dict[str, Any] = field(default_factory=dict, hash=False)

    @functools.cached_property
    def tokens(self) -> tuple[tuple[str, ...], ...]:
        """Each caption tokenized (captioner.vocab.tokenize), worked out once: the vocabulary
        and the training pairs both read it. Interned: a large dataset repeats few words."""
        return tuple(tuple(sys.intern(t) for t in tokenize(c)) for c in self.captions)


@dataclass
class ReadResult:
    samples: list[Sample]
    format: str
    empty_captions_dropped: int = 0
    images_without_captions: int = 0  # dropped: no non-empty caption left
    missing_images: list[Path] = field(default_factory=list)  # dropped with skip_missing=True
    unlisted_images: int = 0  # Flickr: in the token file but in none of the split lists; dropped


class DatasetFormatError(ValueError):
    """A caption file that cannot be read; the message names the file and the line or JSON key.

    Hints in messages name the options of the commands (--skip-missing, --format), which are
    read_samples' skip_missing= and format= arguments.
    """


class MissingImagesError(DatasetFormatError):
    """Images named by the annotations are not on disk; `missing` lists their paths."""

    def __init__(self, message: str, missing: list[Path]):
        super().__init__(message)
        self.missing = missing


@dataclass
class _Image:
    """One image while a file is read; its captions may still be empty strings."""

    path: Path
    image_id: int | str
    split: str
    captions: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def read_samples(
    annotations: str | Path,
    images_dir: str | Path,
    *,
    format: str | None = None,
    split: str | None = None,
    restval_as_train: bool = True,
    skip_missing: bool = False,
    splits_dir: Path | None = None,
) -> ReadResult:
    """Read a caption annotation file into samples.

    split: keep only this split ("train", "val", "test", "restval"); also the split of COCO files
    and of CSV/JSONL records without one. Asking for a split the file does not contain is an
    error. skip_missing: drop samples whose image file is missing (listed in the result)
    instead of raising MissingImagesError. splits_dir: where the Flickr split lists are
    (default: next to the token file).
    """
    path = Path(annotations)
    images_dir = Path(images_dir)
    if not path.is_file():
        raise FileNotFoundError(f"annotations file not found: {path}")
    if not images_dir.is_dir():
        raise FileNotFoundError(f"images directory not found: {images_dir}")
    if format is not None and format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    if split is not None and split not in ("train", "val", "test", "restval"):
        raise ValueError(f"unknown split {split!r}; expected train, val, test or restval")

    data = None
    if format is None:
        format, data = _detect_format(path)
    elif format in ("coco", "karpathy"):
        data = _load_json(path)
    default_split = split or _split_from_file_name(path) or "train"

    unlisted = 0
    if format == "coco":
        images = _read_coco(path, data, images_dir, default_split)
    elif format == "karpathy":
        images = _read_karpathy(path, data, images_dir, restval_as_train)
    elif format == "flickr":
        images, unlisted = _read_flickr(path, images_dir, splits_dir)
    elif format == "csv":
        images = _read_csv(path, images_dir, default_split, restval_as_train)
    else:
        images = _read_jsonl(path, images_dir, default_split, restval_as_train)
    images = _select_split(images, split, path)
    samples, empty_captions, images_without_captions = _drop_empty_captions(
        images, aligned_key=_PER_CAPTION_KEY.get(format)
    )
    samples, missing = _check_images(samples, path, images_dir, skip_missing)
    return ReadResult(
        samples=samples,
        format=format,
        empty_captions_dropped=empty_captions,
        images_without_captions=images_without_captions,
        missing_images=missing,
        unlisted_images=unlisted,
    )


def _detect_format(path: Path) -> tuple[str, Any]:
    """Name the format of `path`; for JSON formats also return the parsed file (read once)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv", None
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl", None
    with path.open("rb") as file:
        head = file.read(4096).decode("utf-8-sig", errors="replace")
    first_line = next((line for line in head.splitlines() if line.strip()), "")
    if first_line.lstrip().startswith(("{", "[")):
        data = _load_json(path)
        if isinstance(data, dict) and isinstance(data.get("images"), list):
            if "annotations" in data:
                return "coco", data
            first_image = data["images"][0] if data["images"] else None
            if isinstance(first_image, dict) and "sentences" in first_image:
                return "karpathy", data
        raise DatasetFormatError(
            f"{path.name}: JSON is neither COCO captions ('images' and 'annotations') nor a "
            f"Karpathy split ('images' with 'sentences'); {_FORMAT_HINT}"
        )
    if _FLICKR_LINE.fullmatch(first_line):
        return "flickr", None
    raise DatasetFormatError(
        f"{path.name}: cannot tell the caption format (expected COCO or Karpathy JSON, a Flickr "
        f"token file, .csv or .jsonl); {_FORMAT_HINT}: one of {', '.join(FORMATS)}"
    )


def _read_coco(path: Path, data: Any, images_dir: Path, split: str) -> list[_Image]:
    name = path.name
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DatasetFormatError(f"{name}: no 'images' list")
    if not isinstance(data.get("annotations"), list):
        raise DatasetFormatError(f"{name}: no 'annotations' list")

    images: dict[int | str, _Image] = {}
    for index, entry in enumerate(data["images"]):
        where = f"{name}: images[{index}]"
        _require_keys(entry, ("id", "file_name"), where)
        image_id, file_name = entry["id"], entry["file_name"]
        _check_id(image_id, "id", where)
        if not isinstance(file_name, str) or not file_name.strip():
            raise DatasetFormatError(f"{where} 'file_name' must be a non-empty string")
        if image_id in images:
            first = list(images).index(image_id)
            raise DatasetFormatError(f"{where} repeats image id {image_id!r} (images[{first}])")
        extra = {key: value for key, value in entry.items() if key not in ("id", "file_name")}
        extra["annotations"] = []
        images[image_id] = _Image(images_dir / file_name, image_id, split, extra=extra)

    for index, annotation in enumerate(data["annotations"]):
        where = f"{name}: annotations[{index}]"
        _require_keys(annotation, ("image_id", "caption"), where)
        if not isinstance(annotation["caption"], str):
            raise DatasetFormatError(f"{where} 'caption' must be a string")
        image_id = annotation["image_id"]
        image = images.get(image_id) if _is_id(image_id) else None
        if image is None:
            raise DatasetFormatError(f"{where} refers to image_id {image_id!r}, not in 'images'")
        image.captions.append(annotation["caption"].strip())
        image.extra["annotations"].append(annotation)
    return list(images.values())


def _read_karpathy(path: Path, data: Any, images_dir: Path, restval_as_train: bool) -> list[_Image]:
    name = path.name
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DatasetFormatError(f"{name}: no 'images' list")

    # Keys that become Sample fields; the rest of each entry goes to Sample.extra. sentids is
    # dropped because every sentence dict already carries its sentid.
    consumed = ("filepath", "filename", "split", "sentences", "cocoid", "sentids")
    images = []
    first_index_of: dict[int | str, int] = {}
    for index, entry in enumerate(data["images"]):
        where = f"{name}: images[{index}]"
        _require_keys(entry, ("filename", "split", "sentences"), where)
        if not isinstance(entry["sentences"], list):
            raise DatasetFormatError(f"{where} 'sentences' must be a list")
        captions = []
        for number, sentence in enumerate(entry["sentences"]):
            if not isinstance(sentence, dict) or not isinstance(sentence.get("raw"), str):
                raise DatasetFormatError(f"{where}.sentences[{number}] has no 'raw' text")
            captions.append(sentence["raw"].strip())
        file_name, folder = entry["filename"], entry.get("filepath", "")
        if not isinstance(file_name, str) or not file_name.strip():
            raise DatasetFormatError(f"{where} 'filename' must be a non-empty string")
        if not isinstance(folder, str):
            raise DatasetFormatError(f"{where} 'filepath' must be a string")
        image_path = images_dir / folder / file_name
        # Ids key the validation references: a repeated id would merge two images into one
        if "cocoid" in entry:
            image_id = entry["cocoid"]
            _check_id(image_id, "cocoid", where)
        else:
            image_id = file_name
        if image_id in first_index_of:
            hint = "" if "cocoid" in entry else "; give each image a unique 'cocoid'"
            raise DatasetFormatError(
                f"{where} repeats image id {image_id!r} (images[{first_index_of[image_id]}]){hint}"
            )
        first_index_of[image_id] = index
        extra = {key: value for key, value in entry.items() if key not in consumed}
        extra["sentences"] = entry["sentences"]
        images.append(
            _Image(
                path=image_path,
                image_id=image_id,
                split=_normalise_split(entry["split"], restval_as_train, where),
                captions=captions,
                extra=extra,
            )
        )
    return images


def _read_flickr(path: Path, images_dir: Path, splits_dir: Path | None) -> tuple[list[_Image], int]:
    """Read a Flickr token file; also return how many images no split list names.

    A token file holds the whole dataset, so without split lists everything is "train" (never
    the split asked for: that would silently evaluate on training images)."""
    split_of = _read_flickr_split_lists(splits_dir or path.parent, required=splits_dir is not None)
    images: dict[str, _Image] = {}
    unlisted: set[str] = set()
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        match = _FLICKR_LINE.fullmatch(line)
        if match is None:
            raise DatasetFormatError(
                f"{path.name} line {number}: expected 'name.jpg#N<TAB>caption'"
            )
        file_name, _, caption = match.groups()
        if split_of is None:
            split = "train"
        elif file_name in split_of:
            split = split_of[file_name]
        else:
            unlisted.add(file_name)
            continue
        if file_name not in images:
            images[file_name] = _Image(images_dir / file_name, file_name, split)
        images[file_name].captions.append(caption.strip())
    return list(images.values()), len(unlisted)


def _read_flickr_split_lists(folder: Path, required: bool) -> dict[str, str] | None:
    """Map image file name -> split from the Flickr split lists in `folder`; None if it has none."""
    if not folder.is_dir():
        raise FileNotFoundError(f"splits directory not found: {folder}")
    split_of: dict[str, str] = {}
    list_found = False
    for split, pattern in _FLICKR_SPLIT_LISTS:
        matches = sorted(folder.glob(pattern))
        if len(matches) > 1:
            names = ", ".join(match.name for match in matches)
            raise DatasetFormatError(
                f"several {pattern} split lists in {folder} ({names}); keep one set per folder"
            )
        for list_path in matches:
            list_found = True
            for number, line in enumerate(_read_lines(list_path), start=1):
                file_name = line.strip()
                if not file_name:
                    continue
                if split_of.get(file_name, split) != split:
                    raise DatasetFormatError(
                        f"{list_path.name} line {number}: {file_name} is already in the "
                        f"{split_of[file_name]} list"
                    )
                split_of[file_name] = split
    if not list_found and required:
        raise DatasetFormatError(
            f"no Flickr split lists (*trainImages.txt, *devImages.txt, *testImages.txt) in {folder}"
        )
    return split_of if list_found else None


def _read_csv(
    path: Path, images_dir: Path, default_split: str, restval_as_train: bool
) -> list[_Image]:
    name = path.name
    grouper = _ImageGrouper(name, images_dir, default_split, restval_as_train)
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            header = next(reader, None)
            if header is None:
                raise DatasetFormatError(f"{name}: empty file, expected a header 'image,caption'")
            columns = [column.strip() for column in header]
            for required in ("image", "caption"):
                if required not in columns:
                    raise DatasetFormatError(
                        f"{name}: header has no '{required}' column (found: {', '.join(columns)})"
                    )
            for row in reader:
                line = reader.line_num
                if not row:
                    continue
                if len(row) > len(columns):
                    raise DatasetFormatError(
                        f"{name} line {line}: {len(row)} fields but the header has "
                        f"{len(columns)} (quote captions that contain commas)"
                    )
                record = dict(zip(columns, row, strict=False))  # short rows lack trailing columns
                for required in ("image", "caption"):
                    if record.get(required) is None or (
                        required == "image" and not record["image"].strip()
                    ):
                        raise DatasetFormatError(
                            f"{name} line {line}: missing '{required}' column value"
                        )
                extra = {
                    key: value
                    for key, value in record.items()
                    if key not in ("image", "caption", "split")
                }
                grouper.add(
                    line,
                    record["image"].strip(),
                    [record["caption"]],
                    record.get("split") or None,
                    extra,
                )
    except UnicodeDecodeError as error:
        raise DatasetFormatError(f"{name}: not UTF-8 text (byte {error.start})") from error
    except csv.Error as error:
        raise DatasetFormatError(f"{name} line {reader.line_num}: {error}") from error
    return list(grouper.images.values())


def _read_jsonl(
    path: Path, images_dir: Path, default_split: str, restval_as_train: bool
) -> list[_Image]:
    name = path.name
    grouper = _ImageGrouper(name, images_dir, default_split, restval_as_train)
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        where = f"{name} line {number}"
        record = _parse_json(line, where, whole_file=False)
        if not isinstance(record, dict):
            raise DatasetFormatError(f"{where}: expected a JSON object")
        image = record.get("image")
        if not isinstance(image, str) or not image.strip():
            raise DatasetFormatError(f"{where}: missing 'image' (a non-empty string)")
        if "caption" in record and "captions" in record:
            raise DatasetFormatError(f"{where}: give either 'caption' or 'captions', not both")
        if "caption" in record:
            captions = [record["caption"]]
        elif "captions" in record:
            captions = record["captions"]
        else:
            raise DatasetFormatError(f"{where}: missing 'caption' or 'captions'")
        if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
            raise DatasetFormatError(f"{where}: captions must be strings")
        split = record.get("split")
        if split is not None and not isinstance(split, str):
            raise DatasetFormatError(f"{where}: 'split' must be a string")
        extra = {
            key: value
            for key, value in record.items()
            if key not in ("image", "caption", "captions", "split")
        }
        grouper.add(number, image.strip(), captions, split or None, extra)
    return list(grouper.images.values())


class _ImageGrouper:
    """Collects CSV rows / JSONL lines into images. Records of one image must agree on the split
    and on the extra keys: those describe the image, not the caption."""

    def __init__(
        self, file_name: str, images_dir: Path, default_split: str, restval_as_train: bool
    ):
        self.file_name = file_name
        self.images_dir = images_dir
        self.default_split = default_split
        self.restval_as_train = restval_as_train
        self.images: dict[str, _Image] = {}
        self.first_line_of: dict[str, int] = {}

    def add(
        self,
        line: int,
        image: str,
        captions: list[str],
        split: str | None,
        extra: dict[str, Any],
    ) -> None:
        where = f"{self.file_name} line {line}"
        if split is None:
            split = self.default_split
        else:
            split = _normalise_split(split, self.restval_as_train, where)
        if image not in self.images:
            self.images[image] = _Image(self.images_dir / image, image, split, extra=dict(extra))
            self.first_line_of[image] = line
        entry = self.images[image]
        earlier = f"line {self.first_line_of[image]}"
        if entry.split != split:
            raise DatasetFormatError(
                f"{where}: split {split!r} for {image} conflicts with {entry.split!r} at {earlier}"
            )
        for key, value in extra.items():
            if entry.extra.setdefault(key, value) != value:
                raise DatasetFormatError(
                    f"{where}: {key!r} for {image} differs from {earlier} "
                    "(extra columns describe the image and must repeat its value)"
                )
        entry.captions.extend(caption.strip() for caption in captions)


def _select_split(images: list[_Image], split: str | None, source: Path) -> list[_Image]:
    if split is None:
        return images
    selected = [image for image in images if image.split == split]
    if images and not selected:
        present = ", ".join(sorted({image.split for image in images}))
        raise DatasetFormatError(
            f"{source.name}: no images in split {split!r} (splits present: {present})"
        )
    return selected


def _drop_empty_captions(
    images: list[_Image], aligned_key: str | None
) -> tuple[list[Sample], int, int]:
    """Drop empty captions (and their per-caption dicts), then images left without a caption."""
    samples = []
    empty_captions = images_without_captions = 0
    for image in images:
        kept = [index for index, caption in enumerate(image.captions) if caption]
        empty_captions += len(image.captions) - len(kept)
        if not kept:
            images_without_captions += 1
            continue
        extra = dict(image.extra)
        if aligned_key is not None:
            extra[aligned_key] = [extra[aligned_key][index] for index in kept]
        captions = tuple(image.captions[index] for index in kept)
        samples.append(Sample(image.path, captions, image.split, image.image_id, extra))
    return samples, empty_captions, images_without_captions


def _check_images(
    samples: list[Sample], source: Path, images_dir: Path, skip_missing: bool
) -> tuple[list[Sample], list[Path]]:
    """Return the samples whose image file exists, and the missing paths."""
    missing = [sample.image_path for sample in samples if not _is_file(sample.image_path)]
    if missing and not skip_missing:
        shown = ", ".join(_display_name(path, images_dir) for path in missing[:_MISSING_SHOWN])
        more = len(missing) - _MISSING_SHOWN
        raise MissingImagesError(
            f"{len(missing)} of {len(samples)} images listed in {source.name} are missing from "
            f"{images_dir}: {shown}{f' and {more} more' if more > 0 else ''} "
            f"({_SKIP_MISSING_HINT})",
            missing,
        )
    missing_set = set(missing)
    return [sample for sample in samples if sample.image_path not in missing_set], missing


def _normalise_split(value: Any, restval_as_train: bool, where: str) -> str:
    split = _SPLIT_NAMES.get(value.strip().lower()) if isinstance(value, str) else None
    if split is None:
        raise DatasetFormatError(
            f"{where} has unknown split {value!r} (expected train, val, test or restval)"
        )
    return "train" if split == "restval" and restval_as_train else split


def _split_from_file_name(path: Path) -> str | None:
    match = _SPLIT_IN_FILE_NAME.search(path.stem.lower())
    return _SPLIT_NAMES[match.group(1)] if match else None


def _require_keys(entry: Any, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(entry, dict):
        raise DatasetFormatError(f"{where} is not an object")
    for key in keys:
        if key not in entry:
            raise DatasetFormatError(f"{where} has no '{key}'")


def _check_id(value: Any, key: str, where: str) -> None:
    if not _is_id(value):
        raise DatasetFormatError(f"{where} '{key}' must be an integer or a string")


def _is_id(value: Any) -> bool:
    # bool is an int, and True would silently match image id 1
    return isinstance(value, int | str) and not isinstance(value, bool)


def _load_json(path: Path) -> Any:
    return _parse_json(_read_text(path), path.name, whole_file=True)


def _parse_json(text: str, where: str, *, whole_file: bool) -> Any:
    """json.loads, with every way it can fail turned into a DatasetFormatError naming `where`."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        at = f"line {error.lineno} column {error.colno}" if whole_file else f"column {error.colno}"
        raise DatasetFormatError(f"{where}: invalid JSON at {at}: {error.msg}") from error
    except ValueError as error:  # int() refuses numbers longer than this
        limit = sys.get_int_max_str_digits()
        raise DatasetFormatError(
            f"{where}: invalid JSON: a number with more than {limit} digits"
        ) from error
    except RecursionError:
        # a RuntimeError otherwise, which callers would blame on the device; no 1000-frame chain
        raise DatasetFormatError(f"{where}: JSON nested too deeply") from None


def _read_lines(path: Path) -> list[str]:
    # split("\n") rather than splitlines(): JSON strings may hold U+2028, which is no line break
    return _read_text(path).split("\n")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise DatasetFormatError(f"{path.name}: not UTF-8 text (byte {error.start})") from error


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name longer than the file system allows, a folder we may not search
        return False


def _display_name(path: Path, images_dir: Path) -> str:
    name = str(path.relative_to(images_dir)) if path.is_relative_to(images_dir) else str(path)
    if len(name) > _NAME_SHOWN:
        half = _NAME_SHOWN // 2
        name = f"{name[:half]}…{name[-half:]}"
    return name
