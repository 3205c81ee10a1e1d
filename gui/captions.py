"""The caption library in the app: what the library knows of the listed photos, the person's
edits written to it (and undone) one by one, and what happens when it cannot be written.

Every edit is written synchronously, in the UI thread: one SQLite transaction of one edit takes
milliseconds, and an edit is committed before the window shows it as saved. When the library
cannot be written (disk full, read-only, a vanished drive) the edit is kept in memory, shown as
made, and written, in order, on the next edit or by a retry timer; `unsaved` counts what waits.
Each caption change is a `CaptionChange` on the window's QUndoStack, so Ctrl+Z and Ctrl+Shift+Z
walk back and forth across photos, each step one more entry in the library's history.

Nothing here imports torch; captioner.library is torch-free.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QUndoCommand

from captioner.library import (
    Caption,
    CaptionRefused,
    Entry,
    Library,
    LibraryCorrupt,
    LibraryError,
    LibraryUnavailable,
    ModelKey,
    ModelResult,
)

RETRY_MS = 5000  # how often edits kept in memory are tried again


@dataclass(frozen=True)
class _Write:
    """One edit waiting to be written: a new caption, or "undo" (take the last one back)."""

    path: str
    text: str | None  # None: undo
    source: str = "typed"
    restores: Caption | None = None  # an undo: the caption it brings back, shown meanwhile


class CaptionStore(QObject):
    """The app's side of the caption library (captioner.library): entries of the listed photos,
    edits, model results, and whether the library can be written now."""

    entry_changed = Signal(str)  # path whose person or model caption changed
    availability_changed = Signal(str)  # why edits are not being saved; "" when they are

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.library: Library | None = None
        self.path: Path | None = None
        self.problem = ""  # why edits cannot be written now; "" when they can
        self._entries: dict[str, Entry] = {}
        self._pending: list[_Write] = []
        self._adopted: set[str] = set()  # photos whose own captions were looked for
        self.sidecars = False  # keep photo.txt in step with the person's caption
        self._retry = QTimer(self, interval=RETRY_MS)
        self._retry.timeout.connect(self.flush)

    # Opening and closing.

    def open(self, path: str | os.PathLike | None) -> None:
        """Open the library at `path` (None: the user's). Raises LibraryCorrupt for a file that
        is not a caption library (the caller asks the person, then `set_aside_and_open`);
        another LibraryError leaves the app without a library, edits kept in memory."""
        self.path = Path(path) if path is not None else None
        try:
            self.library = Library.open(path)
        except LibraryCorrupt:
            raise
        except LibraryError as error:
            self.library = None
            self._set_problem(f"The caption library cannot be opened: {error}")
            return
        if self.library.read_only:
            self._set_problem(f"The caption library is read-only: {self.library.notice}")
        else:
            self._set_problem("")

    def set_aside_and_open(self) -> Path:
        """Rename the damaged library file out of the way (never deleted) and start a new one
        there; returns the file's new name. Only when the person agreed."""
        assert self.path is not None
        moved = Library.set_aside(self.path)
        self.open(self.path)
        return moved

    def run_without_library(self, why: str) -> None:
        self.library = None
        self._set_problem(why)

    def close(self) -> None:
        self._retry.stop()
        if self.library is not None:
            self.library.close()
            self.library = None

    # Reading.

    def load(self, paths: list[str], model: ModelKey | None = None) -> dict[str, Entry]:
        """What the library knows of `paths` (with `model`'s caption when given), remembered
        for entry(); the person's captions of photos not in the library yet are adopted from
        their sidecar .txt or their own description. Returns the entries."""
        if self.library is None or not paths:
            return {path: self.entry(path) for path in paths}
        try:
            found = self.library.lookup(paths, model=model)
            for path, entry in found.items():
                if entry.on_disk == "unknown" and path not in self._adopted:
                    self._adopted.add(path)
                    if self._adopt(path):
                        found[path] = self.library.lookup([path], model=model)[path]
        except LibraryUnavailable as error:
            self._set_problem(f"The caption library cannot be read now: {error}")
            return {path: self.entry(path) for path in paths}
        except LibraryError as error:
            self._set_problem(f"The caption library cannot be read: {error}")
            return {path: self.entry(path) for path in paths}
        for path, entry in found.items():
            self._entries[path] = self._with_pending(entry)
        return {path: self._entries[path] for path in paths}

    def _adopt(self, path: str) -> bool:
        if self.library.read_only:
            return False
        try:
            return self.library.adopt_existing(path) is not None
        except CaptionRefused:
            return False  # a sidecar that cannot be a caption: the model's is shown instead
        except LibraryUnavailable:
            return False

    def missing_under(
        self, folders: list[str], recursive: bool, listed: list[str] = ()
    ) -> list[str]:
        """The photos the library knows in `folders` (and their subfolders when `recursive`)
        whose files are gone: their rows stay in the list, with their captions. `listed`: the
        photos found there, not looked at again."""
        if self.library is None or not folders:
            return []
        roots = [os.path.abspath(folder) for folder in folders]
        try:
            known = self.library.matching_paths()
        except LibraryError:
            return []
        found = set(listed)
        missing = []
        for path in known:
            if path in found:
                continue
            parent = os.path.dirname(path)
            inside = any(
                parent == root or (recursive and parent.startswith(root + os.sep)) for root in roots
            )
            if inside and not os.path.lexists(path):
                missing.append(path)
        return missing

    def entry(self, path: str) -> Entry:
        return self._entries.get(path) or Entry(path, None, None, on_disk="unknown")

    def person(self, path: str) -> Caption | None:
        """The person's caption in force (None: none, or an edit took the last one back)."""
        person = self.entry(path).person
        return person if person is not None and person.text is not None else None

    def search(self, query: str, filter: str) -> set[str] | None:
        """The absolute paths of the library's photos matching `query` and `filter`; None when
        there is no library to search."""
        if self.library is None:
            return None
        try:
            return {os.path.abspath(e.path) for e in self.library.search(query, filter=filter)}
        except LibraryError as error:
            self._set_problem(f"The caption library cannot be searched now: {error}")
            return None

    # Writing.

    def add_model_result(self, path: str, result, model: ModelKey, file=None) -> None:
        """The model's caption of a photo (a CaptionResult), stored for next time; the person's
        is untouched. When the library cannot be written it is dropped: the model can write
        it again."""
        if self.library is None or self.library.read_only:
            return
        stored = replace(ModelResult.from_caption_result(result, file), path=path)
        try:
            self.library.add_model_results([stored], model)
            fresh = self.library.lookup([path], model=model)[path]
        except LibraryError:
            return
        self._entries[path] = self._with_pending(fresh)
        self.entry_changed.emit(path)

    def write(
        self, path: str, text: str | None, source: str = "typed", restores: Caption | None = None
    ) -> None:
        """Make `text` the photo's caption (None: take the last edit back, which `restores`
        the caption before it). Committed to the library before this returns, or kept in memory
        when it cannot be (see `unsaved`). Raises CaptionRefused for a caption the library
        would never take."""
        if text is not None:
            from captioner.library.records import checked_caption

            text = checked_caption(text)
            if not text:
                raise CaptionRefused("a caption cannot be empty")
        self._pending.append(_Write(path, text, source, restores))
        self.flush()
        if self._pending:  # not written: show it as made, from memory
            self._entries[path] = self._with_pending(self.entry(path))
        self.entry_changed.emit(path)

    @property
    def unsaved(self) -> int:
        return len(self._pending)

    def flush(self) -> bool:
        """Write the edits kept in memory, oldest first; True when none is left."""
        written: list[_Write] = []
        while self._pending:
            edit = self._pending[0]
            try:
                if self.library is None:
                    raise LibraryUnavailable(self.problem or "no caption library is open")
                if edit.text is None:
                    self.library.undo(edit.path)
                else:
                    self.library.set_caption(edit.path, edit.text, source=edit.source)
            except LibraryUnavailable as error:
                self._set_problem(_unavailable_text(error, len(self._pending)))
                self._retry.start()
                break
            except LibraryError:
                pass  # nothing to undo any more (written elsewhere): the edit is moot
            written.append(self._pending.pop(0))
        if not self._pending:
            self._retry.stop()
            if self.library is not None and not self.library.read_only:
                self._set_problem("")
        for path in dict.fromkeys(edit.path for edit in written):
            self._refresh(path)
        return not self._pending

    def _refresh(self, path: str) -> None:
        try:
            entry = self.library.lookup([path])[path]
        except LibraryError:
            return
        previous = self._entries.get(path)
        if previous is not None and previous.model is not None and entry.model is not None:
            entry = replace(entry, model=previous.model)  # keep the current model's caption
        self._entries[path] = self._with_pending(entry)
        self.entry_changed.emit(path)
        if self.sidecars:
            self._write_sidecar(path)

    def _write_sidecar(self, path: str) -> None:
        """photo.txt beside the photo, in step with the person's caption (the option)."""
        from captioner.photos.atomic import write_atomically
        from captioner.photos.metadata import sidecar_path

        person = self.person(path)
        if person is not None:
            # A photo on a read-only medium: the library still has the caption.
            with contextlib.suppress(OSError):
                write_atomically(sidecar_path(path), f"{person.text}\n".encode())

    def _with_pending(self, entry: Entry) -> Entry:
        """`entry` with the edits still in memory applied, as the person sees it."""
        if not self._pending:
            return entry
        person = entry.person
        for edit in self._pending:
            if edit.path == entry.path:
                person = (
                    edit.restores
                    if edit.text is None
                    else Caption(edit.text, edit.source, time.time())
                )
        return replace(entry, person=person)

    def _set_problem(self, problem: str) -> None:
        if problem != self.problem:
            self.problem = problem
            self.availability_changed.emit(problem)


def _unavailable_text(error: LibraryError, waiting: int) -> str:
    edits = f"{waiting} caption edit{'s' * (waiting != 1)}"
    return (
        f"Your captions are not being saved: the caption library cannot be written ({error}). "
        f"{edits} kept in memory; they will be written as soon as it can."
    )


class CaptionChange(QUndoCommand):
    """One change of a photo's caption, as the undo stack holds it: redo writes the new caption,
    undo takes it back (the library keeps both steps in the photo's history)."""

    def __init__(self, store: CaptionStore, path: str, text: str, source: str, label: str):
        super().__init__(f"{label} ({os.path.basename(path)})")
        self.store = store
        self.path = path
        self.text = text
        self.source = source
        self.before = store.person(path)

    def redo(self) -> None:
        self.store.write(self.path, self.text, self.source)

    def undo(self) -> None:
        self.store.write(self.path, None, restores=self.before)
