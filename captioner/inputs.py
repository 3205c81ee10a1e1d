"""Which photos files, folders and patterns name, expanded as a stream.

The batch command and the app list a folder with the same walker, so a folder lists the same
photos in the same order in both. A run over 50,000 photos should start captioning at once and
never hold a second copy of the list, so everything here is a generator. Folders are listed one
at a time, in name order, so every process that expands the same arguments sees the same
sequence (sharding relies on it). No torch here: the app imports this at start-up.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator
from typing import NamedTuple

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif"}
)


class Photo(NamedTuple):
    """One input. `path` may hold surrogate escapes (non-UTF-8 names); it still opens the file."""

    path: str
    problem: str | None = None  # why it cannot be captioned, known before opening it


def expand(arguments: Iterable[str], *, recursive: bool) -> Iterator[Photo]:
    """Photos named by command-line arguments, in order.

    An existing file is taken as is, whatever its extension (the user asked for it). A folder
    gives the photos directly inside it, or with `recursive` every photo below it. An argument
    that does not exist but holds * ? or [ is a pattern (`**` spans folders), expanded here so a
    quoted pattern works as in the shell and cannot overflow the command line; its matches are
    treated like arguments. Anything else is passed on, so opening it reports why it failed.
    """
    for argument in arguments:
        if os.path.isdir(argument):
            yield from walk(argument, recursive=recursive)
        elif os.path.lexists(argument) or not glob.has_magic(argument):
            yield Photo(argument)
        else:
            yield from _expand_pattern(argument, recursive)


def _expand_pattern(pattern: str, recursive: bool) -> Iterator[Photo]:
    matches = sorted(glob.iglob(pattern, recursive=True), key=_path_order)
    if not matches:
        yield Photo(pattern, "no such file, and no file matches it as a pattern")
    for match in matches:
        if os.path.isdir(match):
            yield from walk(match, recursive=recursive)
        else:
            yield Photo(match)


def walk(folder: str, *, recursive: bool) -> Iterator[Photo]:
    """Photos in `folder` by file extension, skipping hidden files (e.g. macOS `._x.jpg`).

    Entries come in name order, case-insensitively as file managers list them (IMG_2.JPG
    between img_1.jpg and img_3.jpg, not before every lower-case name), the exact name breaking
    ties so the order never depends on the file system. A subfolder's photos come in its place
    in that order. Symbolic links to files are followed; links to folders are not descended
    into, so a link loop cannot make the walk endless. A broken link with a photo's extension is
    still given, so it is reported instead of silently missing.
    """
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda entry: _name_order(entry.name))
    except OSError as error:
        yield Photo(folder, f"cannot list the folder ({error.strerror or error})")
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if recursive and not entry.is_symlink():
                yield from walk(entry.path, recursive=recursive)
        elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
            yield Photo(entry.path)


def _name_order(name: str) -> tuple[str, str]:
    return name.casefold(), name


def _path_order(path: str) -> list[tuple[str, str]]:
    """A pattern's matches in the order a walk of their folders gives them."""
    return [_name_order(part) for part in path.split(os.sep)]


def unique(photos: Iterable[Photo]) -> Iterator[Photo]:
    """Drop a photo seen before under any spelling of its path (`a.jpg`, `./a.jpg`, via its folder).

    Paths are compared made absolute, not with symbolic links resolved: a link is a photo of
    its own for sidecars and metadata.
    """
    seen: set[str] = set()
    for photo in photos:
        key = os.path.abspath(photo.path)
        if key not in seen:
            seen.add(key)
            yield photo
