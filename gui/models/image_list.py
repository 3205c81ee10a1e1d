"""The list of opened photos and where each one stands: waiting, being captioned, done, failed."""

from __future__ import annotations

import contextlib
import enum
import os
from dataclasses import dataclass

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QImage, QPixmap

from gui.files import real_path


class Status(enum.Enum):
    PENDING = "pending"  # not captioned yet, or its caption is from other settings
    WORKING = "working"
    CAPTIONED = "captioned"
    FAILED = "failed"


@dataclass
class ImageItem:
    path: str
    status: Status = Status.PENDING
    caption: str = ""  # kept when the item goes back to PENDING, shown as a hint
    error: str = ""
    thumbnail: QPixmap | None = None
    thumbnail_requested: bool = False
    real_path: str = ""  # symbolic links resolved: one row per file, however it was reached
    # Whose caption it is (captioner.library's Entry.state): "model", "accepted" (the
    # model's, checked by the person), "mine" (written by the person) or "none".
    state: str = "none"
    # Whether the photo is still there as the library saw it (Entry.on_disk): "ok",
    # "changed", "missing" (its row and captions stay) or "unknown" (new to the library).
    on_disk: str = "unknown"

    @property
    def checked(self) -> bool:
        return self.state in ("accepted", "mine")

    @property
    def name(self) -> str:
        return os.path.basename(self.path) or self.path


StatusRole = Qt.ItemDataRole.UserRole + 1
PathRole = Qt.ItemDataRole.UserRole + 2
CaptionRole = Qt.ItemDataRole.UserRole + 3
ErrorRole = Qt.ItemDataRole.UserRole + 4
CaptionStateRole = Qt.ItemDataRole.UserRole + 5
DiskStateRole = Qt.ItemDataRole.UserRole + 6

# What the list's marker means, in words (its tooltip and what a screen reader says).
STATE_TEXT = {
    "model": "the model's caption, not checked yet",
    "accepted": "checked: the model's caption, accepted",
    "mine": "checked: written by you",
    "none": "",
}
# What the list says of a photo that is gone or changed on disk (its captions are kept).
DISK_TEXT = {
    "missing": "the photo is no longer on disk; its captions are kept",
    "changed": "the photo changed on disk since it was captioned",
}

_Index = QModelIndex | QPersistentModelIndex


