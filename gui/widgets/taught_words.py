"""The Taught Words dock: each word the person taught, its examples as thumbnails, removing an
example, forgetting a word, and why the loaded model does not say them when it cannot.

`TaughtWordsModel` holds the words and examples (a row per word, a child row per example photo);
`TaughtWordsPanel` shows them and does what its buttons say through gui/teaching.py.
"""

from __future__ import annotations

import os

from PySide6.QtCore import QModelIndex, QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from captioner.library import TaughtRecord
from gui.teaching import Teaching

WordRole = Qt.ItemDataRole.UserRole + 1  # the taught word, on its row and its examples'
SourceRole = Qt.ItemDataRole.UserRole + 2  # an example's photo path; None on a word's row
ICON_SIZE = 48


class TaughtWordsModel(QStandardItemModel):
    """word -> its example photos, in the order they were taught."""

    thumbnail_needed = Signal(str)  # path of an example photo without a thumbnail yet

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._thumbnails: dict[str, QPixmap] = {}

    def set_records(self, records: list[TaughtRecord]) -> None:
        self.clear()
        words: dict[str, QStandardItem] = {}
        sources: dict[str, set] = {}
        for record in records:
            row = words.get(record.word)
            if row is None:
                row = words[record.word] = QStandardItem(record.word)
                row.setData(record.word, WordRole)
                row.setData(None, SourceRole)
                row.setEditable(False)
                self.appendRow(row)
                sources[record.word] = set()
            if record.source in sources[record.word]:  # one photo, one row: removed as one
                continue
            sources[record.word].add(record.source)
            row.appendRow(self._example(record))
        for word, row in words.items():
            count = row.rowCount()
            row.setText(f"{word}  ({count} example{'s' * (count != 1)})")

    def _example(self, record: TaughtRecord) -> QStandardItem:
        source = record.source
        name = os.path.basename(source) if source else "(a photo not from a file)"
        if record.box is not None:
            name += "  (boxed)"
        item = QStandardItem(name)
        item.setEditable(False)
        item.setData(record.word, WordRole)
        item.setData(source, SourceRole)
        item.setToolTip(source or "")
        if source and not os.path.exists(source):
            item.setText(f"{name}  (no longer on disk)")
        elif source in self._thumbnails:
            item.setIcon(QIcon(self._thumbnails[source]))
        elif source:
            self.thumbnail_needed.emit(source)
        return item

    def set_thumbnail(self, path: str, image: QImage) -> None:
        """A thumbnail arrived (for any photo: those of no example are ignored)."""
        if not self._is_example(path):
            return
        self._thumbnails[path] = pixmap = QPixmap.fromImage(image)
        for example in self.examples():
            if example.data(SourceRole) == path:
                example.setIcon(QIcon(pixmap))

    def _is_example(self, path: str) -> bool:
        return any(example.data(SourceRole) == path for example in self.examples())

    def words(self) -> list[str]:
        return [self.item(row).data(WordRole) for row in range(self.rowCount())]

    def examples(self, word: str | None = None) -> list[QStandardItem]:
        """The example rows (of `word`, else of every word)."""
        found = []
        for row in range(self.rowCount()):
            parent = self.item(row)
            if word is None or parent.data(WordRole) == word:
                found += [parent.child(i) for i in range(parent.rowCount())]
        return found


class TaughtWordsPanel(QWidget):
    """The dock's contents: the note, the words with their examples, and the buttons."""

    def __init__(self, teaching: Teaching, parent=None) -> None:
        super().__init__(parent)
        self.teaching = teaching
        self.model = TaughtWordsModel(self)
        self.note = QLabel()  # why the taught words are not applied, when they are not
        self.note.setWordWrap(True)
        self.note.hide()
        self.empty = QLabel(
            "No words taught yet. Right-click a word of a caption (or press Ctrl+T) and choose "
            "“Teach: this photo shows a ___” to teach the model a word from the photo."
        )
        self.empty.setWordWrap(True)
        self.tree = QTreeView()
        self.tree.setModel(self.model)
        self.tree.setHeaderHidden(True)
        self.tree.setIconSize(QSize(ICON_SIZE, ICON_SIZE))
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.setAccessibleName("Taught words")
        self.tree.selectionModel().currentChanged.connect(self._update_buttons)
        self.remove_button = QPushButton("&Remove Example")
        self.remove_button.setToolTip("The word forgets this photo")
        self.remove_button.clicked.connect(self.remove_current_example)
        self.forget_button = QPushButton("&Forget Word…")
        self.forget_button.clicked.connect(self.forget_current_word)
        buttons = QHBoxLayout()
        buttons.addWidget(self.remove_button)
        buttons.addWidget(self.forget_button)
        buttons.addStretch(1)
        contents = QWidget()
        layout = QVBoxLayout(contents)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.addWidget(self.note)
        layout.addWidget(self.empty)
        layout.addWidget(self.tree, 1)
        layout.addLayout(buttons)
        # In a scroll area, as the Settings panel: a low window scrolls it, never cuts it off.
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(contents)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        teaching.words_changed.connect(self.refresh)
        self.refresh()

    def sizeHint(self) -> QSize:
        return QSize(300, 260)

    def refresh(self) -> None:
        """The library's taught words again, and whether the model says them."""
        self.model.set_records(self.teaching.records())
        self.tree.expandAll()
        note = self.teaching.not_applied()
        self.note.setText(note)
        self.note.setVisible(bool(note))
        self.empty.setVisible(self.model.rowCount() == 0)
        self._update_buttons()

    def _current(self) -> QModelIndex:
        return self.tree.selectionModel().currentIndex()

    def _update_buttons(self) -> None:
        current = self._current()
        self.forget_button.setEnabled(current.isValid())
        self.remove_button.setEnabled(current.isValid() and current.data(SourceRole) is not None)

    def select_word(self, word: str) -> None:
        for row in range(self.model.rowCount()):
            if self.model.item(row).data(WordRole) == word:
                self.tree.setCurrentIndex(self.model.index(row, 0))

    def remove_current_example(self) -> None:
        current = self._current()
        source = current.data(SourceRole)
        if current.isValid() and source is not None:
            self.teaching.remove_example(current.data(WordRole), source)

    def forget_current_word(self) -> None:
        current = self._current()
        if not current.isValid():
            return
        word = current.data(WordRole)
        count = len(self.model.examples(word))
        answer = QMessageBox.question(
            self,
            "Forget a taught word",
            f"Forget “{word}” and its {count} example{'s' * (count != 1)}? The model will no "
            "longer say it; you can teach it again from a photo.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.teaching.forget(word)
