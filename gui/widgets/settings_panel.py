"""Settings: decoding options (applied at once, only decode re-runs), device and model."""

from __future__ import annotations

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from gui.settings import DEVICES, DecodeOptions
from gui.worker import ModelInfo

APPLY_DELAY_MS = 250  # let a user spin through values before decoding again


class SettingsPanel(QWidget):
    options_changed = Signal(object)  # DecodeOptions
    device_changed = Signal(str)
    model_dir_chosen = Signal(str)  # "" for the default model

    def __init__(self, options: DecodeOptions, device: str, model_dir: str, parent=None) -> None:
        super().__init__(parent)
        self.beam_size = QSpinBox()
        self.beam_size.setRange(1, 20)
        self.beam_size.setToolTip("How many captions beam search keeps; 1 is greedy decoding")
        self.max_length = QSpinBox()
        self.max_length.setRange(1, 100)
        self.max_length.setSuffix(" words")
        self.length_penalty = QDoubleSpinBox()
        self.length_penalty.setRange(0.0, 5.0)
        self.length_penalty.setSingleStep(0.1)
        self.length_penalty.setDecimals(2)
        self.length_penalty.setToolTip(
            "0 ranks by probability (short captions win); more favours longer ones"
        )
        self.consensus_samples = QSpinBox()
        self.consensus_samples.setRange(0, 100)
        self.consensus_samples.setSpecialValueText("off")
        self.consensus_samples.setToolTip(
            "Draw this many captions from the model and show the beam caption that agrees most "
            "with them: the model's usual description rather than its single likeliest wording"
        )
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.device.setCurrentText(device)

        self.model_path = QLineEdit(model_dir)
        self.model_path.setReadOnly(True)
        self.model_path.setPlaceholderText("default model")
        self.model_path.setAccessibleName("Model directory")
        browse = QPushButton("&Browse…")
        browse.clicked.connect(self.choose_model_dir)
        use_default = QPushButton("De&fault")
        use_default.setToolTip("Use the default model shipped with captioner")
        use_default.clicked.connect(lambda: self._set_model_dir(""))
        self.model_name = QLabel("–")
        self.model_vocab = QLabel("–")
        self.model_encoder = QLabel("–")
        self.model_encoder.setWordWrap(True)
        self.model_decoder = QLabel("–")
        self.model_status = QLabel()
        self.model_status.setWordWrap(True)

        decoding = QGroupBox("Decoding")
        form = QFormLayout(decoding)
        form.addRow("&Beam size", self.beam_size)
        form.addRow("&Maximum length", self.max_length)
        form.addRow("&Length penalty", self.length_penalty)
        form.addRow("&Consensus samples", self.consensus_samples)
        form.addRow("&Device", self.device)

        model = QGroupBox("Model")
        model_form = QFormLayout(model)
        buttons = QHBoxLayout()
        buttons.addWidget(browse)
        buttons.addWidget(use_default)
        buttons.addStretch(1)
        model_form.addRow("Directory", self.model_path)
        model_form.addRow("", buttons)
        model_form.addRow("Name", self.model_name)
        model_form.addRow("Vocabulary", self.model_vocab)
        model_form.addRow("Encoder", self.model_encoder)
        model_form.addRow("Decoder", self.model_decoder)
        model_form.addRow(self.model_status)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.addWidget(decoding)
        layout.addWidget(model)
        layout.addStretch(1)

        self.set_options(options)
        self._apply_timer = QTimer(self, singleShot=True, interval=APPLY_DELAY_MS)
        self._apply_timer.timeout.connect(lambda: self.options_changed.emit(self.options()))
        for spin in (self.beam_size, self.max_length, self.length_penalty, self.consensus_samples):
            spin.valueChanged.connect(self._apply_timer.start)
        self.device.currentTextChanged.connect(self.device_changed)

    def options(self) -> DecodeOptions:
        return DecodeOptions(
            beam_size=self.beam_size.value(),
            max_length=self.max_length.value(),
            length_penalty=round(self.length_penalty.value(), 2),
            consensus_samples=self.consensus_samples.value(),
        )

    def set_options(self, options: DecodeOptions) -> None:
        self.beam_size.setValue(options.beam_size)
        self.max_length.setValue(options.max_length)
        self.length_penalty.setValue(options.length_penalty)
        self.consensus_samples.setValue(options.consensus_samples)

    def choose_model_dir(self) -> None:
        path = QFileDialog.getExistingDirectory(
            self, "Choose a trained model directory", self.model_path.text()
        )
        if path:
            self._set_model_dir(path)

    def _set_model_dir(self, path: str) -> None:
        self.model_path.setText(path)
        self.model_dir_chosen.emit(path)

    def show_model_loading(self) -> None:
        for label in (self.model_name, self.model_vocab, self.model_encoder, self.model_decoder):
            label.setText("…")
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
        self.model_path.setText("" if info.is_default else info.path)
        self.model_path.setToolTip(info.path)
