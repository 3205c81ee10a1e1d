"""Reviewing captions: which caption of the shown photo is on screen (the person's as written,
else the model's beam they took, else the model's best), editing it, accepting it, taking an
Alternative, undo and redo across photos, "next photo not checked", and the search filter on
the photo list.

`CaptionReview` owns the QUndoStack (each change a `CaptionChange` of gui/captions.py) and works
on the widgets the window built and hands it; the window connects the actions and signals to it.
What the library knows of the listed photos comes through the `CaptionStore`.
"""

from __future__ import annotations

import os
import unicodedata

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from captioner.library import CaptionRefused, ModelCaption, ModelKey
from captioner.library.records import checked_caption, options_key
from gui.captions import CaptionChange, CaptionStore
from gui.models.image_list import ImageItem, ImageListModel, Status
from gui.session import Session
from gui.widgets.banner import NO_MODEL
from gui.widgets.caption_panel import BeamList, CaptionPanel, format_score
from gui.widgets.image_list import ImageListView
from gui.widgets.lstm_panel import LstmPanel
from gui.widgets.viewer import ImageViewer
from gui.word_heatmaps import WordHeatmaps
from gui.worker import CaptionOutcome

# Where a person's caption came from, as the caption panel says it.
CAPTION_ORIGINS = {
    "typed": "Your caption",
    "sidecar": "Your caption, from the photo's .txt file",
    "xmp": "Your caption, from the photo's description (XMP)",
    "exif": "Your caption, from the photo's description (EXIF)",
    "iptc": "Your caption, from the photo's description (IPTC)",
}


