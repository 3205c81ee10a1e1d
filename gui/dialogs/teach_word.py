"""Teach: this photo shows a ___. The word (a noun of one or two words), and optionally a box
dragged around the thing on the photo; without one, the model's own attention picks the cells."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRect, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

Box = tuple[float, float, float, float]  # (left, top, right, bottom), fractions of the photo
MIN_BOX_SIDE = 0.02  # a click without a drag is no box


class BoxCanvas(QWidget):
    """The photo, fitted, on which a drag draws the box around the thing."""

    def __init__(self, image: QImage | None, parent=None) -> None:
        super().__init__(parent)
        self._image = image if image is not None and not image.isNull() else None
        self._start: QPointF | None = None
        self._box: Box | None = None
        self.setMinimumSize(240, 180)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.setAccessibleName("Photo: drag a box around the thing (optional)")

    @property
    def box(self) -> Box | None:
        return self._box

    def set_box(self, box: Box | None) -> None:
        self._box = box
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(420, 300)

    def image_rect(self) -> QRect:
        if self._image is None:
            return QRect()
        size = self._image.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
        rect = QRect(0, 0, size.width(), size.height())
        rect.moveCenter(self.rect().center())
        return rect

    def _fraction(self, point: QPointF) -> QPointF:
        rect = QRectF(self.image_rect())
        x = min(max((point.x() - rect.left()) / rect.width(), 0.0), 1.0)
        y = min(max((point.y() - rect.top()) / rect.height(), 0.0), 1.0)
        return QPointF(x, y)

    def mousePressEvent(self, event) -> None:
        if self._image is not None and event.button() == Qt.MouseButton.LeftButton:
            self._start = self._fraction(event.position())
            self.set_box(None)

    def mouseMoveEvent(self, event) -> None:
        if self._start is not None:
            end = self._fraction(event.position())
            left, right = sorted((self._start.x(), end.x()))
            top, bottom = sorted((self._start.y(), end.y()))
            big = right - left >= MIN_BOX_SIDE and bottom - top >= MIN_BOX_SIDE
            self.set_box((left, top, right, bottom) if big else None)

    def mouseReleaseEvent(self, event) -> None:
        self._start = None

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().dark())
        if self._image is None:
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "(photo not loaded yet)")
            return
        target = self.image_rect()
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.drawImage(target, self._image)
        if self._box is not None:
            left, top, right, bottom = self._box
            box = QRectF(
                target.left() + left * target.width(),
                target.top() + top * target.height(),
                (right - left) * target.width(),
                (bottom - top) * target.height(),
            )
            painter.setPen(QPen(QColor(255, 215, 0), 2))
            painter.drawRect(box)


class TeachDialog(QDialog):
    """The word to teach, prefilled with the caption's word; OK only with a word."""

    def __init__(self, parent: QWidget | None, word: str, image: QImage | None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Teach a word")
        self.word = QLineEdit(word)
        self.word.setAccessibleName("Word")
        self.word.setPlaceholderText("a noun, such as “coffee grinder”")
        self.word.selectAll()
        self.canvas = BoxCanvas(image)
        clear = QPushButton("Clear Box")
        clear.clicked.connect(lambda: self.canvas.set_box(None))
        hint = QLabel(
            "Optionally drag a box around the thing. Without one, the cells the model looks at "
            "when it names the photo's thing are its example."
        )
        hint.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(QLabel("This photo shows a"))
        row.addWidget(self.word, 1)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Teach")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.word.textChanged.connect(self._update_ok)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.canvas, 1)
        under = QHBoxLayout()
        under.addWidget(hint, 1)
        under.addWidget(clear)
        layout.addLayout(under)
        layout.addWidget(self.buttons)
        self._update_ok()

    def _update_ok(self) -> None:
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setEnabled(bool(self.word.text().strip()))


def ask_word(parent: QWidget, word: str, image: QImage | None) -> tuple[str, Box | None] | None:
    """The word the person teaches and their box (or None); None if cancelled."""
    dialog = TeachDialog(parent, word, image)
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return None
    return dialog.word.text(), dialog.canvas.box
