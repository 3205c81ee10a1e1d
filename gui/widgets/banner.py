"""A strip above the photo that says plainly what the loaded model can and cannot do.

It is always one line high, whatever it says, so a long error never moves the panels around
it: the line is cut to fit, and the whole text (a traceback, hundreds of torch lines) is one
click away behind "Details…".
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QMessageBox, QPushButton, QStyle

from gui.widgets.elided_label import ElidedLabel

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
        self.text = ElidedLabel()
        self.details = ""
        self._warning = False
        self.details_button = QPushButton("Details…")
        self.details_button.clicked.connect(self.show_details)
        self.button = QPushButton("Choose model directory…")
        self.button.clicked.connect(self.choose_model)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.addWidget(self.icon)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.details_button)
        layout.addWidget(self.button)
        self.hide()

    def show_message(self, text: str, *, warning: bool, details: str = "") -> None:
        """Show the first line of `text`; `details`, when given, behind the Details… button."""
        self._warning = warning
        icon = (
            QStyle.StandardPixmap.SP_MessageBoxWarning
            if warning
            else QStyle.StandardPixmap.SP_MessageBoxInformation
        )
        size = self.style().pixelMetric(QStyle.PixelMetric.PM_SmallIconSize)
        self.icon.setPixmap(self.style().standardIcon(icon).pixmap(size, size))
        self.text.setText(text.partition("\n")[0])
        self.details = details
        self.details_button.setVisible(bool(details))
        self.show()

    def show_details(self) -> None:
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Warning if self._warning else QMessageBox.Icon.Information)
        box.setWindowTitle("Model")
        box.setText(self.text.text())
        box.setDetailedText(self.details)
        box.exec()
