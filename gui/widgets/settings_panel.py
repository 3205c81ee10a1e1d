"""Settings: decoding options (applied at once, only decode re-runs), device and model.

The model is a shipped one (Default, Shapes), a directory or a Hugging Face Hub model, chosen
from one list; its last two entries open a directory dialog and ask for a Hub model's name.
"""

from __future__ import annotations

import dataclasses
import os

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QLabel,
    QLineEdit,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from captioner.backends import BACKENDS, PRECISIONS
from captioner.options import DecodeOptions
from captioner.registry import is_hub_model, is_model_name
from gui.dialogs.hub_model import ask_hub_model
from gui.settings import DEVICES, shipped_model_labels
from gui.widgets.elided_label import ElidedLabel
from gui.worker import ModelInfo

APPLY_DELAY_MS = 250  # let a user spin through values before decoding again
BROWSE = "<browse>"  # the model list's next-to-last entry: choose a directory
HUB = "<hub>"  # its last entry: type a Hub model's name


class SettingsPanel(QWidget):
    options_changed = Signal(object)  # DecodeOptions
    device_changed = Signal(str)
    backend_changed = Signal(str)
    precision_changed = Signal(str)
    model_chosen = Signal(str)  # a shipped model's name, a model directory or "hf:OWNER/NAME"

    def __init__(
        self,
        options: DecodeOptions,
        device: str,
        backend: str,
        model: str,
        parent=None,
        precision: str = "float",
    ) -> None:
        super().__init__(parent)
        limits = DecodeOptions.LIMITS
        self.beam_size = _spin_box(
            limits["beam_size"], "How many captions beam search keeps; 1 is greedy decoding"
        )
        self.max_length = _spin_box(limits["max_length"], suffix=" words")
        self.length_penalty = QDoubleSpinBox()
        self.length_penalty.setRange(*limits["length_penalty"])
        self.length_penalty.setSingleStep(0.1)
        self.length_penalty.setDecimals(2)
        self.length_penalty.setToolTip(
            "0 ranks by probability (short captions win); more favours longer ones"
        )
        self.no_repeat_ngram_size = _spin_box(
            limits["no_repeat_ngram_size"],
            "Never repeat a run of this many words in a caption (2 stops 'a dog and a dog')",
            suffix=" words",
            off="off",
        )
        self.consensus_samples = _spin_box(
            limits["consensus_samples"],
            "Draw this many captions from the model and show the beam caption that agrees most "
            "with them: the model's usual description rather than its single likeliest wording",
            off="off",
        )
        self.name_things = _spin_box(
            limits["name_things"],
            "A copy model's caption names this many of the things it is sure of before it "
            "ends ('a dog and a bicycle'); on photos it also names more wrong things",
            off="off",
        )
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.device.setCurrentText(device)
        self.backend = QComboBox()
        self.backend.addItems(BACKENDS)
        self.backend.setCurrentText(backend)
        self.backend.setToolTip(
            "auto: ONNX Runtime on the CPU (faster), PyTorch on a GPU; the same captions either way"
        )
        self.precision = QComboBox()
        self.precision.addItems(PRECISIONS)
        self.precision.setCurrentText(precision)
        self.precision.setToolTip(
            "int8: the ONNX encoder in 8 bits on the CPU, faster, captions can differ (built "
            "once, a few seconds, while the app goes on); auto: int8 only where it measured "
            "as good as float"
        )

        self.model_choice = QComboBox()
        self.model_choice.setAccessibleName("Model")
        self._shipped = shipped_model_labels()
        for name, label in self._shipped.items():
            self.model_choice.addItem(label, name)
        self.model_choice.addItem("Model directory…", BROWSE)
        self.model_choice.addItem("Hugging Face Hub model…", HUB)
        self.model_choice.setItemData(
            self.model_choice.count() - 1,
            "Download a model by name (hf:OWNER/NAME or hf:OWNER/NAME@REVISION), or read it "
            "from the Hugging Face cache",
            Qt.ItemDataRole.ToolTipRole,
        )
        # As wide as a short label: the long ones are read in the open list (a wide box cut
        # the panel off on the right of a narrow window).
        self.model_choice.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.model_choice.setMinimumContentsLength(12)
        self.model_choice.activated.connect(self._on_model_activated)
        self._model = ""
        self._learned: list[str] = []  # models learned from the person's captions, listed
        self.set_model(model)
        self.model_path = QLineEdit()
        self.model_path.setReadOnly(True)
        self.model_path.setAccessibleName("Model directory")
        # A model's name and a load error are the user's text, of any length: cut to one line
        # (whole in the tooltip), so they never widen the window.
        self.model_name = ElidedLabel("–")
        self.model_vocab = QLabel("–")
        self.model_encoder = QLabel("–")
        self.model_encoder.setWordWrap(True)
        self.model_decoder = QLabel("–")
        self.model_decoder.setWordWrap(True)
        self.model_status = ElidedLabel()

        decoding = QGroupBox("Decoding")
        form = QFormLayout(decoding)
        form.addRow("&Beam size", self.beam_size)
        form.addRow("&Maximum length", self.max_length)
        form.addRow("&Length penalty", self.length_penalty)
        form.addRow("No &repeated words", self.no_repeat_ngram_size)
        form.addRow("&Consensus samples", self.consensus_samples)
        form.addRow("Name sure &things", self.name_things)
        form.addRow("&Device", self.device)
        form.addRow("Bac&kend", self.backend)
        form.addRow("&Precision", self.precision)

        model_box = QGroupBox("Model")
        model_form = QFormLayout(model_box)
        model_form.addRow("M&odel", self.model_choice)
        model_form.addRow("Directory", self.model_path)
        model_form.addRow("Name", self.model_name)
        model_form.addRow("Vocabulary", self.model_vocab)
        model_form.addRow("Encoder", self.model_encoder)
        model_form.addRow("Decoder", self.model_decoder)
        model_form.addRow(self.model_status)

        # In a scroll area: a low window scrolls the panel rather than cutting it off.
        contents = QWidget()
        layout = QVBoxLayout(contents)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.addWidget(decoding)
        layout.addWidget(model_box)
        layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(contents)
        scrollbar = scroll.verticalScrollBar().sizeHint().width()
        scroll.setMinimumWidth(contents.minimumSizeHint().width() + scrollbar)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

        self.set_options(options)
        self._apply_timer = QTimer(self, singleShot=True, interval=APPLY_DELAY_MS)
        self._apply_timer.timeout.connect(lambda: self.options_changed.emit(self.options()))
        for spin in self._option_spins().values():
            spin.valueChanged.connect(self._apply_timer.start)
        self.device.currentTextChanged.connect(self.device_changed)
        self.backend.currentTextChanged.connect(self.backend_changed)
        self.precision.currentTextChanged.connect(self.precision_changed)

    def _option_spins(self) -> dict[str, QSpinBox | QDoubleSpinBox]:
        """DecodeOptions' field name -> its spin box."""
        return {
            field.name: getattr(self, field.name) for field in dataclasses.fields(DecodeOptions)
        }

    def options(self) -> DecodeOptions:
        # round: a QDoubleSpinBox hands back 0.30000000000000004 for 0.3
        return DecodeOptions(
            **{name: round(spin.value(), 2) for name, spin in self._option_spins().items()}
        )

    def set_options(self, options: DecodeOptions) -> None:
        for name, spin in self._option_spins().items():
            spin.setValue(getattr(options, name))

    def set_model(self, model: str) -> None:
        """Show `model` (a shipped name, a directory or a Hub model) as chosen, without
        announcing it."""
        self._model = model
        index = self.model_choice.findData(model)
        if index < 0:  # a directory or Hub model: one entry for it, above "Model directory…"
            other = self.model_choice.findData(BROWSE)
            above = self.model_choice.itemData(other - 1)
            if above not in self._shipped and above not in self._learned:
                self.model_choice.removeItem(other - 1)
                other -= 1
            label = model if is_hub_model(model) else os.path.basename(model) or model
            self.model_choice.insertItem(other, label, model)
            self.model_choice.setItemData(other, model, Qt.ItemDataRole.ToolTipRole)
            index = other
        self.model_choice.setCurrentIndex(index)

    def add_learned_model(self, path: str) -> None:
        """List a model learned from the person's captions (its directory) under the shipped
        ones, for good (another directory's entry is replaced when a third is chosen)."""
        if path in self._learned:
            return
        existing = self.model_choice.findData(path)
        if existing >= 0:
            self.model_choice.removeItem(existing)
        self._learned.append(path)
        at = len(self._shipped) + len(self._learned) - 1
        self.model_choice.insertItem(at, os.path.basename(path), path)
        self.model_choice.setItemData(at, path, Qt.ItemDataRole.ToolTipRole)
        self.set_model(self._model)

    def choose_model_dir(self) -> None:
        start = "" if is_model_name(self._model) else self._model
        path = QFileDialog.getExistingDirectory(self, "Choose a trained model directory", start)
        if path:
            self._choose(path)
        else:
            self.set_model(self._model)  # leave "Model directory…" for what is in use

    def choose_hub_model(self) -> None:
        """Ask for a Hub model's name; the worker downloads it (or reads the cache) when it
        loads, and a bad name or a failed download is reported as any failed load is."""
        name = ask_hub_model(self, self._model)
        if name is not None:
            self._choose(name)
        else:
            self.set_model(self._model)  # leave "Hugging Face Hub model…" for what is in use

    def _on_model_activated(self, index: int) -> None:
        chosen = self.model_choice.itemData(index)
        if chosen == BROWSE:
            self.choose_model_dir()
        elif chosen == HUB:
            self.choose_hub_model()
        elif chosen != self._model:
            self._choose(chosen)

    def _choose(self, model: str) -> None:
        self.set_model(model)
        self.model_chosen.emit(model)

    def show_model_loading(self) -> None:
        for label in (self.model_name, self.model_vocab, self.model_encoder, self.model_decoder):
            label.setText("…")
        if is_hub_model(self._model):
            self.model_status.setText(f"Fetching {self._model} (the Hub, or its cache)…")
        else:
            self.model_status.setText("Loading the model…")

    def show_model(self, info: ModelInfo | None, error: str = "") -> None:
        if info is None:
            for label in (
                self.model_name,
                self.model_vocab,
                self.model_encoder,
                self.model_decoder,
            ):
                label.setText("–")
            self.model_status.setText(f"No model loaded: {error}" if error else "No model loaded")
            return
        self.model_name.setText(info.name)
        self.model_vocab.setText(f"{info.vocab_size:,} words")
        self.model_encoder.setText(info.encoder)
        self.model_decoder.setText(f"{info.cell.upper()} with soft attention, on {info.device}")
        self.model_status.setText("")
        self.set_model(info.model)
        self.model_path.setText(info.path)
        self.model_path.setToolTip(info.path)


def _spin_box(
    limits: tuple[int, int], tooltip: str = "", *, suffix: str = "", off: str = ""
) -> QSpinBox:
    """A spin box for a whole-number decoding option; `off` names its lowest value."""
    box = QSpinBox()
    box.setRange(*limits)
    box.setSuffix(suffix)
    box.setSpecialValueText(off)
    box.setToolTip(tooltip)
    return box
