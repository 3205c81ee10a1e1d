"""Caption → Learn From My Captions…: the loaded model's decoder fine-tuned on the person's
captions in the library (captioner.learn), in a QThread, with progress, time left and Cancel.

The result is a new model directory beside the library ("<model> + my captions"), written whole
or not at all; the model it started from is never changed. The learner loads its own copy of the
model, so the caption worker's model is never touched while it captions. captioner.learn (and
with it torch) is imported in the learner's thread: opening this module costs nothing.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal, Slot
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from captioner.library import Library, LibraryError
from captioner.registry import LEARNED_MODELS_FOLDER

# From the torch-free registry: captioner.learn imports torch, which the window must not wait for.
LEARNED_FOLDER = LEARNED_MODELS_FOLDER
PROGRESS_STEPS = 1000


def learned_models(library_path: str | os.PathLike | None) -> list[str]:
    """The model directories learned from the library at `library_path`, by name."""
    if not library_path:
        return []
    folder = Path(library_path).parent / LEARNED_FOLDER
    if not folder.is_dir():
        return []
    return sorted(str(d) for d in folder.iterdir() if (d / "config.json").is_file())


def time_left(seconds: float | None) -> str:
    if seconds is None:
        return "estimating the time left…"
    if seconds < 60:
        return f"about {max(1, round(seconds))} s left"
    return f"about {round(seconds / 60)} min left"


class Learner(QObject):
    """learn_from_library in the learner's thread; cancel is the Event its loop checks."""

    progressed = Signal(object)  # captioner.learn.LearnProgress
    learned = Signal(object)  # captioner.learn.LearnResult
    failed = Signal(str, bool)  # why, cancelled
    done = Signal()  # after learned or failed: the thread may end

    def __init__(self, model_path: str, device: str, library: Library, settings=None) -> None:
        super().__init__()
        self.model_path, self.device, self.library = model_path, device, library
        self.settings = settings  # captioner.learn.LearnSettings, None for its defaults
        self.cancel = threading.Event()

    @Slot()
    def run(self) -> None:
        try:
            from captioner import Captioner
            from captioner.learn import LearnCancelled, LearnError, learn_from_library

            try:
                captioner = Captioner.load(self.model_path, device=self.device, backend="torch")
                extra = {} if self.settings is None else {"settings": self.settings}
                result = learn_from_library(
                    captioner, self.library, progress=self.progressed.emit, cancel=self.cancel,
                    **extra,
                )  # fmt: skip
            except LearnCancelled:
                self.failed.emit("Cancelled: nothing was written.", True)
            except LearnError as error:
                self.failed.emit(str(error), False)
            except Exception as error:  # a model or library problem: said, the app goes on
                self.failed.emit(f"learning failed ({type(error).__name__}: {error})", False)
            else:
                self.learned.emit(result)
        finally:
            self.done.emit()


