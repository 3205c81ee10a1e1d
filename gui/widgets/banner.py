"""A strip above the photo that says plainly what the loaded model can and cannot do."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QStyle

NO_MODEL = "No model loaded — Settings → Model directory…"
SCENES_MODEL = (
    "This default model was trained on generated shapes scenes; it describes circles and "
    "squares, not everyday photos. To caption photos, train on COCO or Flickr (see README) "
    "and load the model directory in Settings."
)


class ModelBanner(QFrame):
    choose_model = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        # AlternateBase is a gentle contrast to the window in light and dark palettes alike.
        self.setBackgroundRole(QPalette.ColorRole.AlternateBase)
        self.setAutoFillBackground(True)
        self.icon = QLabel()
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.button = QPushButton("Choose model directory…")
        self.button.clicked.connect(self.choose_model)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.addWidget(self.icon, 0, Qt.AlignmentFlag.AlignTop)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.button, 0, Qt.AlignmentFlag.AlignVCenter)
        self.hide()

    def show_message(self, text: str, *, warning: bool) -> None:
        icon = (
            QStyle.StandardPixmap.SP_MessageBoxWarning
            if warning
            else QStyle.StandardPixmap.SP_MessageBoxInformation
        )
        size = self.style().pixelMetric(QStyle.PixelMetric.PM_SmallIconSize)
        self.icon.setPixmap(self.style().standardIcon(icon).pixmap(size, size))
        self.text.setText(text)
        self.show()
