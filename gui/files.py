"""Turning what the user opened or dropped (files and folders) into a list of photo paths."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".heic", ".heif"}
)
OPEN_FILTER = (
    "Images (" + " ".join(f"*{ext}" for ext in sorted(IMAGE_EXTENSIONS)) + ");;All files (*)"
)


def collect_images(paths: list[str], *, recursive: bool) -> list[str]:
    """Files as given (a bad one gets its error in the list); folders expanded to their photos.

    Folder contents are sorted by name, case-insensitively; hidden files and folders are
    skipped, as file managers do. A photo reached twice (by a symbolic link, a linked folder
    or another spelling of its path) is listed once, under the first path it was reached by.
    """
    found: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            found += _images_in(path, recursive)
        else:
            found.append(os.path.abspath(path))
    first_path: dict[str, str] = {}
    for path in found:
        first_path.setdefault(real_path(path), path)
    return list(first_path.values())


def real_path(path: str) -> str:
    """The path with every symbolic link resolved: the same for every way to reach a file."""
    return os.path.realpath(path)


def _images_in(folder: str, recursive: bool) -> list[str]:
    images = []
    for root, dirs, files in os.walk(os.path.abspath(folder)):
        dirs[:] = sorted((d for d in dirs if not d.startswith(".")), key=str.lower)
        if not recursive:
            dirs.clear()
        images += [
            os.path.join(root, name)
            for name in sorted(files, key=str.lower)
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS
        ]
    return images


def sample_images_dir() -> Path:
    """captioner/samples, found without importing captioner (which would import torch)."""
    spec = importlib.util.find_spec("captioner")
    if spec is None or spec.origin is None:
        return Path("captioner-samples-not-installed")
    return Path(spec.origin).parent / "samples"
