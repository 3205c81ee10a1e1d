"""A strip above the photo that says, in plain words, when the person's captions are not being
saved (the caption library is full, read-only, gone or damaged), with a button to try again."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QStyle

from gui.widgets.elided_label import ElidedLabel


class LibraryBanner(QFrame):
    retry = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setBackgroundRole(QPalette.ColorRole.AlternateBase)
        self.setAutoFillBackground(True)
        self.setAccessibleName("Caption library")
        icon = QLabel()
        size = self.style().pixelMetric(QStyle.PixelMetric.PM_SmallIconSize)
        warning = self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning)
        icon.setPixmap(warning.pixmap(size, size))
        self.text = ElidedLabel()
        self.button = QPushButton("Try Again")
        self.button.clicked.connect(self.retry)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.addWidget(icon)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.button)
        self.hide()

    def show_problem(self, text: str) -> None:
        """Say why captions are not saved; "" hides the strip."""
        self.text.setText(text)
        self.text.setToolTip(text)
        self.setAccessibleDescription(text)
        self.setVisible(bool(text))
