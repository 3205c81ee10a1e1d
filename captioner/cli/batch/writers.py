"""Caption output formats for batch runs: jsonl, csv, coco and txt, streamed row by row.

Each row is written as one piece as soon as its photo is done, and the batch loop flushes after
every batch, so a run that is killed keeps every finished row. The file is written in place
(not to a temporary file and renamed): a half-written output is the point, because `scan`
reads it back to resume. Only the last row can be cut short, and `scan` drops it.

Paths are written in printable form (`captioner.photos.images.source_name`): a file name that is not
valid UTF-8 appears with backslash escapes, so every output file is valid UTF-8.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Hashable
from pathlib import Path
from typing import BinaryIO, NamedTuple

from captioner.photos.images import source_name
from captioner.results import CaptionResult


class Scan(NamedTuple):
    """What an existing output file already holds."""

    keys: set  # photo_key of every photo with a row
    rows: int
    end: int  # byte offset just after the last complete row; the rest is cut before appending


class CaptionWriter:
    """Rows to a binary stream. Subclasses say how a row, the header and the footer look."""

    def __init__(self, stream: BinaryIO, *, beams: int = 1, existing_rows: int | None = None):
        """existing_rows: None starts a new file; a number continues a file `scan` has read."""
        self.stream = stream
        self.beams = beams
        self.rows = existing_rows or 0
        if existing_rows is None:
            stream.write(self.header())

    def write(self, result: CaptionResult) -> None:
        row = self.encode(result)
        if row:
            self.stream.write(row)
            self.rows += 1

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        self.stream.write(self.footer())
        self.stream.flush()

    def header(self) -> bytes:
        return b""

    def footer(self) -> bytes:
        return b""

    def encode(self, result: CaptionResult) -> bytes | None:
        raise NotImplementedError

    @staticmethod
    def photo_key(path: str) -> Hashable:
        """How rows and inputs are matched on resume: the path, made absolute.

        Two photos with the same key cannot both have a row: the reader could not tell them apart.
        """
        return os.path.abspath(source_name(path))

    @classmethod
    def repeated_key(cls, path: str, first: str) -> str:
        """Why the photo at `path` gets no row when `first` has its photo_key."""
        return (
            f"its row would show the same path as {source_name(first)}'s, and so be mistaken for it"
        )

    @classmethod
    def scan(cls, data: bytes, *, beams: int = 1) -> Scan:
        raise NotImplementedError


class JsonlWriter(CaptionWriter):
    """A JSON object per line: {"path", "caption", "score"}, "beams" too with --beams N.

    A photo that failed: {"path", "error"}.
    """

    def encode(self, result: CaptionResult) -> bytes:
        row: dict = {"path": source_name(result.source)}
        if result.error is not None:
            row["error"] = result.error
        else:
            row.update(caption=result.text, score=round(result.score, 4))
            if self.beams > 1:
                row["beams"] = [
                    {"caption": beam.text, "score": round(beam.score, 4)}
                    for beam in result.beams[: self.beams]
                ]
        # allow_nan=False: NaN is not JSON; the caller turns such scores into errors first.
        return (json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n").encode()

    @classmethod
    def scan(cls, data: bytes, *, beams: int = 1) -> Scan:
        keys, rows, end = set(), 0, 0
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break  # the row being written when the run was stopped
            try:
                path = json.loads(line)["path"]
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"line {rows + 1} is not a caption row: {line[:80]!r}") from None
            keys.add(cls.photo_key(path))
            rows += 1
            end += len(line)
        return Scan(keys, rows, end)


class CsvWriter(CaptionWriter):
    """Columns path, caption, score, error; with --beams N also caption_2, score_2 ... _N."""

    def header(self) -> bytes:
        return self._line(self.columns(self.beams))

    @staticmethod
    def columns(beams: int) -> list[str]:
        extra = [f"{name}_{rank}" for rank in range(2, beams + 1) for name in ("caption", "score")]
        return ["path", "caption", "score", "error", *extra]

    def encode(self, result: CaptionResult) -> bytes:
        path = source_name(result.source)
        if result.error is not None:
            return self._line([path, "", "", result.error] + [""] * (2 * (self.beams - 1)))
        fields = [path, result.text, f"{result.score:.4f}", ""]
        for beam in result.beams[1 : self.beams]:
            fields += [beam.text, f"{beam.score:.4f}"]
        fields += [""] * (len(self.columns(self.beams)) - len(fields))
        return self._line(fields)

    @staticmethod
    def _line(fields: list[str]) -> bytes:
        text = io.StringIO()
        csv.writer(text).writerow(fields)
        return text.getvalue().encode()

    @classmethod
    def scan(cls, data: bytes, *, beams: int = 1) -> Scan:
        end = data.rfind(b"\n") + 1  # rows end with \r\n; anything after the last is a cut row
        reader = csv.reader(io.StringIO(data[:end].decode(), newline=""))
        header = next(reader, None)
        if header is None:
            return Scan(set(), 0, 0)
        if header != cls.columns(beams):
            raise ValueError(
                f"its columns are {','.join(header)}, but this run writes "
                f"{','.join(cls.columns(beams))} (use the same --beams as the first run)"
            )
        paths = [row[0] for row in reader if row]
        return Scan({cls.photo_key(path) for path in paths}, len(paths), end)


class TxtWriter(CaptionWriter):
    """`path<TAB>caption` per line, for reading; failed photos are only reported on stderr."""

    def encode(self, result: CaptionResult) -> bytes | None:
        if result.error is not None:
            return None
        return f"{source_name(result.source)}\t{result.text}\n".encode()

    @classmethod
    def scan(cls, data: bytes, *, beams: int = 1) -> Scan:
        end = data.rfind(b"\n") + 1
        paths = [line.rsplit("\t", 1)[0] for line in data[:end].decode().splitlines() if line]
        return Scan({cls.photo_key(path) for path in paths}, len(paths), end)


class CocoWriter(CaptionWriter):
    """The COCO results file, [{"image_id", "caption"}, ...], written as a stream.

    image_id is the number a file name ends with (COCO_val2014_000000391895.jpg -> 391895),
    else the path: one rule for every file, which training.scenes follows when it numbers its
    images (000007.png is image 7), so results for COCO and for generated scenes score against
    their annotations as they are. Two photos whose names end in the same number share an
    image_id; the caller writes only the first (see `repeated_key`). A killed run leaves the
    array without its closing bracket; `scan` accepts that. Failed photos are only reported on
    stderr; the format has no place for them.
    """

    def header(self) -> bytes:
        return b"["

    def footer(self) -> bytes:
        return b"\n]\n"

    def encode(self, result: CaptionResult) -> bytes | None:
        if result.error is not None:
            return None
        row = {"image_id": coco_image_id(result.source), "caption": result.text}
        separator = ",\n" if self.rows else "\n"
        return (separator + json.dumps(row)).encode()

    @staticmethod
    def photo_key(path: str) -> Hashable:
        return _coco_key(coco_image_id(path))

    @classmethod
    def repeated_key(cls, path: str, first: str) -> str:
        return (
            f"its image_id {coco_image_id(path)} is also {source_name(first)}'s, and COCO "
            "results hold one caption per image_id; rename one of them to caption both"
        )

    @classmethod
    def scan(cls, data: bytes, *, beams: int = 1) -> Scan:
        text = data.decode("ascii")  # rows are written with json's default ASCII escaping
        decoder = json.JSONDecoder()
        position = _skip_space(text, 0)
        if position == len(text):
            return Scan(set(), 0, 0)
        if text[position] != "[":
            raise ValueError("it does not start with [ as a COCO results file does")
        keys, rows, end = set(), 0, position + 1
        position = _skip_space(text, end)
        while position < len(text) and text[position] != "]":
            if rows:
                if text[position] != ",":
                    raise ValueError(f"expected , between rows at byte {position}")
                position = _skip_space(text, position + 1)
            try:
                row, position = decoder.raw_decode(text, position)
            except json.JSONDecodeError:
                if ",\n{" in text[position:]:
                    raise ValueError(f"damaged row at byte {position}") from None
                break  # the row being written when the run was stopped
            keys.add(_coco_key(row["image_id"]))
            rows += 1
            end = position
            position = _skip_space(text, position)
        return Scan(keys, rows, end)


def coco_image_id(path: str) -> int | str:
    match = re.search(r"(\d+)$", Path(source_name(path)).stem)
    return int(match.group(1)) if match else source_name(path)


def _coco_key(image_id: int | str) -> Hashable:
    return image_id if isinstance(image_id, int) else os.path.abspath(image_id)


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position


WRITERS: dict[str, type[CaptionWriter]] = {
    "jsonl": JsonlWriter,
    "csv": CsvWriter,
    "coco": CocoWriter,
    "txt": TxtWriter,
}
