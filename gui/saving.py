"""Writing files from the GUI: the caption (clipboard, text file, photo metadata), the heatmap
grid, and pasted images.

Each export reports how it went in the window's status bar and asks before replacing what a
person may have written; every file goes through captioner.photos.atomic, so a crash never
leaves half of one.
"""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QBuffer, QIODevice
from PySide6.QtGui import QGuiApplication, QImage
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMessageBox

from captioner.photos.atomic import save_atomically, write_atomically


def save_png(image: Image.Image, path: str | os.PathLike) -> Path:
    """Save `image` as PNG at `path` atomically; raises OSError naming the file on failure."""
    return save_atomically(path, lambda file: image.save(file, format="PNG", optimize=True))


def save_pasted_image(image: QImage, folder: Path) -> Path:
    """Pasted or dropped pixels as a new PNG in `folder`, so they can be captioned and exported;
    raises OSError saying which file could not be written."""
    path = folder / f"pasted-{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(2).hex()}.png"
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):
        raise OSError(f"Could not save the pasted image to {path}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return write_atomically(path, bytes(buffer.data()))
    except OSError as error:
        raise OSError(
            f"Could not save the pasted image to {path}: {error.strerror or error}"
        ) from error


def copy_caption(window: QMainWindow, caption: str) -> None:
    QGuiApplication.clipboard().setText(caption)
    window.statusBar().showMessage("Caption copied", 3000)


def save_sidecar(window: QMainWindow, photo: str, caption: str) -> Path | None:
    """Write `caption` to the text file beside `photo`, asking before replacing one; returns
    the file written, None if the user declined or it failed."""
    from captioner.photos.metadata import sidecar_path, write_sidecar

    try:
        try:
            written = write_sidecar(photo, caption)
        except FileExistsError:
            answer = QMessageBox.question(
                window, "Replace caption file?",
                f"{sidecar_path(photo)} already exists. Replace it?",
            )  # fmt: skip
            if answer != QMessageBox.StandardButton.Yes:
                return None
            written = write_sidecar(photo, caption, overwrite=True)
    except OSError as error:
        window.statusBar().showMessage(f"Could not write the caption file: {error}", 10000)
        return None
    window.statusBar().showMessage(f"Saved the caption to {written}", 6000)
    return written


def write_metadata(window: QMainWindow, photo: str, caption: str) -> bool:
    """Store `caption` in `photo`'s XMP and EXIF description, asking before replacing one
    already there; True if it was written."""
    from captioner.photos.metadata import existing_description, write_caption_metadata

    try:
        try:
            write_caption_metadata(photo, caption)
        except FileExistsError:
            # A description already there was most likely typed by a person.
            existing = textwrap.shorten(existing_description(photo) or "", 300)
            answer = QMessageBox.question(
                window, "Replace description?",
                f"{os.path.basename(photo)} already has a description:\n\n{existing}\n\n"
                "Replace it with the caption?",
            )  # fmt: skip
            if answer != QMessageBox.StandardButton.Yes:
                return False
            write_caption_metadata(photo, caption, overwrite=True)
    except (ValueError, OSError) as error:
        window.statusBar().showMessage(str(error), 10000)
        return False
    window.statusBar().showMessage(
        f"Stored the caption in {os.path.basename(photo)}'s metadata", 6000
    )
    return True


def save_grid(window: QMainWindow, grid: Image.Image, photo: str, path: str | None) -> Path | None:
    """Save the heatmap grid of `photo` as PNG at `path`, else where the user picks (offered:
    beside the photo); returns the file written, None if cancelled or it failed."""
    if not path:
        suggestion = str(Path(photo).with_name(Path(photo).stem + "-attention.png"))
        path, _ = QFileDialog.getSaveFileName(
            window, "Save heatmap grid", suggestion, "PNG image (*.png)"
        )
        if not path:
            return None
    try:
        saved = save_png(grid, path)
    except OSError as error:
        window.statusBar().showMessage(f"Could not save {path}: {error.strerror or error}", 10000)
        return None
    window.statusBar().showMessage(f"Saved the heatmap grid to {saved}", 6000)
    return saved
