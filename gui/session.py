"""The app's working state: the model, the decoding options, cached results and the shown photo.

The session owns the caption worker and its thread: it sends the requests, keeps what comes back
and says what changed through signals; it never touches a widget. Results are cached per photo,
keyed by the model (a generation number, bumped on every load) and the decoding options, so a
photo seen before shows at once, and a changed beam size re-runs only the decoder on the
worker's cached encoder features.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

from PIL import Image
from PySide6.QtCore import QObject, QThread, Signal
from PySide6.QtGui import QImage

from captioner.options import DecodeOptions
from gui.convert import pil_to_qimage
from gui.lru import LruCache
from gui.models.image_list import ImageListModel, Status
from gui.settings import Settings
from gui.worker import CaptionFailure, CaptionOutcome, CaptionWorker, ModelInfo, TaughtApplied

if TYPE_CHECKING:
    from captioner import CaptionResult
    from captioner.library import TaughtRecord

RESULT_CACHE_SIZE = 64  # full results (attention maps, gates) kept for instant re-selection
DISPLAY_CACHE_SIZE = 8  # viewer copies of photos, a few megabytes each


class Session(QObject):
    model_loading = Signal()  # a load began: every result so far is stale
    model_loaded = Signal(object)  # ModelInfo of the model now in use
    model_failed = Signal(str)  # why the model could not be loaded
    options_changed = Signal(object)  # DecodeOptions now in use
    result_ready = Signal(object)  # CaptionOutcome of the shown photo, fresh for model and options
    photo_captioned = Signal(object)  # CaptionOutcome of any photo, fresh for model and options
    caption_failed = Signal(object)  # CaptionFailure of any photo
    display_ready = Signal(str)  # path whose viewer copy is now cached
    batch_progress = Signal(int, int)  # done, total
    batch_finished = Signal(int, int, bool)  # done, total, cancelled

    def __init__(self, settings: Settings, images: ImageListModel, parent: QObject) -> None:
        """images: the photo list, whose statuses and captions the session keeps up to date.
        Create the UI thread's garbage collector before the session: it starts a worker thread."""
        super().__init__(parent)
        self.settings = settings
        self.images = images
        self.options: DecodeOptions = settings.decode_options
        self.model = settings.model  # a shipped model's name or a directory
        self.generation = 0
        self.model_info: ModelInfo | None = None
        self.model_error = ""
        self.batch_running = False
        self.batch_paths: list[str] = []  # the photos Caption All was last given
        self.current_path: str | None = None  # the photo shown
        self.opened: list[str] = []  # the photos and folders the person opened, absolute
        self.beams: list[CaptionResult] = []  # one per beam of the shown photo's caption
        self.current: CaptionResult | None = None  # the beam shown (one of beams)
        self.timing = ""  # how long the shown caption took
        self._results: LruCache[str, CaptionOutcome] = LruCache(RESULT_CACHE_SIZE)
        # path -> the viewer's copy as PIL (to blend heatmaps on) and as Qt (to draw)
        self._displays: LruCache[str, tuple[Image.Image, QImage]] = LruCache(DISPLAY_CACHE_SIZE)
        self._start_worker()

    def _start_worker(self) -> None:
        self.worker = CaptionWorker()
        self._thread = QThread(self)
        self._thread.setObjectName("caption-worker")
        self.worker.moveToThread(self._thread)
        self._thread.started.connect(self.worker.run)
        self.worker.model_loaded.connect(self._on_model_loaded)
        self.worker.model_failed.connect(self._on_model_failed)
        self.worker.caption_started.connect(self._on_caption_started)
        self.worker.captioned.connect(self._on_captioned)
        self.worker.caption_failed.connect(self._on_caption_failed)
        self.worker.display_loaded.connect(self._on_display_loaded)
        self.worker.batch_progress.connect(self.batch_progress)
        self.worker.batch_finished.connect(self._on_batch_finished)
        self._thread.start()

    def shutdown(self) -> None:
        """Stop the worker and wait for its thread, and keep, for the next start, what was
        opened and is still listed; the session is done."""
        self.worker.cancel_batch()
        self.worker.stop()
        self._thread.quit()
        self._thread.wait()
        self.settings.last_opened = self._still_listed(self.opened)
        self.settings.sync()

    # What was opened, reopened at the next start.

    def remember_opened(self, paths: list[str]) -> None:
        """The person opened these photos and folders: the next start reopens them (kept
        at once, so a crash does not lose them)."""
        for path in map(os.path.abspath, paths):
            if path not in self.opened:
                self.opened.append(path)
        self.settings.last_opened = self.opened

    def paths_to_reopen(self) -> tuple[list[str], list[str]]:
        """What was open when the app was last closed, as (still on disk, gone since);
        nothing when the person turned reopening off."""
        if not self.settings.reopen_last:
            return [], []
        paths = self.settings.last_opened
        there = [path for path in paths if os.path.exists(path)]
        return there, [path for path in paths if path not in there]

    def _still_listed(self, opened: list[str]) -> list[str]:
        """Of the opened photos and folders, those with a photo still in the list (one whose
        photos were all removed is not reopened)."""
        sources = {path: (path, os.path.realpath(path)) for path in opened}
        listed = set()
        for item in self.images.items():
            for source, spellings in sources.items():
                if any(_within(path, s) for path in (item.path, item.real_path) for s in spellings):
                    listed.add(source)
        return [path for path in opened if path in listed]

    @property
    def model_unavailable(self) -> bool:
        """The last load failed: photos can be shown, not captioned."""
        return self.model_info is None and bool(self.model_error)

    # The model and the decoding options.

    def load_model(self, model: str) -> None:
        """Load `model` (a shipped model's name or a directory) for this session only."""
        self.model = model
        self.generation += 1
        self.model_info, self.model_error = None, ""
        self._results.clear()
        self.images.mark_all_pending()
        if self.batch_running:
            self.worker.cancel_batch()
        self.worker.load_model(
            model, self.settings.device, self.settings.backend, self.settings.precision,
            self.generation,
        )  # fmt: skip
        self.model_loading.emit()

    def use_model(self, model: str) -> None:
        """Load `model` now and in later sessions."""
        self.settings.model = model
        self.load_model(model)

    def use_device(self, device: str) -> None:
        self.settings.device = device
        self.load_model(self.model)

    def use_backend(self, backend: str) -> None:
        self.settings.backend = backend
        self.load_model(self.model)

    def use_precision(self, precision: str) -> None:
        self.settings.precision = precision
        self.load_model(self.model)

    def use_taught(self, records: list[TaughtRecord]) -> None:
        """Give the worker the library's taught examples; with a model loaded, as a new
        generation (the captions made so far are out of date). The model stays: only its
        taught words change (milliseconds, and the encoded photos stay)."""
        if self.model_info is None:
            self.worker.set_taught(records)
            return
        self.generation += 1
        self.model_info = dataclasses.replace(self.model_info, generation=self.generation)
        self.worker.use_taught(records, self.generation)

    def taught_applied(self, applied: TaughtApplied) -> bool:
        """The worker's model says the taught words now: the model's identity, note and copy
        words follow, and every photo is captioned again. False for an outdated generation."""
        if applied.generation != self.generation or self.model_info is None:
            return False
        self.model_info = dataclasses.replace(
            self.model_info,
            identity=applied.identity,
            taught_note=applied.note,
            copy_words=applied.copy_words,  # a taught word said is underlined as copied
        )
        self.images.mark_all_pending()
        return True

    def set_options(self, options: DecodeOptions) -> None:
        if options == self.options:
            return
        self.options = options
        self.settings.decode_options = options
        self.worker.set_batch_options(options)
        self.images.mark_all_pending()
        self.options_changed.emit(options)

    def _on_model_loaded(self, info: ModelInfo) -> None:
        if info.generation != self.generation:
            return
        self.model_info = info
        self.model_loaded.emit(info)

    def _on_model_failed(self, generation: int, message: str) -> None:
        if generation != self.generation:
            return
        self.model_error = message
        if self.current_path is not None and self.current_path not in self._displays:
            self.worker.request_display(self.current_path, self.generation)
        self.model_failed.emit(message)

    # Photos and their captions.

    def select(self, path: str | None) -> None:
        """Make `path` the shown photo (None: none), with no caption shown yet."""
        self.current_path = path
        self.clear_caption()

    def clear_caption(self) -> None:
        self.beams, self.current = [], None

    def set_result(self, outcome: CaptionOutcome) -> None:
        """Make `outcome`'s beams the shown caption's; choose_beam picks the one shown."""
        result = outcome.result
        self.beams = result.beams or [result]
        self.timing = f"captioned in {outcome.seconds * 1000:.0f} ms" + (
            "" if outcome.encoded else " (decoder only, features cached)"
        )

    def choose_beam(self, index: int) -> CaptionResult | None:
        """Show beam `index`; None if there is no such beam."""
        if not 0 <= index < len(self.beams):
            return None
        self.current = self.beams[index]
        return self.current

    def result_for(self, path: str) -> CaptionOutcome | None:
        """`path`'s cached caption, if it is from the current model and options."""
        outcome = self._results.get(path)
        if outcome is None or outcome.generation != self.generation:
            return None
        return outcome if outcome.options == self.options else None

    def display_for(self, path: str | None) -> tuple[Image.Image, QImage] | None:
        """The viewer's copy of `path` (PIL for blending heatmaps, Qt for drawing), if cached."""
        return self._displays.get(path) if path is not None else None

    def request_display(self, path: str) -> None:
        """Ask the worker for `path`'s viewer copy only (its caption is known)."""
        self.worker.request_display(path, self.generation)

    def request_caption(self, path: str, *, want_display: bool) -> bool:
        """Ask the worker for `path`'s caption (and its viewer copy if `want_display`); without a
        model only for the viewer copy. True if a caption is on its way."""
        if self.model_unavailable:
            if want_display:  # nothing can be captioned, but the photo can be shown
                self.worker.request_display(path, self.generation)
            return False
        self.worker.request_caption(path, self.options, self.generation, want_display=want_display)
        return True

    def _on_caption_started(self, path: str) -> None:
        row = self.images.row_of(path)
        if row is not None and self.images.item(row).status is not Status.CAPTIONED:
            self.images.set_status(path, Status.WORKING)

    def _on_captioned(self, outcome: CaptionOutcome) -> None:
        if outcome.generation != self.generation:
            return  # from a model that has since been replaced
        path = outcome.path
        if outcome.display is not None:
            self._displays.put(path, (outcome.display, pil_to_qimage(outcome.display)))
        fresh = outcome.options == self.options
        self.images.set_status(
            path, Status.CAPTIONED if fresh else Status.PENDING, caption=outcome.result.text
        )
        if not fresh:
            return
        self._results.put(path, outcome)
        self.photo_captioned.emit(outcome)
        if path == self.current_path:
            self.result_ready.emit(outcome)

    def _on_caption_failed(self, failure: CaptionFailure) -> None:
        if failure.bad_image:
            self.images.set_status(failure.path, Status.FAILED, error=failure.reason)
        else:
            self.images.set_status(failure.path, Status.PENDING)
        self.caption_failed.emit(failure)

    def _on_display_loaded(self, path: str, display: Image.Image) -> None:
        self._displays.put(path, (display, pil_to_qimage(display)))
        self.display_ready.emit(path)

    # Caption all.

    def pending_paths(self) -> list[str]:
        """The listed photos without a caption for the current model and options (those the
        caption library holds are CAPTIONED)."""
        return [
            item.path
            for item in self.images.items()
            if item.status in (Status.PENDING, Status.WORKING) and item.on_disk != "missing"
        ]

    def start_batch(self, paths: list[str]) -> None:
        self.batch_running = True
        self.batch_paths = list(paths)
        self.worker.start_batch(paths, self.options)

    def batch_counts(self) -> tuple[int, int]:
        """Of the photos Caption All was given: how many are captioned, how many could not
        be read (the worker's `done` counts both)."""
        statuses = [
            self.images.item(row).status
            for row in map(self.images.row_of, self.batch_paths)
            if row is not None
        ]
        return statuses.count(Status.CAPTIONED), statuses.count(Status.FAILED)

    def cancel_batch(self) -> None:
        if self.batch_running:
            self.worker.cancel_batch()

    def _on_batch_finished(self, done: int, total: int, cancelled: bool) -> None:
        self.batch_running = False
        self.batch_finished.emit(done, total, cancelled)


def _within(path: str, source: str) -> bool:
    """`path` is the photo `source` or in the folder `source`, at any depth."""
    return path == source or path.startswith(source.rstrip(os.sep) + os.sep)
