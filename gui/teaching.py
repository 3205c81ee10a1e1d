"""Taught words in the app: teaching the shown photo's thing a word, forgetting, and keeping the
loaded model's taught words the same as the caption library's.

The library holds the taught examples (captioner.library's TaughtRecord); the model in the worker
thread says them. Teaching encodes the photo, so it runs as a job of the caption worker, between
two captions, never in the UI thread. Whenever the library's examples change, the worker gets all
of them again and the session a new model generation: every caption made so far is stale, and
the caption library keys the new ones by an identity that includes the taught words
(Captioner.captions_identity), so a caption from before the word was taught is never shown as
current. `changed` tells the window to show the photo again, captioned with the word.
"""

from __future__ import annotations

import os

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QWidget

from captioner.library import LibraryError, TaughtRecord
from gui.captions import CaptionStore
from gui.dialogs.teach_word import ask_word
from gui.session import Session
from gui.worker import ModelInfo, TaughtApplied, TeachFailure, TeachOutcome

MESSAGE_MS = 10000


class Teaching(QObject):
    changed = Signal()  # the model says other words now: show the photo again
    words_changed = Signal()  # the taught words or whether they apply changed (the dock)
    taught_word = Signal(str, str)  # word, path: stored in the library
    message = Signal(str, int)  # for the status bar: text, milliseconds

    def __init__(self, captions: CaptionStore, session: Session, parent=None) -> None:
        super().__init__(parent)
        self.captions = captions
        self.session = session
        worker = session.worker
        worker.taught.connect(self._on_taught)
        worker.teach_failed.connect(self._on_teach_failed)
        worker.taught_applied.connect(self._on_taught_applied)
        session.model_loaded.connect(lambda _info: self.words_changed.emit())
        session.model_failed.connect(lambda _message: self.words_changed.emit())

    # What the library holds, and whether the model uses it.

    def records(self) -> list[TaughtRecord]:
        """The library's taught examples, oldest first; none without a readable library."""
        library = self.captions.library
        if library is None:
            return []
        try:
            return library.taught()
        except LibraryError as error:
            self.message.emit(f"The taught words cannot be read: {error}", MESSAGE_MS)
            return []

    def not_applied(self) -> str:
        """Why the loaded model does not say (some of) the taught words; "" when it does, or
        when nothing is taught."""
        info = self.session.model_info
        if info is None or not self.records():
            return ""
        if not info.can_learn_words:
            return (
                f"Taught words are not used: the model {info.name} has no copy path, so it "
                "cannot say them. Load a copy model, such as Default, to use them."
            )
        if info.taught_note:
            return f"Some {info.taught_note}."
        return ""

    def library_opened(self) -> None:
        """A caption library was opened: the model says its taught words (at once when a
        model is loaded, else when it is)."""
        self.session.worker.set_taught(self.records())
        if self.session.model_info is not None:
            self._apply()
        else:
            self.words_changed.emit()

    # Teaching and forgetting.

    def ask_and_teach(self, parent: QWidget, word: str, image: QImage | None) -> bool:
        """ "Teach: this photo shows a ___" on the shown photo: ask for the word (starting from
        `word`) and a box on `image`, then teach it. False when nothing was taught."""
        path = self.session.current_path
        problem = self._cannot_teach(word or "?", path, self.session.model_info)
        if problem:  # said before asking: the person should not type a word for nothing
            self.message.emit(problem, MESSAGE_MS)
            return False
        answer = ask_word(parent, word, image)
        return answer is not None and self.teach(answer[0], path, answer[1])

    def teach(
        self, word: str, path: str | None, box: tuple[float, float, float, float] | None = None
    ) -> bool:
        """Teach `word` from the photo `path` (the thing in `box`, fractions of its size, or
        where the model looks when it names it). False, with a message, when it cannot be."""
        info = self.session.model_info
        problem = self._cannot_teach(word, path, info)
        if problem:
            self.message.emit(problem, MESSAGE_MS)
            return False
        self.session.worker.teach(word, path, box)
        self.message.emit(f"Teaching “{' '.join(word.split())}”…", MESSAGE_MS)
        return True

    def _cannot_teach(self, word: str, path: str | None, info: ModelInfo | None) -> str:
        if path is None:
            return "Open a photo of the thing to teach its word"
        if not word.strip():
            return "Type the word for what the photo shows"
        if info is None:
            return "Wait for the model to load, then teach the word"
        if not info.can_learn_words:
            return (
                f"The model {info.name} cannot learn words: it has no copy path. Load a copy "
                "model, such as Default, to teach it words."
            )
        library = self.captions.library
        if library is None or library.read_only:
            why = self.captions.problem or "no caption library is open"
            return f"Taught words are kept in the caption library, which cannot be written: {why}"
        if not os.path.isfile(path):
            return f"{os.path.basename(path)} is no longer on disk: teach from a photo that is"
        return ""

    def forget(self, word: str) -> None:
        """Forget `word` and every example of it."""
        self._forget(word, None)

    def remove_example(self, word: str, source: str) -> None:
        """Forget the examples of `word` taught from the photo `source`."""
        self._forget(word, source)

    def _forget(self, word: str, source: str | None) -> None:
        library = self.captions.library
        if library is None:
            return
        try:
            removed = library.forget_taught(word, source)
        except LibraryError as error:
            self.message.emit(f"Could not forget “{word}”: {error}", MESSAGE_MS)
            return
        if removed:
            what = f"“{word}”" if source is None else f"an example of “{word}”"
            self.message.emit(f"Forgot {what}", MESSAGE_MS)
            self._apply()

    # The worker's answers.

    def _on_taught(self, outcome: TeachOutcome) -> None:
        # Kept whatever happened since it was asked: the examples are the encoder's features
        # (their encoder named in each), valid for every model that shares it.
        name = os.path.basename(outcome.path)
        if not outcome.records:
            self.message.emit(f"{name} is already an example of “{outcome.word}”", MESSAGE_MS)
            return
        word = outcome.records[0].word  # as check_word cleaned it
        try:
            self.captions.library.add_taught(outcome.records)
        except (AttributeError, LibraryError) as error:  # the library was closed meanwhile
            self.message.emit(f"Could not keep “{word}” in the caption library: {error}", 15000)
            self._apply()  # the model forgets what the library did not keep
            return
        self.message.emit(f"Taught “{word}” from {name}", MESSAGE_MS)
        self._apply()
        self.taught_word.emit(word, outcome.path)

    def _on_teach_failed(self, failure: TeachFailure) -> None:
        word = " ".join(failure.word.split())
        shown = word if len(word) <= 30 else word[:30] + "…"
        self.message.emit(f"Could not teach “{shown}”: {failure.reason}", 15000)

    def _apply(self) -> None:
        """Give the worker the library's examples; with a model loaded, as a new generation
        (the captions made so far are out of date)."""
        self.session.use_taught(self.records())
        self.words_changed.emit()

    def _on_taught_applied(self, applied: TaughtApplied) -> None:
        if not self.session.taught_applied(applied):
            return
        self.words_changed.emit()
        self.changed.emit()
