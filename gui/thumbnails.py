"""Thumbnails for the image list, decoded in a background thread.

Qt's image reader scales JPEGs while decoding, so it is fast and needs no torch. A file it
cannot read goes to captioner's load_image, which either reads it after all (HEIC, odd
modes) or says exactly what is wrong with it; that reason is what the list shows.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from PySide6.QtCore import QBuffer, QByteArray, QObject, QSize, Qt, Signal
from PySide6.QtGui import QImage, QImageReader

from captioner.photos.images import ImageError, load_image, open_photo_file
from gui.convert import pil_to_qimage

THUMBNAIL_SIZE = (
    128  # device pixels: the list shows 64 logical px (sharp on 2x screens), the grid 96
)


class Thumbnailer(QObject):
    ready = Signal(str, QImage)  # path, thumbnail
    failed = Signal(str, str)  # path, reason

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        # One thread: thumbnails must not starve the captioning worker of the CPU.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="thumbnails")

    def request(self, path: str) -> None:
        self._pool.submit(self._load, path)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _load(self, path: str) -> None:
        image = _read_with_qt(path)
        if image is None:
            try:
                picture = load_image(path, min_size=THUMBNAIL_SIZE)
            except ImageError as error:
                self.failed.emit(path, error.reason)
                return
            picture.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
            image = pil_to_qimage(picture)
        self.ready.emit(path, image)


# What Qt calls the formats captioner opens (captioner.photos.images.ALLOWED_FORMATS). Qt
# reads more (SVG, ICO, PPM, TGA, ...): those go to load_image, which refuses them with the
# reason the list then shows, instead of a thumbnail for a photo that cannot be captioned.
QT_PHOTO_FORMATS = frozenset({"jpeg", "jpg", "png", "gif", "webp", "tiff", "tif", "bmp"})


def _read_with_qt(path: str) -> QImage | None:
    # Qt would open a FIFO named x.jpg and wait for a writer for ever: captioner opens it.
    buffer = QBuffer()  # holds its own copy of the bytes (setData), unlike QBuffer(QByteArray)
    try:
        with open_photo_file(path) as photo:
            buffer.setData(QByteArray(photo.read()))
    except ImageError:
        return None  # load_image then says why
    reader = QImageReader(buffer)
    if bytes(reader.format().data()).decode().lower() not in QT_PHOTO_FORMATS:
        return None
    reader.setAutoTransform(True)  # EXIF orientation, as load_image applies it
    size = reader.size()
    if size.isValid() and max(size.width(), size.height()) > THUMBNAIL_SIZE:
        reader.setScaledSize(
            size.scaled(QSize(THUMBNAIL_SIZE, THUMBNAIL_SIZE), Qt.AspectRatioMode.KeepAspectRatio)
        )
    image = reader.read()
    return None if image.isNull() else image
