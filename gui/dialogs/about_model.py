"""Help → About this model: its name, what it was trained on (its model card) and the nouns it
can name, so a user can tell what to expect of it before blaming a photo."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from gui.worker import ModelInfo


class AboutModelDialog(QDialog):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About this model")
        self.resize(640, 560)
        self.title = QLabel()
        self.title.setTextFormat(Qt.TextFormat.PlainText)
        self.title.setWordWrap(True)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.card = QTextBrowser()
        self.card.setOpenExternalLinks(True)
        self.nouns_label = QLabel()
        self.nouns_label.setWordWrap(True)
        self.nouns = QPlainTextEdit()
        self.nouns.setReadOnly(True)
        self.nouns.setAccessibleName("Nouns the model can name")
        nouns_box = QWidget()
        nouns_layout = QVBoxLayout(nouns_box)
        nouns_layout.setContentsMargins(0, 0, 0, 0)
        nouns_layout.addWidget(self.nouns_label)
        nouns_layout.addWidget(self.nouns, 1)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.card)
        splitter.addWidget(nouns_box)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(splitter, 1)
        layout.addWidget(buttons)

    def set_model(self, info: ModelInfo) -> None:
        self.title.setText(f"{info.name} — {info.path}")
        if info.card:
            self.card.setMarkdown(info.card)
        else:
            self.card.setPlainText(
                "This model directory has no model card (README.md), so what it was trained "
                "on is not recorded here."
            )
        if info.copies_nouns:
            self.nouns_label.setText(
                f"It can name {len(info.nouns):,} kinds of things, copying the noun from what "
                "the encoder's ImageNet classifier sees where the model looks:"
            )
            self.nouns.setPlainText("\n".join(info.nouns))
        else:
            self.nouns_label.setText(
                f"It copies no nouns from the photo: it says only the {info.vocab_size:,} "
                "words of its vocabulary."
            )
            self.nouns.clear()
        self.nouns.setVisible(info.copies_nouns)
