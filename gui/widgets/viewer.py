"""The photo, scaled to fit, with one word's attention heatmap blended on top.

The heatmap is computed by the window at the size the photo is drawn (in device pixels), so
it stays sharp on high-DPI screens and cheap on huge photos; here it is only painted.
"""

from __future__ import annotations

from PySide6.QtCore import QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPalette
from PySide6.QtWidgets import QSizePolicy, QWidget


class ImageViewer(QWidget):
    resized = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._image: QImage | None = None
        self._overlay: QImage | None = None
        self._label = ""  # what the heatmap shows ("where “dog” was read")
        self._placeholder = "Open photos with Ctrl+O, or drop them here"
        self._busy = False
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(320, 240)
        self.setAccessibleName("Photo")

    def sizeHint(self) -> QSize:
        return QSize(800, 600)

    @property
    def image(self) -> QImage | None:
        return self._image

    @property
    def busy(self) -> bool:
        return self._busy

    @property
    def overlay(self) -> QImage | None:
        return self._overlay

    def set_image(self, image: QImage | None) -> None:
        self._image = image
        self._overlay = None
        self._label = ""
        self.update()

    def set_overlay(self, overlay: QImage | None, label: str = "") -> None:
        self._overlay = overlay
        self._label = label if overlay is not None else ""
        self.update()

    def set_placeholder(self, text: str) -> None:
        self._placeholder = text
        self.update()

    def set_busy(self, busy: bool) -> None:
        if busy != self._busy:
            self._busy = busy
            self.update()

    def image_rect(self) -> QRect:
        """Where the photo is drawn, in logical pixels: fitted to the widget and centred."""
        if self._image is None or self._image.isNull():
            return QRect()
        size = self._image.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
        rect = QRect(0, 0, size.width(), size.height())
        rect.moveCenter(self.rect().center())
        return rect

    def overlay_size(self) -> QSize:
        """The pixel size a heatmap should have to look sharp where the photo is drawn."""
        rect = self.image_rect()
        ratio = self.devicePixelRatioF()
        size = QSize(round(rect.width() * ratio), round(rect.height() * ratio))
        return size.boundedTo(self._image.size()) if self._image is not None else size

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.resized.emit()

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        palette = self.palette()
        painter.fillRect(self.rect(), palette.color(QPalette.ColorRole.Dark))
        if self._image is None or self._image.isNull():
            painter.setPen(palette.color(QPalette.ColorRole.BrightText))
            font = QFont(self.font())
            font.setPointSizeF(font.pointSizeF() * 1.3)
            painter.setFont(font)
            painter.drawText(
                self.rect().adjusted(24, 24, -24, -24),
                Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                self._placeholder,
            )
            return
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        target = self.image_rect()
        painter.drawImage(target, self._overlay or self._image)
        if self._label:
            self._draw_chip(painter, target, self._label, Qt.AlignmentFlag.AlignLeft)
        if self._busy:
            self._draw_chip(painter, target, "Captioning…", Qt.AlignmentFlag.AlignRight)

    def _draw_chip(self, painter: QPainter, target: QRect, text: str, side) -> None:
        # On top of the photo, so a fixed dark translucent chip with white text reads in any
        # theme.
        font = QFont(self.font())
        font.setPointSizeF(font.pointSizeF() * 1.2)
        font.setBold(True)
        painter.setFont(font)
        metrics = painter.fontMetrics()
        width, height = metrics.horizontalAdvance(text) + 20, metrics.height() + 10
        x = (
            target.left() + 10
            if side == Qt.AlignmentFlag.AlignLeft
            else target.right() - width - 10
        )
        chip = QRectF(x, target.bottom() - height - 10, width, height)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(0, 0, 0, 170))
        painter.drawRoundedRect(chip, 6, 6)
        painter.setPen(QColor(255, 255, 255))
        painter.drawText(chip, Qt.AlignmentFlag.AlignCenter, text)
