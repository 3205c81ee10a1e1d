"""The search box and filter above the photo list: the list shows only the photos whose
captions (the person's, the model's, or the things the model saw) match as the person types."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLineEdit, QWidget

SETTLE_MS = 150  # search once typing pauses
# The filter's choices: captioner.library's FILTERS, in words.
FILTER_LABELS = {
    "all": "All",
    "checked": "Checked",
    "unchecked": "Not checked",
    "mine": "Written by me",
}


class SearchBox(QLineEdit):
    """Esc clears the search (and is its own even where the window has a shortcut on it)."""

    def event(self, event) -> bool:
        escape = event.type() == QEvent.Type.ShortcutOverride and event.key() == Qt.Key.Key_Escape
        if escape and self.text():
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event) -> None:
        if event.key() == Qt.Key.Key_Escape and self.text():
            self.clear()
        else:
            super().keyPressEvent(event)


class PhotoSearch(QWidget):
    changed = Signal(str, str)  # query, filter (one of FILTER_LABELS)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.box = SearchBox()
        self.box.setPlaceholderText("Search captions…")
        self.box.setClearButtonEnabled(True)
        self.box.setAccessibleName("Search captions")
        self.box.setToolTip(
            "Finds photos by their captions and the things the model saw: whole words and "
            "beginnings of words, any case; Esc clears"
        )
        self.filter = QComboBox()
        self.filter.setAccessibleName("Show")
        for name, label in FILTER_LABELS.items():
            self.filter.addItem(label, name)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 2)
        layout.addWidget(self.box, 1)
        layout.addWidget(self.filter)
        self._timer = QTimer(self, singleShot=True, interval=SETTLE_MS)
        self._timer.timeout.connect(self._emit)
        self.box.textChanged.connect(lambda _text: self._timer.start())
        self.filter.currentIndexChanged.connect(lambda _index: self._emit())

    @property
    def query(self) -> str:
        return self.box.text().strip()

    @property
    def filter_name(self) -> str:
        return self.filter.currentData()

    @property
    def active(self) -> bool:
        return bool(self.query) or self.filter_name != "all"

    def _emit(self) -> None:
        self._timer.stop()
        self.changed.emit(self.query, self.filter_name)
