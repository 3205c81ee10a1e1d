"""Captions out of the library (sidecars, photo metadata, CSV, JSONL, COCO) and the batch
command's JSONL outputs into it.

Every file written here is written whole or not at all (captioner.photos.atomic), and a
sidecar or description a person already has is kept unless the caller asks to overwrite it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from captioner.library.records import Entry, ModelKey, ModelResult, nouns_in
from captioner.library.store import Library
from captioner.photos.atomic import write_atomically
from captioner.photos.images import source_name
from captioner.photos.metadata import (
    existing_description,
    sidecar_path,
    write_caption_metadata,
    write_sidecar,
)

EXPORT_FORMATS = ("txt", "metadata", "csv", "jsonl", "coco")
IMPORT_BATCH = 1000  # rows per transaction when importing
# The batch command's file for shard K of N under torchrun: out.3-of-8.jsonl.
_SHARD_NAME = re.compile(r"(?P<stem>.*)\.(?P<index>\d+)-of-(?P<count>\d+)(?P<suffix>\.[^.]*)$")


@dataclass
class ExportReport:
    written: int = 0
    kept: list[str] = field(default_factory=list)  # one line per photo not written, and why
    images_root: str | None = None  # coco: the folder the file names are relative to


def export_captions(
    library: Library,
    format: str,
    destination: str | os.PathLike | None = None,
    *,
    include_model: bool = False,
    overwrite: bool = False,
    query: str = "",
    filter: str = "all",
) -> ExportReport:
    """Write the captions of the photos `query` and `filter` select (`Library.search`).

    Each photo's caption is the person's; with include_model, the model's where the person
    has none (photos with neither are left out). format: "txt" (photo.txt beside each photo,
    the taggui and kohya convention), "metadata" (XMP and EXIF description in the photo), or
    a file at `destination`: "csv", "jsonl", or "coco" (a COCO captions file, which
    `captioner-train --data FILE --images ROOT` reads, ROOT being `images_root`).
    overwrite: replace sidecars and descriptions already there (else they are kept, and
    listed in `kept`).
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}, not {format!r}")
    if format in ("csv", "jsonl", "coco") and destination is None:
        raise ValueError(f"the {format} format needs a file to write")
    entries = [
        entry
        for entry in library.search(query, filter=filter)
        if entry.state in ("mine", "accepted") or (include_model and entry.state == "model")
    ]
    report = ExportReport()
    if format in ("txt", "metadata"):
        for entry in entries:
            _export_beside(entry, format, overwrite, report)
        return report
    if format == "coco":
        data, report.images_root = _coco(entries)
    else:
        data = (_csv if format == "csv" else _jsonl)(entries)
    write_atomically(destination, data)
    report.written = len(entries)
    return report


def _export_beside(entry: Entry, format: str, overwrite: bool, report: ExportReport) -> None:
    name = source_name(entry.path)
    if not os.path.isfile(entry.path):
        report.kept.append(f"{name}: the photo is not there any more; nothing written")
        return
    try:
        if format == "txt":
            if _read_text(sidecar_path(entry.path)) != entry.caption:
                write_sidecar(entry.path, entry.caption, overwrite=overwrite)
        elif _same_description(entry) is not True:
            write_caption_metadata(entry.path, entry.caption, overwrite=overwrite)
    except FileExistsError:
        where = "its caption file" if format == "txt" else "its description"
        report.kept.append(f"{name}: kept {where}, which says otherwise (--overwrite replaces)")
        return
    except (OSError, ValueError) as error:
        report.kept.append(f"{name}: not written ({getattr(error, 'strerror', None) or error})")
        return
    report.written += 1


def _same_description(entry: Entry) -> bool | None:
    try:
        return existing_description(entry.path) == entry.caption
    except ValueError:
        return None  # unreadable metadata: the writer says why


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _row(entry: Entry) -> dict:
    return {
        "path": source_name(entry.path),
        "caption": entry.caption,
        "by": entry.state,  # mine, accepted or model
        "model_caption": entry.model.text if entry.model is not None else None,
    }


def _csv(entries: list[Entry]) -> bytes:
    text = io.StringIO()
    writer = csv.DictWriter(text, ["path", "caption", "by", "model_caption"])
    writer.writeheader()
    writer.writerows(_row(entry) for entry in entries)
    return text.getvalue().encode()


def _jsonl(entries: list[Entry]) -> bytes:
    lines = (json.dumps(_row(entry), ensure_ascii=False) + "\n" for entry in entries)
    return "".join(lines).encode()


