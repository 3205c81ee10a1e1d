"""Writing files from the GUI."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from captioner.atomic import save_atomically


def save_png(image: Image.Image, path: str | os.PathLike) -> Path:
    """Save `image` as PNG at `path` atomically; raises OSError naming the file on failure."""
    return save_atomically(path, lambda file: image.save(file, format="PNG", optimize=True))
