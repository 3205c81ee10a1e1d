"""The paper's figure in a window: the photo, then every word above its map, at the photo's
own aspect ratio (captioner.photos.heatmap.attention_grid): where a copied noun was read, the
attention before any other word, each said under its word."""

from __future__ import annotations

from PIL import Image
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
)

from gui.convert import pil_to_qimage


class AttentionGridDialog(QDialog):
    save_requested = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Every word's map")
        self.grid: Image.Image | None = None
        self.picture = QLabel()
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        scroll = QScrollArea()
        scroll.setWidget(self.picture)
        scroll.setWidgetResizable(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        save = QPushButton("&Save PNG…")
        buttons.addButton(save, QDialogButtonBox.ButtonRole.ActionRole)
        save.clicked.connect(self.save_requested)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(scroll, 1)
        layout.addWidget(buttons)

    def set_grid(self, grid: Image.Image, title: str) -> None:
        self.grid = grid
        pixmap = QPixmap.fromImage(pil_to_qimage(grid))
        pixmap.setDevicePixelRatio(max(1.0, self.devicePixelRatioF()))
        self.picture.setPixmap(pixmap)
        self.setWindowTitle(f"Every word's map — {title}")
        # As large as the figure, within the screen; larger figures scroll.
        wanted = pixmap.deviceIndependentSize().toSize() + QSize(60, 100)
        screen = self.screen().availableGeometry().size() * 0.9
        self.resize(wanted.boundedTo(screen))
