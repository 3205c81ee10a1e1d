"""Writing files from the GUI: PNGs go to a temporary file first, then replace the target."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from PIL import Image


def save_png(image: Image.Image, path: str | os.PathLike) -> Path:
    """Save `image` as PNG at `path` atomically; raises OSError naming the file on failure."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        image.save(temporary, format="PNG", optimize=True)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