def _coco(entries: list[Entry]) -> tuple[bytes, str]:
    """A COCO captions file, file names relative to the photos' deepest common folder."""
    root = os.path.commonpath([os.path.dirname(entry.path) for entry in entries] or ["."])
    images, annotations = [], []
    for number, entry in enumerate(entries, start=1):
        images.append({"id": number, "file_name": os.path.relpath(entry.path, root)})
        annotations.append({"id": number, "image_id": number, "caption": entry.caption})
    data = {
        "info": {"description": "captions exported by captioner-library", "images_root": root},
        "images": images,
        "annotations": annotations,
    }
    # ensure_ascii: a file name that is not UTF-8 keeps its bytes as \udcXX escapes.
    return json.dumps(data, indent=1).encode(), root


@dataclass
class ImportReport:
    added: int = 0
    failed_photos: int = 0  # rows of photos the batch run could not caption
    problems: list[str] = field(default_factory=list)  # damaged rows, missing shards


def import_batch_outputs(
    library: Library,
    files: Iterable[str | os.PathLike],
    model: ModelKey,
    *,
    base: str | os.PathLike | None = None,
) -> ImportReport:
    """Add the captions of the batch command's JSONL outputs (`captioner PATH... -o
    out.jsonl`, or its torchrun shards out.K-of-N.jsonl) to the library as `model`'s.

    Relative paths in the rows are taken from `base` (default: the current folder), where
    the run was started. A photo that is at hand is hashed, so it is recognised when moved.
    Rows of photos that failed are counted; a damaged row is listed in `problems`, as is a
    shard missing from `files`. Raises OSError for a file that cannot be read, CaptionRefused
    for a caption that cannot be stored.
    """
    files = [Path(file) for file in files]
    report = ImportReport(problems=_missing_shards(files))
    base = Path(base if base is not None else os.getcwd())
    for file in files:
        batch: list[ModelResult] = []
        with open(file, "rb") as stream:
            for number, line in enumerate(stream, start=1):
                if not line.endswith(b"\n"):
                    break  # the row being written when the run was stopped
                result = _imported_row(line, base)
                if isinstance(result, str):
                    report.problems.append(f"{file}:{number}: {result}")
                elif result is None:
                    report.failed_photos += 1
                else:
                    batch.append(result)
                if len(batch) >= IMPORT_BATCH:
                    report.added += library.add_model_results(batch, model)
                    batch = []
        report.added += library.add_model_results(batch, model)
    return report


def _imported_row(line: bytes, base: Path) -> ModelResult | str | None:
    """A row as a ModelResult; None for a photo that failed; a string saying what is wrong."""
    try:
        row = json.loads(line)
        path, caption = row["path"], row.get("caption")
        if "error" in row:
            return None
        beams = [(beam["caption"], float(beam["score"])) for beam in row.get("beams", [])[1:]]
        score = float(row.get("score", "nan"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return "not a caption row of the batch command's JSONL"
    if not isinstance(path, str) or not isinstance(caption, str):
        return "not a caption row of the batch command's JSONL"
    path = _photo_path(base / path)
    texts = [caption, *(text for text, _ in beams)]
    return ModelResult(
        path=path,
        text=caption,
        score=score,
        nouns=nouns_in([text.split() for text in texts]),
        alternatives=tuple(beams),
    )


def _photo_path(path: Path) -> str:
    """The photo's path; a row shows bytes that are not UTF-8 as \\xNN, turned back here."""
    name = str(path)
    if os.path.exists(name) or "\\x" not in name:
        return name
    escaped = re.sub(
        r"\\x([89a-f][0-9a-f])", lambda match: chr(0xDC00 + int(match.group(1), 16)), name
    )
    return escaped if os.path.exists(escaped) else name


def _missing_shards(files: list[Path]) -> list[str]:
    """'out.2-of-4.jsonl is not among the files' for each shard of a run that was left out."""
    given: dict[tuple, set[int]] = {}
    for file in files:
        match = _SHARD_NAME.match(file.name)
        if match:
            key = (file.parent, match["stem"], int(match["count"]), match["suffix"])
            given.setdefault(key, set()).add(int(match["index"]))
    return [
        f"{folder / f'{stem}.{index}-of-{count}{suffix}'}: a shard of the run not imported"
        for (folder, stem, count, suffix), indices in given.items()
        for index in range(count)
        if index not in indices
    ]