class LearnDialog(QDialog):
    """Start, watch and cancel learning; at the end, what was learned and the new model."""

    model_learned = Signal(str)  # the new model's directory
    use_model = Signal(str)  # the person wants to caption with it now

    def __init__(
        self, parent: QWidget | None, library: Library, model_path: str, model_name: str,
        device: str = "auto", settings=None,
    ) -> None:  # fmt: skip
        super().__init__(parent)
        self.setWindowTitle("Learn from my captions")
        self.library, self.model_path, self.device = library, model_path, device
        self.settings = settings
        self.learner: Learner | None = None
        self.thread: QThread | None = None
        self.result = None  # captioner.learn.LearnResult, once learned
        self._close_when_done = False
        count = self._caption_count()
        self.intro = QLabel(
            f"Fine-tunes {model_name}'s sentences on the {count} caption"
            f"{'s' * (count != 1)} you wrote or accepted, and saves the result as a new model, "
            f"“{model_name} + my captions”. {model_name} itself is never changed. A tenth of "
            "your captions is held out to check that it learns and stops before it forgets."
        )
        self.intro.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, PROGRESS_STEPS)
        self.progress.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.hide()
        self.buttons = QDialogButtonBox()
        self.start_button = self.buttons.addButton("&Learn", QDialogButtonBox.ButtonRole.ApplyRole)
        self.start_button.clicked.connect(self.start)
        self.start_button.setEnabled(count > 0)
        self.use_button = QPushButton("&Use the New Model")
        self.buttons.addButton(self.use_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.use_button.hide()
        self.use_button.clicked.connect(self._use_new_model)
        self.cancel_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.cancel_button.clicked.connect(self.reject)
        if count == 0:
            self.status.setText(
                "There are none of your captions to learn from yet: write or accept some "
                "captions first (F2, Ctrl+Return)."
            )
        layout = QVBoxLayout(self)
        layout.addWidget(self.intro)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.summary)
        layout.addWidget(self.buttons)
        self.resize(520, self.sizeHint().height())

    def _caption_count(self) -> int:
        try:
            return len(self.library.search(filter="checked", captions=False))
        except LibraryError:
            return 0

    @property
    def running(self) -> bool:
        return self.thread is not None

    def start(self) -> None:
        if self.running:
            return
        self.result = None
        self.summary.hide()
        self.use_button.hide()
        self.progress.setValue(0)
        self.status.setText("Loading the model…")
        self.start_button.setEnabled(False)
        self.cancel_button.setText("&Cancel")
        self.learner = Learner(self.model_path, self.device, self.library, self.settings)
        self.thread = QThread(self)
        self.thread.setObjectName("learn-from-captions")
        self.learner.moveToThread(self.thread)
        self.thread.started.connect(self.learner.run)
        self.learner.progressed.connect(self._on_progress)
        self.learner.learned.connect(self._on_learned)
        self.learner.failed.connect(self._on_failed)
        self.learner.done.connect(self._on_done)
        self.thread.start()

    def cancel(self) -> None:
        """Stop learning at its next check (between batches): nothing is written."""
        if self.learner is not None:
            self.learner.cancel.set()
            self.status.setText("Cancelling…")
            self.cancel_button.setEnabled(False)

    def stop(self) -> None:
        """Cancel learning and wait for its thread (the window is closing)."""
        if self.running:
            self.learner.cancel.set()
            self.thread.quit()
            self.thread.wait()
            self._on_done()

    def reject(self) -> None:
        if self.running:  # Cancel, Esc or the window's close: stop, close once stopped
            self._close_when_done = True
            self.cancel()
            return
        super().reject()

    def _on_progress(self, update) -> None:
        self.progress.setValue(round(update.fraction * PROGRESS_STEPS))
        if update.stage == "encoding":
            what = "Reading your photos"
        else:
            loss = f", held-out loss {update.validation_loss:.3f}" * (
                update.validation_loss is not None
            )
            what = f"Learning: epoch {update.epoch}{loss}"
        self.status.setText(f"{what} — {time_left(update.seconds_left)}")

    def _on_learned(self, result) -> None:
        self.result = result
        self.progress.setValue(PROGRESS_STEPS)
        name = result.model_dir.name
        new_words = ", ".join(result.new_words[:12]) + "…" * (len(result.new_words) > 12)
        self.status.setText(f"Learned “{name}”.")
        self.summary.setText(
            f"Learned from {result.captions} of your captions "
            f"({result.validation_captions} held out to check it); {result.skipped} photo"
            f"{'s' * (result.skipped != 1)} skipped (gone or unreadable). Held-out loss per "
            f"word: {result.start_loss:.3f} before, {result.best_loss:.3f} after "
            f"({result.epochs} epochs)."
            + (f" New words: {new_words}." if new_words else "")
            + f"\n\nSaved in {result.model_dir}; it is listed in Settings → Model."
        )
        self.summary.show()
        self.use_button.show()
        self.model_learned.emit(str(result.model_dir))

    def _on_failed(self, reason: str, cancelled: bool) -> None:
        self.progress.setValue(0)
        self.status.setText(reason if cancelled else f"Could not learn: {reason}")

    def _on_done(self) -> None:
        if self.thread is None:  # stopped already, by stop()
            return
        self.thread.quit()
        self.thread.wait()
        self.thread.deleteLater()
        self.learner.deleteLater()
        self.thread = self.learner = None
        self.start_button.setEnabled(self._caption_count() > 0)
        self.start_button.setText("&Learn Again" if self.result is not None else "&Learn")
        self.cancel_button.setEnabled(True)
        self.cancel_button.setText("&Close")
        if self._close_when_done:
            super().reject()

    def _use_new_model(self) -> None:
        if self.result is not None:
            self.use_model.emit(str(self.result.model_dir))
        self.accept()
