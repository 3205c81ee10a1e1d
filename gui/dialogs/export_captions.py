"""File → Export Captions…: the person's captions (or the model's where they wrote none) of the
selected photos or of every photo in the library, as sidecar .txt files, into the photos'
metadata, or to a CSV, JSONL or COCO captions file (captioner.library.exchange does the
writing)."""

from __future__ import annotations

import os

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QMessageBox,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from captioner.library import Library, LibraryError

FORMATS = {
    "txt": "A .txt file beside each photo (taggui, kohya)",
    "metadata": "Into each photo's description (XMP and EXIF)",
    "csv": "One CSV file",
    "jsonl": "One JSONL file",
    "coco": "One COCO captions file (captioner-train --data reads it)",
}
FILE_FILTERS = {"csv": "CSV (*.csv)", "jsonl": "JSON Lines (*.jsonl)", "coco": "JSON (*.json)"}


class _Only:
    """The library as export_captions sees it, narrowed to some photos: its search returns
    only theirs."""

    def __init__(self, library: Library, paths: list[str]) -> None:
        self.library = library
        self.paths = {os.path.abspath(path) for path in paths}

    def search(self, query: str = "", *, filter: str = "all", limit: int | None = None):
        found = self.library.search(query, filter=filter)
        return [entry for entry in found if os.path.abspath(entry.path) in self.paths]


class ExportDialog(QDialog):
    def __init__(self, parent: QWidget, captions, selected: list[str]) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export Captions")
        self.captions = captions
        self.selected = selected
        self.format = QComboBox()
        for name, label in FORMATS.items():
            self.format.addItem(label, name)
        count = len(selected)
        self.only_selected = QRadioButton(f"The {count} selected photo{'s' * (count != 1)}")
        self.every = QRadioButton("Every photo in the caption library")
        (self.only_selected if selected else self.every).setChecked(True)
        self.only_selected.setEnabled(bool(selected))
        self.include_model = QCheckBox("The model's caption where I wrote none")
        self.overwrite = QCheckBox("Replace .txt files and descriptions already there")
        form = QFormLayout()
        form.addRow("Write", self.format)
        form.addRow("Photos", self.only_selected)
        form.addRow("", self.every)
        form.addRow("", self.include_model)
        form.addRow("", self.overwrite)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        buttons.accepted.connect(self.export)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)

    def export(self, destination: str | None = None) -> None:
        """Write the captions; `destination` for the one-file formats (else asked for)."""
        from captioner.library.exchange import export_captions

        name = self.format.currentData()
        if name in FILE_FILTERS and destination is None:
            destination, _ = QFileDialog.getSaveFileName(
                self, "Export captions to", f"captions.{'json' if name == 'coco' else name}",
                FILE_FILTERS[name],
            )  # fmt: skip
            if not destination:
                return
        library = self.captions.library
        source = _Only(library, self.selected) if self.only_selected.isChecked() else library
        try:
            report = export_captions(
                source, name, destination, include_model=self.include_model.isChecked(),
                overwrite=self.overwrite.isChecked(),
            )  # fmt: skip
        except (LibraryError, OSError, ValueError) as error:
            QMessageBox.warning(self, "Export Captions", f"Nothing was exported: {error}")
            return
        message = f"Exported {report.written} caption{'s' * (report.written != 1)}"
        if report.kept:
            message += f"; {len(report.kept)} left as they were:\n" + "\n".join(report.kept[:20])
        self.parent().statusBar().showMessage(message.partition("\n")[0], 10000)
        if report.kept:
            QMessageBox.information(self, "Export Captions", message)
        self.accept()
