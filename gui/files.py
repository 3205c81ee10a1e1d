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
    """The path with every symbolic link resolved: the same for every way to reach a file."""
    return os.path.realpath(path)


def sample_images_dir() -> Path:
    """The sample photos shipped in captioner/samples."""
    return Path(captioner.__file__).parent / "samples"
