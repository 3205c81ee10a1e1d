"""Turning what the user opened or dropped (files and folders) into a list of photo paths."""

from __future__ import annotations

import os
from pathlib import Path

import captioner
from captioner.photos.inputs import IMAGE_EXTENSIONS, walk

OPEN_FILTER = (
    "Images (" + " ".join(f"*{ext}" for ext in sorted(IMAGE_EXTENSIONS)) + ");;All files (*)"
)


def collect_images(paths: list[str], *, recursive: bool) -> list[str]:
    """Files as given (a bad one gets its error in the list); folders expanded to their photos.

    Folders are listed by captioner's walker, so in the order the batch command captions them
    (by name, case-insensitively; hidden files and folders skipped, as file managers do). A
    photo reached twice (by a symbolic link, a linked folder or another spelling of its path) is
    listed once, under the first path it was reached by.
    """
    _real_folders.clear()
    found: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            # A folder that cannot be listed adds no row: the list holds photos, and it is none.
            photos = walk(os.path.abspath(path), recursive=recursive)
            found += [photo.path for photo in photos if photo.problem is None]
        else:
            found.append(os.path.abspath(path))
    first_path: dict[str, str] = {}
    for path in found:
        first_path.setdefault(real_path(path), path)
    return list(first_path.values())


def real_path(path: str) -> str:
    """The path with every symbolic link resolved: the same for every way to reach a file.

    The folder is resolved once for all its files (a folder of 10,000 photos would otherwise
    walk every component of every path: most of the time opening it took); the file itself
    is looked at (one lstat) in case it is a link."""
    path = os.path.abspath(path)
    folder, name = os.path.split(path)
    if not name or os.path.islink(path):
        return os.path.realpath(path)
    return os.path.join(_real_folder(folder), name)


_real_folders: dict[str, str] = {}


def _real_folder(folder: str) -> str:
    """os.path.realpath of a folder, remembered while one list is being built (cleared by
    collect_images, so a link changed between two openings is seen)."""
    real = _real_folders.get(folder)
    if real is None:
        real = _real_folders[folder] = os.path.realpath(folder)
    return real


def sample_images_dir() -> Path:
    """The sample photos shipped in captioner/samples."""
    return Path(captioner.__file__).parent / "samples"


def opened_message(added: int, already: int) -> str:
    """What opening photos did: how many were added, and how many were listed already."""

    def photos(count: int) -> str:
        return f"{count} photo{'s' * (count != 1)}"

    if not already:
        return f"Opened {photos(added)}"
    were = "was" if already == 1 else "were"
    if not added:
        return f"{'All ' * (already > 1)}{photos(already)} {were} already open"
    return f"Added {photos(added)}; {already} {were} already open"
