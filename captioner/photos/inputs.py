"""Which photos files, folders and patterns name, expanded as a stream.

The batch command and the app list a folder with the same walker, so a folder lists the same
photos in the same order in both. A run over 50,000 photos should start captioning at once and
never hold a second copy of the list, so everything here is a generator. Folders are listed one
at a time, in name order, so every process that expands the same arguments sees the same
sequence (sharding relies on it). No torch here: the app imports this at start-up.
"""

from __future__ import annotations

import fnmatch
import glob
import itertools
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
    that does not exist but holds * ? or [ is a pattern, expanded here so a quoted pattern works
    as in the shell and cannot overflow the command line; `**` spans the folders a recursive
    walk enters (not links to folders). Its matches are treated like arguments. Anything else
    is passed on, so opening it reports why it failed.
    """
    for argument in arguments:
        if os.path.isdir(argument):
            yield from walk(argument, recursive=recursive)
        elif os.path.lexists(argument) or not glob.has_magic(argument):
            yield Photo(argument)
        else:
            yield from _expand_pattern(argument, recursive)


def _expand_pattern(pattern: str, recursive: bool) -> Iterator[Photo]:
    # A set: `a/**/**/x.jpg` reaches a photo once per way to split its folders between the two.
    matches = sorted(
        {match for match in _glob(pattern, folders_only=False) if match}, key=_path_order
    )
    if not matches:
        yield Photo(pattern, "no such file, and no file matches it as a pattern")
    for match in matches:
        if os.path.isdir(match):
            yield from walk(match, recursive=recursive)
        else:
            yield Photo(match)


def _glob(pattern: str, *, folders_only: bool) -> Iterator[str]:
    """Paths matching `pattern` as glob.glob(recursive=True) matches them, in no set order,
    except that `**` spans only the folders `walk` enters: glob's would follow links to folders,
    and two links to `.` make a tree it never finishes listing.

    Like glob, `*`, `?` and `[...]` do not match a hidden name unless the part of the pattern
    starts with a dot, a pattern ending in a slash matches folders only, and a folder that
    cannot be listed has no matches.
    """
    folder, name = os.path.split(pattern)
    if folder and folder != pattern and glob.has_magic(folder):
        folders: Iterable[str] = _glob(folder, folders_only=True)
    else:
        folders = [folder]
    for folder in folders:
        if name == "**":
            names = itertools.chain([""], _below(folder, folders_only))
        elif glob.has_magic(name):
            names = _names_in(folder, name, folders_only)
        elif os.path.lexists(os.path.join(folder, name)) if name else os.path.isdir(folder):
            names = [name]
        else:
            continue
        for found in names:
            yield os.path.join(folder, found)


def _names_in(folder: str, pattern: str, folders_only: bool) -> list[str]:
    """Names in `folder` matching one part of a pattern (not `**`)."""
    try:
        with os.scandir(folder or os.curdir) as listing:
            names = [entry.name for entry in listing if not folders_only or _is_dir(entry)]
    except OSError:
        return []
    if not pattern.startswith("."):
        names = [name for name in names if not name.startswith(".")]
    return fnmatch.filter(names, pattern)


def _below(folder: str, folders_only: bool) -> Iterator[str]:
    """The paths below `folder` that walk would go through, relative to it."""
    top = os.path.join(folder or os.curdir, "")  # what the paths of the entries start with
    for item in _tree(folder or os.curdir, recursive=True):
        # Like glob, a folder that cannot be listed has no matches rather than a problem.
        if isinstance(item, os.DirEntry) and (not folders_only or _is_dir(item)):
            yield item.path[len(top) :]


def walk(folder: str, *, recursive: bool) -> Iterator[Photo]:
    """Photos in `folder` by file extension, skipping hidden files (e.g. macOS `._x.jpg`).

    Entries come in name order, case-insensitively as file managers list them (IMG_2.JPG
    between img_1.jpg and img_3.jpg, not before every lower-case name), the exact name breaking
    ties so the order never depends on the file system. A subfolder's photos come in its place
    in that order. Symbolic links to files are followed; links to folders are not descended
    into, so a link loop cannot make the walk endless. A broken link with a photo's extension is
    still given, so it is reported instead of silently missing.
    """
    for item in _tree(folder, recursive=recursive):
        if isinstance(item, Photo):
            yield item
        elif not _is_dir(item) and os.path.splitext(item.name)[1].lower() in IMAGE_EXTENSIONS:
            yield Photo(item.path)


def _tree(folder: str, *, recursive: bool) -> Iterator[os.DirEntry | Photo]:
    """Every entry a walk of `folder` goes through, in walk order (a folder, then what is in
    it), and for a folder that cannot be listed, a Photo naming it with the problem.

    The one place the walker's rules are written: walk and the `**` of a pattern both go by
    them. A stack of listings rather than recursion, so a tree thousands of folders deep (a
    few KB of path) is walked instead of exceeding Python's recursion limit.
    """
    listings = [_listing(folder)]
    while listings:
        item = next(listings[-1], None)
        if item is None:
            listings.pop()
            continue
        yield item
        if recursive and isinstance(item, os.DirEntry) and _is_dir(item):
            listings.append(_listing(item.path))


def _listing(folder: str) -> Iterator[os.DirEntry | Photo]:
    """`folder`'s entries in name order, less hidden names and links to folders."""
    try:
        with os.scandir(folder) as listing:
            entries = [
                entry
                for entry in listing
                if not entry.name.startswith(".") and not (_is_dir(entry) and entry.is_symlink())
            ]
    except OSError as error:
        return iter([Photo(folder, f"cannot list the folder ({error.strerror or error})")])
    return iter(sorted(entries, key=lambda entry: _name_order(entry.name)))


def _is_dir(entry: os.DirEntry) -> bool:
    """Whether `entry` is a folder or a link to one; one that cannot be looked at is not."""
    try:
        return entry.is_dir()
    except OSError:
        return False


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
