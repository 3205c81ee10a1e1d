"""The list of opened photos and where each one stands: waiting, being captioned, done, failed."""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QImage, QPixmap


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

    @property
    def name(self) -> str:
        return os.path.basename(self.path) or self.path


StatusRole = Qt.ItemDataRole.UserRole + 1
PathRole = Qt.ItemDataRole.UserRole + 2
CaptionRole = Qt.ItemDataRole.UserRole + 3
ErrorRole = Qt.ItemDataRole.UserRole + 4

_Index = QModelIndex | QPersistentModelIndex


class ImageListModel(QAbstractListModel):
    # Thumbnails load lazily: the view asks for an item's picture only when it shows that row.
    thumbnail_needed = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._items: list[ImageItem] = []
        self._rows: dict[str, int] = {}

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
            return f"{item.path}\n{detail}" if detail else item.path
        if role == Qt.ItemDataRole.DecorationRole:
            if item.thumbnail is None and not item.thumbnail_requested:
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
        return None

    def add_paths(self, paths: list[str]) -> list[int]:
        """Append the paths not listed yet; returns the row of every given path, in order."""
        new = [p for p in dict.fromkeys(paths) if p not in self._rows]
        if new:
            first = len(self._items)
            self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
            for offset, path in enumerate(new):
                self._rows[path] = first + offset
                self._items.append(ImageItem(path))
            self.endInsertRows()
        return [self._rows[p] for p in paths]

    def remove_rows(self, rows: list[int]) -> None:
        for row in sorted(set(rows), reverse=True):
            self.beginRemoveRows(QModelIndex(), row, row)
            del self._items[row]
            self.endRemoveRows()
        self._rows = {item.path: row for row, item in enumerate(self._items)}

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

    def _changed(self, row: int) -> None:
        index = self.index(row)
        self.dataChanged.emit(index, index)