class CaptionReview(QObject):
    """The shown photo's caption and every change of a caption, across photos."""

    message = Signal(str, int)  # for the status bar: text, milliseconds
    caption_shown = Signal(str)  # path: its caption is on screen
    actions_changed = Signal()  # what the window's actions can do may have changed

    def __init__(
        self,
        captions: CaptionStore,
        session: Session,
        image_model: ImageListModel,
        image_list: ImageListView,
        caption_panel: CaptionPanel,
        beam_list: BeamList,
        lstm_panel: LstmPanel,
        heatmaps: WordHeatmaps,
        viewer: ImageViewer,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.captions = captions
        self.session = session
        self.image_model = image_model
        self.image_list = image_list
        self.caption_panel = caption_panel
        self.words = caption_panel.words
        self.beam_list = beam_list
        self.lstm_panel = lstm_panel
        self.heatmaps = heatmaps
        self.viewer = viewer
        self.undo_stack = QUndoStack(self)  # every caption change, across photos
        self.editing_path: str | None = None  # the photo whose caption is being written
        self.beam_texts: list[str] = []  # the Alternatives listed, best first
        self.maps_asked: str | None = None  # the library-shown photo the model was asked for
        captions.entry_changed.connect(self._on_entry_changed)
        caption_panel.editor.committed.connect(self.finish_editing)
        caption_panel.editor.cancelled.connect(self.close_editor)
        self.words.edit_requested.connect(self.start_editing)
        self.words.word_hovered.connect(self.want_maps)
        self.words.word_selected.connect(self.want_maps)
        beam_list.beam_chosen.connect(self.show_beam)
        beam_list.beam_taken.connect(self.take_beam)

    def _say(self, text: str, ms: int) -> None:
        self.message.emit(text, ms)

    # What the library knows of the listed photos.

    @property
    def model_key(self) -> ModelKey | None:
        """The model and options captions are made with now; None until a model is loaded."""
        info = self.session.model_info
        if info is None or not info.identity:
            return None
        return ModelKey(info.identity, options_key(self.session.options), info.name)

    def _model_matches(self, caption: ModelCaption) -> bool:
        key = self.model_key
        if key is None:  # no model yet: the library's newest caption stands for now
            return True
        return (caption.model.identity, caption.model.options) == (key.identity, key.options)

    def known(self, path: str) -> bool:
        """The library holds this photo's caption by the model and options in use (or, before
        the model is loaded, by any model), its file unchanged since: no need to run the model."""
        entry = self.captions.entry(path)
        return (
            entry.on_disk == "ok" and entry.model is not None and self._model_matches(entry.model)
        )

    def load_entries(self, paths: list[str]) -> None:
        """What the library knows of these listed photos, into the list: captioned rows for
        the captions it holds by this model and options, whose caption each one is."""
        key = self.model_key
        model = self.image_model
        with model.batched_changes():
            for path, entry in self.captions.load(paths, key).items():
                row = model.row_of(path)
                if row is None:
                    continue
                item = model.item(row)
                if self.session.result_for(path) is None and item.status is not Status.FAILED:
                    if self.known(path):
                        model.set_status(path, Status.CAPTIONED, caption=entry.model.text)
                    elif item.status is Status.CAPTIONED:
                        model.set_status(path, Status.PENDING)
                model.set_caption_state(path, entry.state, entry.caption, entry.on_disk)

    def load_listed(self) -> None:
        self.load_entries([item.path for item in self.image_model.items()])

    def on_photo_captioned(self, outcome: CaptionOutcome) -> None:
        """A fresh caption of any photo: into the library, for next time."""
        key = self.model_key
        if key is not None:
            self.captions.add_model_result(outcome.path, outcome.result, key, outcome.file)
        entry = self.captions.entry(outcome.path)
        self.image_model.set_caption_state(outcome.path, entry.state, entry.caption, entry.on_disk)

    def _on_entry_changed(self, path: str) -> None:
        entry = self.captions.entry(path)
        self.image_model.set_caption_state(path, entry.state, entry.caption, entry.on_disk)
        if path == self.session.current_path and self.editing_path is None:
            self.render_caption()

    # Showing the caption.

    def show_result(self, outcome: CaptionOutcome) -> None:
        """The model's run of the shown photo: its beams, and the caption in force."""
        self.session.set_result(outcome)
        beams = self.session.beams
        self.beam_texts = [beam.text for beam in beams]
        self.beam_list.set_beams([(beam.text, beam.score) for beam in beams])
        self.render_caption()
        self.caption_shown.emit(outcome.path)

    def show_library_caption(self, path: str) -> None:
        """The library's caption of the shown photo, at once, without running the model."""
        model = self.captions.entry(path).model
        self.session.clear_caption()
        self.viewer.set_busy(False)
        self.beam_texts = [model.text, *(text for text, _ in model.alternatives)]
        scores = [model.score or 0.0, *(score for _, score in model.alternatives)]
        self.beam_list.set_beams(list(zip(self.beam_texts, scores, strict=True)))
        self.render_caption()
        self.caption_shown.emit(path)

    def show_missing(self, item: ImageItem) -> None:
        """A photo no longer on disk: the captions the library kept, never the model's run."""
        self.viewer.set_busy(False)
        self.viewer.set_placeholder(
            f"{item.name}\nThis photo is no longer on disk; its captions are kept"
        )
        if self.captions.entry(item.path).model is not None:
            self.show_library_caption(item.path)
            return
        self.session.clear_caption()
        self.beam_texts = []
        self.clear_panels()
        if self.captions.person(item.path) is not None:
            self.render_caption()
        else:
            self.words.set_words([], "No caption: the photo is no longer on disk")
            self.actions_changed.emit()
        self.caption_shown.emit(item.path)

    def show_no_caption(self, item: ImageItem) -> None:
        """A photo without a caption to show yet (being captioned, unreadable, no model)."""
        self.session.clear_caption()
        self.beam_texts = []
        if self.captions.person(item.path) is not None and item.status is not Status.FAILED:
            # The person's caption is theirs whatever the model does: shown at once.
            self.beam_list.set_beams([])
            self.render_caption()
            return
        if item.status is Status.FAILED:
            text = f"Cannot caption this file: {item.error}"
            self.viewer.set_placeholder(f"{item.name}\n{item.error}")
        elif self.session.model_unavailable:
            text = NO_MODEL
        else:
            text = "Captioning…"
        self.words.set_words([], text)
        self.clear_panels()
        self.heatmaps.reset()
        self.actions_changed.emit()

    def clear_panels(self) -> None:
        self.caption_panel.summary.setText("")
        self.caption_panel.show_model_said("")
        self.beam_list.set_beams([])
        self.lstm_panel.clear()

    def show_beam(self, index: int) -> None:
        self.caption_panel.show_model_said("")
        beam = self.session.choose_beam(index)
        if beam is None:
            if 0 <= index < len(self.beam_texts):  # from the library: words, no maps yet
                self._show_library_beam(index)
            return
        self.heatmaps.stop_play()
        self.heatmaps.reset()
        info = self.session.model_info
        # Copy models keep their nouns out of the vocabulary path: a noun said was copied.
        copy_words = info.copy_words if info is not None else ()
        copied = [token in copy_words for token in beam.tokens]
        self.words.set_words(beam.tokens, "(an empty caption)", copied)
        words = len(beam.tokens)
        self.caption_panel.summary.setText(
            f"{self._checked_prefix(beam.text)}"
            f"Beam {index + 1} of {len(self.session.beams)} · score {format_score(beam.score)} · "
            f"{words} word{'s' * (words != 1)} · {self.session.timing}"
        )
        cell = info.cell if info is not None else "lstm"
        self.lstm_panel.set_caption(
            beam.tokens, beam.gates, beam.context_gate, cell, copy_gate=beam.copy_gate
        )
        self.actions_changed.emit()

    def _show_library_beam(self, index: int) -> None:
        self.heatmaps.reset()
        text = self.beam_texts[index]
        self.words.set_words(text.split(), "(an empty caption)")
        self.caption_panel.summary.setText(
            f"{self._checked_prefix(text)}From the caption library · hover a word to see where "
            "the model looked"
        )
        self.lstm_panel.clear()
        self.actions_changed.emit()

    def render_caption(self, beam: int | None = None) -> None:
        """The shown photo's caption: the person's as they wrote it (with what the model said
        below it), else the model's beam they accepted or took, else the model's best."""
        path = self.session.current_path
        if path is None:
            return
        person = self.captions.person(path)
        self.heatmaps.stop_play()
        if person is not None and person.written_by_person:
            self.session.current = None
            self.heatmaps.reset()
            self.words.set_words(person.text.split(), "")
            self.caption_panel.show_model_said(self.beam_texts[0] if self.beam_texts else "")
            origin = CAPTION_ORIGINS.get(person.source, "Your caption")
            self.caption_panel.summary.setText(f"✎ {origin} · F2 edits · Ctrl+Z undoes")
            self.lstm_panel.clear()
            self.actions_changed.emit()
            return
        if beam is None:
            texts = self.beam_texts
            beam = texts.index(person.text) if person is not None and person.text in texts else 0
        if beam < len(self.beam_texts):
            self.beam_list.set_beams(
                [(b.text, b.score) for b in self.session.beams]
                or [(t, s) for t, s in self._library_beams()],
                chosen=beam,
            )
            self.show_beam(beam)
        elif person is not None:  # accepted, but the model's beams are not at hand
            self.session.current = None
            self.words.set_words(person.text.split(), "")
            self.caption_panel.summary.setText("✓ Checked · F2 edits · Ctrl+Z undoes")
            self.actions_changed.emit()

    def _library_beams(self) -> list[tuple[str, float]]:
        model = self.captions.entry(self.session.current_path).model
        if model is None:
            return [(text, 0.0) for text in self.beam_texts]
        return [(model.text, model.score or 0.0), *model.alternatives]

    def _checked_prefix(self, text: str) -> str:
        person = self.captions.person(self.session.current_path or "")
        return "✓ Checked · " if person is not None and person.text == text else ""

    def shown_caption(self) -> str:
        """The caption on screen: the person's, or the model's beam shown."""
        path = self.session.current_path
        if path is None:
            return ""
        person = self.captions.person(path)
        if person is not None and person.written_by_person:
            return person.text
        if self.session.current is not None:
            return self.session.current.text
        return " ".join(self.words.words)

    def want_maps(self, index: int) -> None:
        """A word of a caption shown from the library was pointed at: its heatmap needs the
        model's run of the photo, asked for once."""
        path = self.session.current_path
        if index < 0 or path is None or self.session.current is not None:
            return
        person = self.captions.person(path)
        if self.maps_asked == path or not self.beam_texts:
            return
        if self.captions.entry(path).on_disk == "missing":
            return  # nothing for the model to look at
        if person is not None and person.written_by_person:
            return  # the person's words have no heatmaps
        self.ask_model(path)

    def ask_model(self, path: str) -> None:
        """Run the model on the shown photo (for its heatmaps, or a caption by this model)."""
        self.maps_asked = path
        display = self.session.display_for(path)
        if self.session.request_caption(path, want_display=display is None):
            self.viewer.set_busy(True)

    # Editing.

    def start_editing(self, initial: str | None = None) -> None:
        """Write the shown photo's caption: `initial` typed so far, else the caption shown."""
        path = self.session.current_path
        if path is None:
            return
        editor = self.caption_panel.editor
        if self.editing_path is None:
            self.editing_path = path
            editor.setText(initial if initial is not None else self.shown_caption())
            self.words.hide()
            self.caption_panel.model_said.hide()
            editor.show()
            editor.setFocus()
            if initial is None:
                editor.selectAll()
        elif initial is not None:
            editor.insert(initial)

    def commit_edit(self) -> None:
        """Keep what is being written (another photo is chosen, or the window closes)."""
        if self.editing_path is not None:
            self.finish_editing(self.caption_panel.editor.text())

    def finish_editing(self, text: str) -> None:
        path = self.editing_path
        if path is None:
            return
        self.close_editor()
        text = " ".join(text.split())
        if not text:
            self._say("A caption cannot be empty; Ctrl+Z takes an edit back", 6000)
        elif text != self.shown_caption() or self.captions.person(path) is None:
            self.change_caption(path, text, "typed", "Edit caption")

    def close_editor(self) -> None:
        had_focus = self.caption_panel.editor.hasFocus()
        self.editing_path = None
        self.caption_panel.editor.hide()
        self.words.show()
        self.render_caption()
        if had_focus:
            self.image_list.setFocus()

    def change_caption(self, path: str, text: str, source: str, label: str) -> bool:
        """Make `text` the photo's caption, as one step on the undo stack; False (and said
        why in the status bar) for a caption the library would refuse."""
        try:
            text = checked_caption(text)
        except CaptionRefused as error:
            self._say(f"Caption not changed: {error}", 10000)
            return False
        self.undo_stack.push(CaptionChange(self.captions, path, text, source, label))
        return True

    def take_beam(self, index: int) -> None:
        """Make Alternative `index` (0: the best) the shown photo's caption."""
        path = self.session.current_path
        if path is None or not 0 <= index < len(self.beam_texts):
            self._say(f"There is no alternative {index + 1}", 4000)
            return
        text = self.beam_texts[index]
        person = self.captions.person(path)
        if person is not None and person.text == text:
            self._say("That is already the caption", 4000)
            return
        source = "accepted" if index == 0 else "alternative"
        self.change_caption(path, text, source, f"Take alternative {index + 1}")

    def accept_caption(self) -> None:
        """Mark the model's caption shown as checked."""
        path = self.session.current_path
        if path is None:
            return
        person = self.captions.person(path)
        if person is not None and person.written_by_person:
            self._say("This caption is yours: it is checked already", 4000)
            return
        text = self.shown_caption()
        if not text:
            self._say("There is no caption to accept yet", 4000)
        elif person is not None and person.text == text:
            self._say("This caption is checked already", 4000)
        else:
            self.change_caption(path, text, "accepted", "Accept caption")

    def remove_photos(self, rows: list[int]) -> None:
        """Take these rows off the list, as one step on the undo stack (the files stay on
        disk, their captions in the library)."""
        if rows:
            self.undo_stack.push(PhotoRemoval(self.image_model, self.image_list, rows))

    def undo(self) -> None:
        index = self.undo_stack.index()
        if index > 0:
            command = self.undo_stack.command(index - 1)
            self.undo_stack.undo()
            if isinstance(command, CaptionChange):  # a removal selects what it puts back
                self._reveal(command.path)

    def redo(self) -> None:
        index = self.undo_stack.index()
        if index < self.undo_stack.count():
            command = self.undo_stack.command(index)
            self.undo_stack.redo()
            if isinstance(command, CaptionChange):
                self._reveal(command.path)

    def _reveal(self, path: str) -> None:
        """Show the photo an undo or redo changed, when the list shows it."""
        row = self.image_model.row_of(path)
        shown = row is not None and not self.image_list.isRowHidden(row)
        if shown and row != self.image_list.currentIndex().row():
            self.image_list.select_row(row)

    def next_unchecked(self) -> None:
        """The next photo down the list (round to the top) whose caption is not checked."""
        rows = self.image_list.visible_rows()
        current = self.image_list.currentIndex().row()
        after = [row for row in rows if row > current] + [row for row in rows if row <= current]
        for row in after:
            if not self.image_model.item(row).checked and row != current:
                self.image_list.select_row(row)
                return
        self._say("Every photo in the list is checked", 6000)

    # Search.

    def apply_search(self, query: str, filter: str) -> None:
        """Show only the listed photos whose captions match `query` (the library's search:
        whole words and beginnings of words, any case, accents ignored) and `filter`."""
        matches = self.captions.search(query, filter) if query else None
        words = _folded(query).split()
        shown = 0
        for row, item in enumerate(self.image_model.items()):
            visible = _passes(item.state, filter) and (
                not words
                or (matches is not None and os.path.abspath(item.path) in matches)
                or _prefixes_match(words, item.caption)
            )
            self.image_list.setRowHidden(row, not visible)
            shown += visible
        total = self.image_model.rowCount()
        if query or filter != "all":
            self._say(f"{shown} of {total} photos shown", 4000)
        current = self.image_list.currentIndex().row()
        if shown and (current < 0 or self.image_list.isRowHidden(current)):
            self.image_list.select_row(self.image_list.visible_rows()[0])


class PhotoRemoval(QUndoCommand):
    """Photos taken off the list (Delete), as the undo stack holds it: undo puts the same items
    back at their rows, with their captions, states and thumbnails, and selects them again."""

    def __init__(self, model: ImageListModel, view: ImageListView, rows: list[int]) -> None:
        rows = sorted(set(rows))
        count = len(rows)
        super().__init__(f"Remove {count} photo{'s' * (count != 1)} from the list")
        self.model = model
        self.view = view
        self.placed = [(row, model.item(row)) for row in rows]
        current = view.currentIndex().row()
        self.current = model.item(current if current in rows else rows[0])  # shown again

    def redo(self) -> None:
        rows = {self.model.row_of(item.path) for _, item in self.placed} - {None}
        if not rows:
            return
        # The photo shown next is chosen before the rows go, so the view never makes a row
        # being removed the current one: the next one kept, else the last.
        kept = [row for row in range(self.model.rowCount()) if row not in rows]
        after = [row for row in kept if row > min(rows)]
        if kept:
            self.view.select_row(after[0] if after else kept[-1])
        else:
            self.view.selectionModel().clear()
        self.model.remove_rows(sorted(rows))

    def undo(self) -> None:
        for _, item in self.placed:
            if item.status is Status.WORKING:  # its caption came while it was off the list
                item.status = Status.PENDING
        restored = self.model.insert_items(self.placed)
        if restored:
            current = self.model.row_of(self.current.path)
            self.view.select_rows(restored, current if current in restored else restored[0])


def _folded(text: str) -> str:
    """Lower case without accents: how the search compares words."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _prefixes_match(words: list[str], caption: str) -> bool:
    """Every query word begins a word of `caption` (captions not in the library yet)."""
    caption_words = "".join(c if c.isalnum() else " " for c in _folded(caption)).split()
    return all(any(w.startswith(word) for w in caption_words) for word in words)


def _passes(state: str, filter: str) -> bool:
    if filter == "checked":
        return state in ("accepted", "mine")
    if filter == "unchecked":
        return state not in ("accepted", "mine")
    if filter == "mine":
        return state == "mine"
    return True
