"""PIL images to Qt images; the one place pixel buffers cross between the two libraries."""

from __future__ import annotations

from PIL import Image
from PySide6.QtGui import QImage


def pil_to_qimage(image: Image.Image) -> QImage:
    """An RGB copy Qt owns, so the PIL buffer may be freed afterwards."""
    rgb = image.convert("RGB")
    data = rgb.tobytes()
    width, height = rgb.size
    return QImage(data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()