class ImageListModel(QAbstractListModel):
    # Thumbnails load lazily: the view asks for an item's picture only when it shows that row.
    thumbnail_needed = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._items: list[ImageItem] = []
        self._rows: dict[str, int] = {}
        self._real_rows: dict[str, int] = {}
        self._batched_rows: list[int] | None = None  # rows changed in a `batched_changes`

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(self._items)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        item = self._items[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return item.name
        if role == Qt.ItemDataRole.ToolTipRole:
            detail = item.error if item.status is Status.FAILED else item.caption
            notes = [STATE_TEXT[item.state], DISK_TEXT.get(item.on_disk, "")]
            return "\n".join(filter(None, [item.path, detail, *(f"({n})" for n in notes if n)]))
        if role == Qt.ItemDataRole.AccessibleTextRole:
            notes = [STATE_TEXT[item.state], DISK_TEXT.get(item.on_disk, "")]
            return ", ".join(filter(None, [item.name, item.caption, *notes]))
        if role == Qt.ItemDataRole.DecorationRole:
            missing = item.on_disk == "missing"  # nothing to draw: no thumbnail asked for
            if item.thumbnail is None and not item.thumbnail_requested and not missing:
                item.thumbnail_requested = True
                self.thumbnail_needed.emit(item.path)
            return item.thumbnail
        if role == StatusRole:
            return item.status
        if role == PathRole:
            return item.path
        if role == CaptionRole:
            return item.caption
        if role == ErrorRole:
            return item.error
        if role == CaptionStateRole:
            return item.state
        if role == DiskStateRole:
            return item.on_disk
        return None

    def add_paths(self, paths: list[str]) -> list[int]:
        """Append the photos not listed yet; returns the row of every given path, in order.

        A symbolic link to a listed photo is that photo: it gets the photo's row, not its own.
        """
        real_paths = [real_path(path) for path in paths]
        new: dict[str, str] = {}  # real path -> the first path given for it
        for path, real in zip(paths, real_paths, strict=True):
            if real not in self._real_rows:
                new.setdefault(real, path)
        if new:
            first = len(self._items)
            self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
            for row, (real, path) in enumerate(new.items(), first):
                self._rows[path] = self._real_rows[real] = row
                self._items.append(ImageItem(path, real_path=real))
            self.endInsertRows()
        return [self._real_rows[real] for real in real_paths]

    def remove_rows(self, rows: list[int]) -> None:
        for row in sorted(set(rows), reverse=True):
            self.beginRemoveRows(QModelIndex(), row, row)
            del self._items[row]
            self.endRemoveRows()
        self._rows = {item.path: row for row, item in enumerate(self._items)}
        self._real_rows = {item.real_path: row for row, item in enumerate(self._items)}

    def insert_items(self, placed: list[tuple[int, ImageItem]]) -> list[int]:
        """Put removed items back at their rows (`remove_rows` took them, in ascending row
        order); one listed again since, under any path, is not listed twice. Returns the rows
        put back."""
        rows = []
        for row, item in sorted(placed, key=lambda pair: pair[0]):
            if item.real_path in self._real_rows:
                continue
            row = min(row, len(self._items))
            self.beginInsertRows(QModelIndex(), row, row)
            self._items.insert(row, item)
            self._real_rows[item.real_path] = row  # this loop's later rows look it up
            self.endInsertRows()
            rows.append(row)
        self._rows = {item.path: row for row, item in enumerate(self._items)}
        self._real_rows = {item.real_path: row for row, item in enumerate(self._items)}
        return rows

    def item(self, row: int) -> ImageItem:
        return self._items[row]

    def row_of(self, path: str) -> int | None:
        return self._rows.get(path)

    def items(self) -> list[ImageItem]:
        return list(self._items)

    def set_status(
        self, path: str, status: Status, *, caption: str | None = None, error: str = ""
    ) -> None:
        row = self._rows.get(path)
        if row is None:  # removed from the list while it was being captioned
            return
        item = self._items[row]
        item.status = status
        item.error = error
        if caption is not None:
            item.caption = caption
        self._changed(row)

    def set_caption_state(
        self, path: str, state: str, caption: str | None, on_disk: str | None = None
    ) -> None:
        """Whose caption the photo has (see ImageItem.state), the caption to list, and
        whether the photo is still on disk as captioned (see ImageItem.on_disk)."""
        row = self._rows.get(path)
        if row is None:
            return
        item = self._items[row]
        item.state = state
        if on_disk is not None:
            item.on_disk = on_disk
        if caption is not None:
            item.caption = caption
        self._changed(row)

    def set_thumbnail(self, path: str, image: QImage) -> None:
        row = self._rows.get(path)
        if row is not None:
            self._items[row].thumbnail = QPixmap.fromImage(image)
            self._changed(row)

    def mark_all_pending(self) -> None:
        """The model or decoding settings changed: every caption is out of date."""
        for item in self._items:
            if item.status in (Status.CAPTIONED, Status.WORKING):
                item.status = Status.PENDING
        if self._items:
            self.dataChanged.emit(self.index(0), self.index(len(self._items) - 1))

    @contextlib.contextmanager
    def batched_changes(self):
        """Many rows changed at once (a folder's captions from the library): one dataChanged
        over them at the end, not one per row."""
        self._batched_rows = []
        try:
            yield
        finally:
            rows, self._batched_rows = self._batched_rows, None
            if rows:
                self.dataChanged.emit(self.index(min(rows)), self.index(max(rows)))

    def _changed(self, row: int) -> None:
        if self._batched_rows is not None:
            self._batched_rows.append(row)
            return
        index = self.index(row)
        self.dataChanged.emit(index, index)
