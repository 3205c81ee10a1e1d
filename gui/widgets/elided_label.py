"""A one-line label that fits any text into the width it is given, so it never widens a window.

A plain QLabel asks for the width of its whole text, and the main window grows to grant it
whenever a caption, a timing or an error gets longer. This one asks for a few characters at
least, cuts the text with "…" where it does not fit, and offers the whole text as its tooltip.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QLabel, QWidget

MINIMUM_CHARACTERS = 8


class ElidedLabel(QLabel):
    """text() is always the whole text (screen readers and tests see all of it); what is painted
    is displayed_text(), one line cut to the label's width."""

    def __init__(
        self,
        text: str = "",
        parent: QWidget | None = None,
        *,
        mode: Qt.TextElideMode = Qt.TextElideMode.ElideRight,
    ) -> None:
        super().__init__(parent)
        self._mode = mode
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setText(text)

    def setText(self, text: str) -> None:
        super().setText(text)
        self._update_tooltip()
        self.updateGeometry()
        self.update()

    def _one_line(self) -> str:
        return " ".join(self.text().split())

    def displayed_text(self) -> str:
        if self.wordWrap():  # wrapped over lines instead: the whole text is shown
            return self.text()
        width = self.contentsRect().width()
        return self.fontMetrics().elidedText(self._one_line(), self._mode, width)

    def _update_tooltip(self) -> None:
        # The tooltip is the way to read what the "…" hides; an uncut text needs none.
        cut = self.displayed_text() != self.text()
        self.setToolTip(self.text() if cut else "")

    def setWordWrap(self, on: bool) -> None:
        """Wrap the text over lines instead of cutting it (for the app's own short notes)."""
        super().setWordWrap(on)
        self._update_tooltip()
        self.updateGeometry()
        self.update()

    def sizeHint(self) -> QSize:
        if self.wordWrap():
            return super().sizeHint()
        margins = self.contentsMargins()
        width = self.fontMetrics().horizontalAdvance(self._one_line())
        height = self.fontMetrics().height()
        return QSize(
            width + margins.left() + margins.right(), height + margins.top() + margins.bottom()
        )

    def minimumSizeHint(self) -> QSize:
        if self.wordWrap():
            return super().minimumSizeHint()
        hint = self.sizeHint()
        least = self.fontMetrics().averageCharWidth() * MINIMUM_CHARACTERS
        return QSize(min(hint.width(), least), hint.height())

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._update_tooltip()

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        flags = int(self.alignment()) | (int(Qt.TextFlag.TextWordWrap) * self.wordWrap())
        self.style().drawItemText(
            painter, self.contentsRect(), flags, self.palette(),
            self.isEnabled(), self.displayed_text(), self.foregroundRole(),
        )  # fmt: skip
