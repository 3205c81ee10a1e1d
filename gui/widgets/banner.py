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
from gui.worker import ModelInfo

NO_MODEL = "No model loaded — Settings → Model directory…"
SHAPES_MODEL = (
    "This model was trained on generated shapes scenes; it describes circles and squares, "
    "not everyday photos. To caption photos, choose the Default model in Settings."
)


def copy_model_text(noun_count: int) -> str:
    """What a model that copies nouns from the encoder's ImageNet head knows."""
    return (
        f"Names about {noun_count:,} kinds of things (nouns learned from ImageNet); sentences "
        "learned from composites of photographed objects — Help → About this model"
    )


class ModelBanner(QFrame):
    choose_model = Signal()
    about_model = Signal()

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
        self.about_button = QPushButton("About this model…")
        self.about_button.clicked.connect(self.about_model)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.addWidget(self.icon)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.details_button)
        layout.addWidget(self.button)
        layout.addWidget(self.about_button)
        self.hide()

    def show_model(self, info: ModelInfo) -> None:
        """Say what a loaded model knows, when that is worth a line: the shapes model warns
        that it describes shapes, a copy model says how many things it names."""
        if info.shapes:
            self.show_message(SHAPES_MODEL, warning=False)
        elif info.copies_nouns:
            self.show_message(copy_model_text(len(info.nouns)), warning=False, about=True)
        else:
            self.hide()

    def show_message(
        self, text: str, *, warning: bool, details: str = "", about: bool = False
    ) -> None:
        """Show the first line of `text`; `details`, when given, behind the Details… button;
        `about` offers About this model… instead of choosing another model."""
        self._warning = warning
        self.button.setVisible(not about)
        self.about_button.setVisible(about)
        icon = (
            QStyle.StandardPixmap.SP_MessageBoxWarning
            if warning
            else QStyle.StandardPixmap.SP_MessageBoxInformation
        )
        size = self.style().pixelMetric(QStyle.PixelMetric.PM_SmallIconSize)
        self.icon.setPixmap(self.style().standardIcon(icon).pixmap(size, size))
        self.text.setText(text.partition("\n")[0])
        self.text.setWordWrap(not warning)  # a note of ours is read whole; an error is one line
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
