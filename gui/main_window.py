"""The main window: image list, photo with heatmaps, caption, LSTM chart, settings, menus.

The window lays out the widgets and wires them to the session, which holds the app's state and
talks to the caption worker (gui/session.py). The shown caption, its editing, undo, review and
the search filter live in gui/review.py, the caption library in gui/captions.py; heatmaps and
word playback in gui/word_heatmaps.py, the actions and menus in gui/actions.py, the files the
app writes in gui/saving.py, the dialogs in gui/dialogs/.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, QStandardPaths, Qt, Signal
from PySide6.QtGui import QGuiApplication, QImage
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from captioner.library import LibraryCorrupt
from gui import saving
from gui.actions import WindowActions
from gui.captions import CaptionStore
from gui.dialogs.about_model import AboutModelDialog
from gui.dialogs.attention_grid import AttentionGridDialog
from gui.dialogs.learn_from_captions import LearnDialog, learned_models
from gui.dock_widths import DockWidths
from gui.files import OPEN_FILTER, collect_images, opened_message, sample_images_dir
from gui.garbage import UiThreadGarbageCollector
from gui.models.image_list import ImageListModel, PathRole, Status
from gui.review import CaptionReview
from gui.session import Session
from gui.settings import Settings
from gui.teaching import Teaching
from gui.thumbnails import Thumbnailer
from gui.widgets.banner import NO_MODEL, ModelBanner
from gui.widgets.caption_panel import BeamList, CaptionPanel
from gui.widgets.image_list import ImageListView
from gui.widgets.library_banner import LibraryBanner
from gui.widgets.lstm_panel import LstmPanel, panel_title
from gui.widgets.photo_search import PhotoSearch
from gui.widgets.settings_panel import SettingsPanel
from gui.widgets.taught_words import TaughtWordsPanel
from gui.widgets.viewer import ImageViewer
from gui.word_heatmaps import WordHeatmaps
from gui.worker import CaptionFailure, CaptionOutcome, ModelInfo


class MainWindow(QMainWindow):
    caption_shown = Signal(str)  # path: its caption is on screen
    model_ready = Signal(bool)  # a model load finished: True loaded, False failed
    caption_all_finished = Signal(int, int, bool)  # done, total, cancelled

    def __init__(
        self,
        settings: Settings,
        *,
        paths: list[str] | None = None,
        model_dir: str | None = None,
        data_dir: str | None = None,
        library_path: str | None = None,
    ) -> None:
        """paths: photos or folders to open, else the samples on first start; model_dir: a
        model for this run only, a shipped model's name or an absolute directory (else the one
        in Settings); data_dir: where pasted images are stored; library_path: the caption
        library file (else the one in Settings, else the user's)."""
        super().__init__()
        self.settings = settings
        self.setWindowTitle("Captioner")
        self.setAcceptDrops(True)
        self._data_dir = Path(
            data_dir
            or QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
        )
        self._photo_error = ""  # the status bar's last message about the shown photo
        self._grid_dialog: AttentionGridDialog | None = None
        self.about_model_dialog: AboutModelDialog | None = None
        self.learn_dialog: LearnDialog | None = None
        self._garbage_collector = UiThreadGarbageCollector(self)  # before any worker thread

        self.image_model = ImageListModel(self)
        self.session = Session(settings, self.image_model, self)
        self.captions = CaptionStore(self)  # the caption library (gui/captions.py)
        self.captions.sidecars = settings.sidecars
        self.teaching = Teaching(self.captions, self.session, self)  # taught words (#24)
        self.actions = WindowActions(self)
        self._create_widgets()
        self.actions.fill_menu_bar(self.docks)
        self._connect_actions()
        self._connect_session()
        self._connect_captions()
        self._restore_window()
        self._open_library(library_path or settings.library_path or None)

        self.session.load_model(model_dir if model_dir is not None else settings.model)
        if paths:
            self.open_paths(paths)
        elif settings.first_run:
            self.open_samples()
        else:
            self.reopen_last()
        settings.mark_started()

    # Building the window.

    def _create_widgets(self) -> None:
        self.image_list = ImageListView()
        self.image_list.setModel(self.image_model)
        self.image_list.set_grid(self.settings.grid_view)
        self.image_list.selectionModel().currentChanged.connect(self._on_current_changed)
        self.image_model.rowsRemoved.connect(self._on_rows_removed)
        self.image_list.installEventFilter(self)
        self.search = PhotoSearch()
        self.images_panel = QWidget()
        images_layout = QVBoxLayout(self.images_panel)
        images_layout.setContentsMargins(0, 0, 0, 0)
        images_layout.setSpacing(0)
        images_layout.addWidget(self.search)
        images_layout.addWidget(self.image_list, 1)

        self.library_banner = LibraryBanner()
        self.library_banner.retry.connect(self.captions.flush)
        self.banner = ModelBanner()
        self.banner.choose_model.connect(self.choose_model_dir)
        self.banner.about_model.connect(self.show_model_about)
        self.viewer = ImageViewer()
        self.caption_panel = CaptionPanel(self.actions.play, self.actions.grid)
        self.words = self.caption_panel.words
        self.words.installEventFilter(self)
        self.words.addAction(self.actions.teach)  # the words' context menu
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.library_banner)
        layout.addWidget(self.banner)
        layout.addWidget(self.viewer, 1)
        layout.addWidget(self.caption_panel)
        self.setCentralWidget(central)

        self.beam_list = BeamList()
        self.lstm_panel = LstmPanel()
        self.lstm_panel.word_clicked.connect(self.words.select)
        self.words.word_selected.connect(self.lstm_panel.set_selected)
        self.heatmaps = WordHeatmaps(
            self.session, self.settings, self.viewer, self.words,
            self.caption_panel.opacity, self.actions.play,
        )  # fmt: skip
        self.review = CaptionReview(
            self.captions, self.session, self.image_model, self.image_list, self.caption_panel,
            self.beam_list, self.lstm_panel, self.heatmaps, self.viewer, self,
        )  # fmt: skip
        self.undo_stack = self.review.undo_stack
        self.search.changed.connect(self.review.apply_search)
        self.settings_panel = SettingsPanel(
            self.session.options, self.settings.device, self.settings.backend, self.session.model,
            precision=self.settings.precision,
        )  # fmt: skip
        self.settings_panel.options_changed.connect(self.session.set_options)
        self.settings_panel.device_changed.connect(self.session.use_device)
        self.settings_panel.backend_changed.connect(self.session.use_backend)
        self.settings_panel.precision_changed.connect(self.session.use_precision)
        self.settings_panel.model_chosen.connect(self.set_model)
        self.taught_words = TaughtWordsPanel(self.teaching)
        self._create_docks()

        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setFormat("%v / %m")
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_caption_all)
        self.cancel_button.hide()
        self.statusBar().addPermanentWidget(self.progress)
        self.statusBar().addPermanentWidget(self.cancel_button)

        self.thumbnailer = Thumbnailer(self)
        self.image_model.thumbnail_needed.connect(self.thumbnailer.request)
        self.thumbnailer.ready.connect(self._on_thumbnail)
        self.thumbnailer.failed.connect(self._on_thumbnail_failed)
        self.taught_words.model.thumbnail_needed.connect(self.thumbnailer.request)
        self.thumbnailer.ready.connect(self.taught_words.model.set_thumbnail)
        self._update_actions()

    def _create_docks(self) -> None:
        self.docks: dict[str, QDockWidget] = {}
        for name, title, widget, area in (
            ("images", "Images", self.images_panel, Qt.DockWidgetArea.LeftDockWidgetArea),
            ("beams", "Alternatives", self.beam_list, Qt.DockWidgetArea.RightDockWidgetArea),
            ("lstm", panel_title(None), self.lstm_panel, Qt.DockWidgetArea.RightDockWidgetArea),
            ("settings", "Settings", self.settings_panel, Qt.DockWidgetArea.RightDockWidgetArea),
            ("taught", "Taught Words", self.taught_words, Qt.DockWidgetArea.RightDockWidgetArea),
        ):
            dock = QDockWidget(title, self)
            dock.setObjectName(f"{name}_dock")  # saveState needs names
            dock.setWidget(widget)
            self.addDockWidget(area, dock)
            self.docks[name] = dock
        self.tabifyDockWidget(self.docks["lstm"], self.docks["settings"])
        self.tabifyDockWidget(self.docks["settings"], self.docks["taught"])
        self.docks["lstm"].raise_()
        self.resizeDocks(
            [self.docks["images"], self.docks["beams"]], [300, 400], Qt.Orientation.Horizontal
        )
        self.resizeDocks(
            [self.docks["beams"], self.docks["lstm"]], [170, 420], Qt.Orientation.Vertical
        )
        self.dock_widths = DockWidths(self, [self.docks["images"], self.docks["beams"]])

    def _connect_actions(self) -> None:
        actions = self.actions
        for action, slot in (
            (actions.open_files, self.open_files_dialog),
            (actions.open_folder, self.open_folder_dialog),
            (actions.samples, self.open_samples),
            (actions.paste, self.paste),
            (actions.copy, self.copy_caption),
            (actions.sidecar, self.save_sidecar),
            (actions.metadata, self.write_metadata),
            (actions.save_grid, lambda: self.save_grid()),  # not triggered's `checked` as path
            (actions.remove, self.remove_selected),
            (actions.quit, self.close),
            (actions.next, lambda: self.step_image(1)),
            (actions.previous, lambda: self.step_image(-1)),
            (actions.play, self.heatmaps.toggle_play),
            (actions.grid, self.show_grid),
            (actions.caption_all, self.caption_all),
            (actions.cancel, self.cancel_caption_all),
            (actions.model_dir, self.choose_model_dir),
            (actions.hub_model, self.choose_hub_model),
            (actions.decoding_options, self.show_settings_dock),
            (actions.about_model, self.show_model_about),
            (actions.about, self.show_about),
            (actions.undo, self.review.undo),
            (actions.redo, self.review.redo),
            (actions.edit_caption, lambda: self.review.start_editing()),
            (actions.accept, self.review.accept_caption),
            (actions.find, self.focus_search),
            (actions.next_unchecked, self.review.next_unchecked),
            (actions.library, self.choose_library),
            (actions.export, self.export_captions),
            (actions.teach, self.teach_word),
            (actions.learn, self.learn_from_captions),
        ):
            action.triggered.connect(slot)
        for index, action in enumerate(actions.take_beam):
            action.triggered.connect(lambda _=False, i=index: self.review.take_beam(i))
        actions.recursive.toggled.connect(self.set_recursive)
        actions.reopen_last.toggled.connect(self.set_reopen_last)
        actions.grid_view.toggled.connect(self.set_grid_view)
        actions.sidecars.toggled.connect(self.set_sidecars)
        for name, action in actions.shipped_models.items():
            action.triggered.connect(lambda _=False, shipped=name: self.set_model(shipped))

    def _connect_session(self) -> None:
        session = self.session
        session.model_loading.connect(self._on_model_loading)
        session.model_loaded.connect(self._on_model_loaded)
        session.model_failed.connect(self._on_model_failed)
        session.options_changed.connect(self._on_options_changed)
        session.photo_captioned.connect(self.review.on_photo_captioned)
        session.result_ready.connect(self._on_result_ready)
        session.caption_failed.connect(self._on_caption_failed)
        session.display_ready.connect(self._on_display_ready)
        session.batch_progress.connect(self._on_batch_progress)
        session.batch_finished.connect(self._on_batch_finished)

    def _restore_window(self) -> None:
        geometry, state = self.settings.window_state()
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1320, 840)
        if state is not None:
            self.restoreState(state)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.dock_widths.window_resized(event.size().width() > event.oldSize().width())

    def closeEvent(self, event) -> None:
        self.review.commit_edit()
        if self.captions.unsaved and not self.captions.flush():
            count = self.captions.unsaved
            answer = QMessageBox.question(
                self,
                "Quit without saving your captions?",
                f"{count} caption edit{'s' * (count != 1)} could not be written to the caption "
                f"library, and will be lost if you quit now.\n\n{self.captions.problem}\n\n"
                "Quit anyway?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No,
            )
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
        self.heatmaps.stop_play()
        self.undo_stack.blockSignals(True)
        self.settings.save_window_state(self.saveGeometry(), self.saveState())
        self.settings.sync()
        self.session.shutdown()
        self.thumbnailer.shutdown()
        self._garbage_collector.stop()
        if self._grid_dialog is not None:
            self._grid_dialog.close()
        if self.about_model_dialog is not None:
            self.about_model_dialog.close()
        if self.learn_dialog is not None:
            self.learn_dialog.stop()
        self.captions.close()
        super().closeEvent(event)

    # Opening photos.

    def open_paths(self, paths: list[str], *, remember: bool = True) -> list[str]:
        """Add photos and folders to the list and select the first of them; returns the photos."""
        images = collect_images(paths, recursive=self.settings.recursive)
        # Photos the library knows in these folders that are gone: listed, with their captions.
        folders = [path for path in paths if os.path.isdir(path)]
        images += self.captions.missing_under(folders, self.settings.recursive, images)
        if remember:
            for path in reversed(paths[:10]):
                self.settings.add_recent(os.path.abspath(path))
            self.session.remember_opened(paths)
        if not images:
            self.statusBar().showMessage("No photos found in " + ", ".join(paths), 8000)
            return []
        listed = self.image_model.rowCount()
        rows = self.image_model.add_paths(images)
        self.review.load_entries(images)
        if self.search.active:
            self.review.apply_search(self.search.query, self.search.filter_name)
        self.select_row(rows[0])
        added = sum(row >= listed for row in set(rows))
        self.statusBar().showMessage(opened_message(added, len(set(rows)) - added), 4000)
        return images

    def reopen_last(self) -> None:
        """Open what was open when the app was last closed; one gone since is named in the
        status bar."""
        there, gone = self.session.paths_to_reopen()
        if there:
            self.open_paths(there)
        if gone:
            names = ", ".join(gone[:3]) + (f" and {len(gone) - 3} more" if len(gone) > 3 else "")
            self.statusBar().showMessage(f"Not reopened, no longer there: {names}", 10000)

    def open_samples(self) -> None:
        folder = sample_images_dir()
        if folder.is_dir():
            self.open_paths([str(folder)], remember=False)
        else:
            self.statusBar().showMessage("No sample images are installed", 6000)

    def open_files_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Open photos", "", OPEN_FILTER)
        if paths:
            self.open_paths(paths)

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a folder of photos")
        if path:
            self.open_paths([path])

    def set_recursive(self, on: bool) -> None:
        self.settings.recursive = on

    def set_reopen_last(self, on: bool) -> None:
        self.settings.reopen_last = on

    def set_grid_view(self, on: bool) -> None:
        self.settings.grid_view = on
        self.image_list.set_grid(on)

    def paste(self) -> None:
        """Open the files or the image on the clipboard."""
        data = QGuiApplication.clipboard().mimeData()
        if data is not None and data.hasUrls():
            paths = [url.toLocalFile() for url in data.urls() if url.isLocalFile()]
            if paths:
                self.open_paths(paths)
                return
        image = QGuiApplication.clipboard().image()
        if image.isNull():
            self.statusBar().showMessage("The clipboard holds no image or photo files", 6000)
            return
        self._open_image_data(image)

    def _open_image_data(self, image: QImage) -> None:
        try:
            path = saving.save_pasted_image(image, self._data_dir)
        except OSError as error:
            self.statusBar().showMessage(str(error), 8000)
            return
        self.open_paths([str(path)], remember=False)

    def dragEnterEvent(self, event) -> None:
        data = event.mimeData()
        if (data.hasUrls() and any(u.isLocalFile() for u in data.urls())) or data.hasImage():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        data = event.mimeData()
        paths = [url.toLocalFile() for url in data.urls() if url.isLocalFile()]
        if paths:
            self.open_paths(paths)
        elif data.hasImage():
            self._open_image_data(QImage(data.imageData()))
        event.acceptProposedAction()

    def remove_selected(self) -> None:
        """Take the selected photos off the list (Ctrl+Z puts them back); files stay on disk."""
        rows = [index.row() for index in self.image_list.selectionModel().selectedRows()]
        self.review.remove_photos(rows)

    def _on_rows_removed(self) -> None:
        if not self.image_model.rowCount():
            self.session.select(None)
            self._show_nothing()

    # Choosing a photo.

    def select_row(self, row: int) -> None:
        self.image_list.select_row(row)

    def step_image(self, delta: int) -> None:
        """Move `delta` photos down the list (up if negative), over those a search hides."""
        self.image_list.step(delta)

    def _on_current_changed(self, current, _previous) -> None:
        if current.isValid():
            self.show_photo(current.data(PathRole))

    def show_photo(self, path: str, *, run_model: bool = False) -> None:
        """Show a photo with its caption; ask the worker for whatever is not cached. A caption
        the library holds from this model and options is shown without running the model,
        unless `run_model` (the person changed the model or the options to see it again)."""
        if self.review.editing_path not in (None, path):
            self.review.commit_edit()
        self.heatmaps.stop_play()
        self.review.maps_asked = None  # the model asked for this photo (below, or for its heatmaps)
        self.session.select(path)
        if self.statusBar().currentMessage() == self._photo_error:
            self.statusBar().clearMessage()  # it was about the photo shown before
        self.setWindowTitle(f"{os.path.basename(path)} — Captioner")
        item = self.image_model.item(self.image_model.row_of(path))
        if item.on_disk == "missing":
            self.viewer.set_image(None)
            self.review.show_missing(item)
            return
        display = self.session.display_for(path)
        if display is not None:
            self.viewer.set_image(display[1])
        else:
            thumbnail = item.thumbnail.toImage() if item.thumbnail is not None else None
            self.viewer.set_image(thumbnail)
            self.viewer.set_placeholder("Loading…")
        outcome = self.session.result_for(path)
        if outcome is not None:
            self.review.show_result(outcome)
            if display is not None:
                return
        elif self.review.known(path) and not run_model:
            self.review.show_library_caption(path)
            if display is None:
                self.session.request_display(path)
            return
        else:
            self.review.show_no_caption(item)
        if self.session.request_caption(path, want_display=display is None):
            self.review.maps_asked = path
            self.viewer.set_busy(True)

    def _show_current_photo_again(self, *, run_model: bool = False) -> None:
        if self.session.current_path is not None:
            self.show_photo(self.session.current_path, run_model=run_model)

    def _show_nothing(self) -> None:
        self.setWindowTitle("Captioner")
        self.viewer.set_image(None)
        self.viewer.set_placeholder("Open photos with Ctrl+O, or drop them here")
        self.viewer.set_busy(False)
        self.words.set_words([], "")
        self.review.clear_panels()
        self._update_actions()

    # Results from the session.

    def _on_result_ready(self, outcome: CaptionOutcome) -> None:
        self.viewer.set_busy(False)
        if outcome.display is not None:
            self.viewer.set_image(self.session.display_for(outcome.path)[1])
            self.heatmaps.photo_sharpened()
        shown = [beam.text for beam in self.session.beams]
        if shown and shown == [beam.text for beam in outcome.result.beams or [outcome.result]]:
            # The same caption again (it was shown from the cache while the photo loaded):
            # keep the user's word selection and redraw its heatmap on the sharp photo.
            self.heatmaps.refresh()
            self.caption_shown.emit(outcome.path)
        else:
            self.review.show_result(outcome)

    def _on_caption_failed(self, failure: CaptionFailure) -> None:
        if failure.generation == self.session.generation or failure.bad_image:
            self._show_photo_error(failure.path, failure.reason)
        if failure.path == self.session.current_path:
            self.viewer.set_busy(False)
            row = self.image_model.row_of(failure.path)
            if row is not None:
                self.review.show_no_caption(self.image_model.item(row))

    def _on_thumbnail(self, path: str, image: QImage) -> None:
        self.image_model.set_thumbnail(path, image)
        if path == self.session.current_path and self.viewer.image is None:
            self.viewer.set_image(image)

    def _on_thumbnail_failed(self, path: str, reason: str) -> None:
        self.image_model.set_status(path, Status.FAILED, error=reason)
        self._show_photo_error(path, reason)
        if path == self.session.current_path and self.session.current is None:
            self.review.show_no_caption(self.image_model.item(self.image_model.row_of(path)))

    def _show_photo_error(self, path: str, reason: str) -> None:
        # Only the shown photo's: the list marks the others, and "Caption all" counts them.
        if path == self.session.current_path:
            self._photo_error = f"{os.path.basename(path)}: {reason}"
            self.statusBar().showMessage(self._photo_error, 10000)

    def _on_display_ready(self, path: str) -> None:
        if path == self.session.current_path:
            self.viewer.set_image(self.session.display_for(path)[1])

    # Copying and saving the caption and its heatmaps (gui/saving.py does the writing).

    def copy_caption(self) -> None:
        text = self.review.shown_caption()
        if text:
            saving.copy_caption(self, text)

    def save_sidecar(self) -> Path | None:
        text = self.review.shown_caption()
        if not text:
            return None
        return saving.save_sidecar(self, self.session.current_path, text)

    def write_metadata(self) -> bool:
        text = self.review.shown_caption()
        if not text:
            return False
        return saving.write_metadata(self, self.session.current_path, text)

    def show_grid(self) -> None:
        grid = self.heatmaps.grid()
        if grid is None:
            self.statusBar().showMessage("Caption a photo first", 4000)
            return
        if self._grid_dialog is None:
            self._grid_dialog = AttentionGridDialog(self)
            self._grid_dialog.save_requested.connect(self.save_grid)
        self._grid_dialog.set_grid(grid, os.path.basename(self.session.current_path))
        self._grid_dialog.show()
        self._grid_dialog.raise_()

    def save_grid(self, path: str | None = None) -> Path | None:
        """Save the heatmap grid at `path`, else where the user picks; the file written."""
        grid = self.heatmaps.grid()
        if grid is None:
            self.statusBar().showMessage("Caption a photo first", 4000)
            return None
        return saving.save_grid(self, grid, self.session.current_path, path)

    # Caption all.

    def caption_all(self) -> None:
        if self.session.batch_running:
            return
        if self.session.model_unavailable:
            self.statusBar().showMessage(NO_MODEL, 8000)
            return
        todo = self.session.pending_paths()
        if not todo:
            self.statusBar().showMessage("Every photo in the list is captioned", 4000)
            return
        self.progress.setRange(0, len(todo))
        self.progress.setValue(0)
        self.progress.show()
        self.cancel_button.show()
        self.statusBar().showMessage(f"Captioning {len(todo)} photos…")
        self.session.start_batch(todo)
        self._update_actions()

    def cancel_caption_all(self) -> None:
        if self.session.batch_running:
            self.session.cancel_batch()
            self.statusBar().showMessage("Cancelling…")

    def _on_batch_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)

    def _on_batch_finished(self, done: int, total: int, cancelled: bool) -> None:
        self.progress.hide()
        self.cancel_button.hide()
        if cancelled:
            message = f"Cancelled after {done} of {total} photos"
        else:
            captioned, failed = self.session.batch_counts()
            message = f"Captioned {captioned} photo{'s' * (captioned != 1)}" + (
                f", {failed} could not be read" * bool(failed)
            )
        self.statusBar().showMessage(message, 8000)
        self._update_actions()
        self.caption_all_finished.emit(done, total, cancelled)

    # The model and decoding settings.

    def choose_model_dir(self) -> None:
        self.show_settings_dock()
        self.settings_panel.choose_model_dir()

    def choose_hub_model(self) -> None:
        self.show_settings_dock()
        self.settings_panel.choose_hub_model()

    def set_model(self, model: str) -> None:
        """Use `model` (a shipped model's name, an absolute directory or "hf:OWNER/NAME")
        now and in later sessions."""
        self.settings_panel.set_model(model)
        self.session.use_model(model)

    def _on_model_loading(self) -> None:
        self.actions.about_model.setEnabled(False)
        self.banner.hide()
        self.docks["lstm"].setWindowTitle(panel_title(None))
        self.settings_panel.show_model_loading()
        self.statusBar().showMessage("Loading the model…")
        self._show_current_photo_again(run_model=True)

    def _on_model_loaded(self, info: ModelInfo) -> None:
        # Which listed photos the library holds captions of by this very model and options;
        # the shown photo, if shown from the library by another model's caption, is captioned.
        self.review.load_listed()
        path = self.session.current_path
        if path is not None and self.session.current is None and not self.review.known(path):
            item = self.image_model.item(self.image_model.row_of(path))
            runnable = item.status is not Status.FAILED and item.on_disk != "missing"
            if runnable and self.review.maps_asked != path:
                self.review.ask_model(path)
        self.settings_panel.show_model(info)
        self.docks["lstm"].setWindowTitle(panel_title(info.cell))
        self.banner.show_model(info)
        self.actions.about_model.setEnabled(True)
        if self.about_model_dialog is not None:
            self.about_model_dialog.set_model(info)
        loaded = f"Loaded the model {info.name} ({info.vocab_size:,} words) on {info.device}"
        if info.precision_note:
            loaded += f"; {info.precision_note}"
        self.statusBar().showMessage(loaded, 5000 if not info.precision_note else 15000)
        self.model_ready.emit(True)

    def _on_model_failed(self, message: str) -> None:
        # Only the first line: torch's errors run to hundreds of lines, and a tall label
        # would squeeze the docks beside it for the rest of the session.
        reason = message.partition("\n")[0]
        self.settings_panel.show_model(None, reason)
        self.banner.show_message(f"No model loaded: {reason}", warning=True, details=message)
        self.statusBar().showMessage(NO_MODEL, 10000)
        self.viewer.set_busy(False)
        path = self.session.current_path
        if path is not None:
            self.review.show_no_caption(self.image_model.item(self.image_model.row_of(path)))
        self.model_ready.emit(False)

    def show_settings_dock(self) -> None:
        self.docks["settings"].show()
        self.docks["settings"].raise_()
        self.settings_panel.beam_size.setFocus()

    def show_model_about(self) -> None:
        info = self.session.model_info
        if info is None:
            return
        if self.about_model_dialog is None:
            self.about_model_dialog = AboutModelDialog(self)
        self.about_model_dialog.set_model(info)
        self.about_model_dialog.show()
        self.about_model_dialog.raise_()

    def show_about(self) -> None:
        QMessageBox.about(
            self, "About Captioner",
            "<b>Captioner</b><p>Describes photos in a sentence with a CNN encoder and a "
            "soft-attention LSTM decoder (“Show, Attend and Tell”, Xu et al. 2015), and shows "
            "where it looked for every word.</p>",
        )  # fmt: skip

    def _update_actions(self) -> None:
        self.actions.update(
            has_caption=bool(self.review.shown_caption()),
            batch_running=self.session.batch_running,
            has_maps=self.session.current is not None,
        )
        self.actions.edit_caption.setEnabled(self.session.current_path is not None)

    # The caption library (gui/captions.py): known captions, edits, undo.

    def _connect_captions(self) -> None:
        review = self.review
        review.message.connect(self.statusBar().showMessage)
        review.caption_shown.connect(self.caption_shown)
        review.actions_changed.connect(self._update_actions)
        self.captions.availability_changed.connect(self.library_banner.show_problem)
        self.teaching.message.connect(self.statusBar().showMessage)
        self.teaching.changed.connect(self._on_options_changed)  # the model says other words
        stack = self.undo_stack
        stack.canUndoChanged.connect(self._on_undo_changed)
        stack.canRedoChanged.connect(self._on_undo_changed)
        stack.undoTextChanged.connect(self._on_undo_changed)
        stack.redoTextChanged.connect(self._on_undo_changed)

    def _on_undo_changed(self) -> None:
        stack = self.undo_stack
        self.actions.undo.setEnabled(stack.canUndo())
        self.actions.redo.setEnabled(stack.canRedo())
        self.actions.undo.setText(f"&Undo {stack.undoText()}".strip())
        self.actions.redo.setText(f"&Redo {stack.redoText()}".strip())

    def _open_library(self, path: str | None) -> None:
        """Open the caption library; a file that is not one is kept, and set aside for a new
        library only if the person agrees."""
        try:
            self.captions.open(path)
        except LibraryCorrupt as error:
            answer = QMessageBox.question(
                self,
                "The caption library cannot be read",
                f"{error}\n\nStart a new, empty caption library in its place? The file is "
                "kept: it is renamed, never deleted. If you choose No, captions you write are "
                "not saved until you choose another library (Settings → Caption Library…).",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No,
            )
            if answer == QMessageBox.StandardButton.Yes:
                moved = self.captions.set_aside_and_open()
                self.statusBar().showMessage(
                    f"Started a new caption library; the old file was kept as {moved}", 15000
                )
            else:
                self.captions.run_without_library(
                    f"Your captions are not being saved: {error.path} is not a caption library. "
                    "Choose another in Settings → Caption Library…"
                )
        self.teaching.library_opened()  # its taught words, to the model
        library = self.captions.library
        for model in learned_models(library.path if library is not None else None):
            self.settings_panel.add_learned_model(model)

    def choose_library(self) -> None:
        current = str(self.captions.path or "")
        path, _ = QFileDialog.getSaveFileName(
            self, "Caption library", current, "Caption library (*.sqlite3);;All files (*)",
            options=QFileDialog.Option.DontConfirmOverwrite,
        )  # fmt: skip
        if path:
            self.use_library(path)

    def use_library(self, path: str) -> None:
        """Keep captions in the library at `path` from now on (and in later sessions)."""
        self.settings.library_path = path
        self.captions.close()
        self.undo_stack.clear()
        self._open_library(path)
        self.review.load_listed()
        self._show_current_photo_again()

    def set_sidecars(self, on: bool) -> None:
        self.settings.sidecars = on
        self.captions.sidecars = on

    def _on_options_changed(self) -> None:
        self.review.load_listed()
        self._show_current_photo_again(run_model=True)

    # Search.

    def focus_search(self) -> None:
        self.docks["images"].show()
        self.search.box.setFocus()
        self.search.box.selectAll()

    # Taught words and learning from the person's captions (gui/teaching.py, the dialog).

    def teach_word(self) -> None:
        self.teaching.ask_and_teach(self, self.words.word_to_teach(), self.viewer.image)

    def learn_from_captions(self) -> None:
        info, library = self.session.model_info, self.captions.library
        if info is None or library is None:
            why = NO_MODEL if info is None else self.captions.problem or "No caption library"
            self.statusBar().showMessage(why, 8000)
            return
        if self.learn_dialog is None or not self.learn_dialog.running:
            if self.learn_dialog is not None:
                self.learn_dialog.deleteLater()
            self.learn_dialog = LearnDialog(
                self, library, info.path, info.name, self.settings.device
            )
            self.learn_dialog.model_learned.connect(self.settings_panel.add_learned_model)
            self.learn_dialog.use_model.connect(self.set_model)
        self.learn_dialog.show()
        self.learn_dialog.raise_()

    # Export.

    def export_captions(self) -> None:
        from gui.dialogs.export_captions import ExportDialog

        if self.captions.library is None:
            self.statusBar().showMessage(self.captions.problem or "No caption library", 8000)
            return
        selected = [
            self.image_model.item(index.row()).path
            for index in self.image_list.selectionModel().selectedRows()
        ]
        ExportDialog(self, self.captions, selected).exec()

    # Keys the focused widget leaves alone: images up/down, words left/right, Space plays.

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        typing = event.type() == QEvent.Type.KeyPress and _starts_typing(event)
        if typing and watched in (self.image_list, self.words) and self.session.current_path:
            self.review.start_editing(event.text())  # simply typing writes the caption
            return True
        if watched is self.image_list and event.type() == QEvent.Type.KeyPress:
            arrows = (Qt.Key.Key_Left, Qt.Key.Key_Right)  # in a grid they move among photos
            if event.key() in arrows and not event.modifiers() and not self.image_list.grid:
                self.words.step(1 if event.key() == Qt.Key.Key_Right else -1)
                return True
            if event.key() == Qt.Key.Key_Space and not event.modifiers():
                self.heatmaps.toggle_play()
                return True
        return super().eventFilter(watched, event)

    def keyPressEvent(self, event) -> None:
        key = event.key()
        if _starts_typing(event) and self.session.current_path is not None:
            self.review.start_editing(event.text())
        elif key in (Qt.Key.Key_Up, Qt.Key.Key_Down):
            self.step_image(1 if key == Qt.Key.Key_Down else -1)
        elif key in (Qt.Key.Key_Left, Qt.Key.Key_Right):
            self.words.step(1 if key == Qt.Key.Key_Right else -1)
        elif key == Qt.Key.Key_Space:
            self.heatmaps.toggle_play()
        else:
            super().keyPressEvent(event)


def _starts_typing(event) -> bool:
    """A key that starts writing the caption: a printable character, not Space (which plays
    the words), with no Ctrl, Alt or Meta held."""
    text = event.text()
    blocked = (
        Qt.KeyboardModifier.ControlModifier
        | Qt.KeyboardModifier.AltModifier
        | Qt.KeyboardModifier.MetaModifier
    )
    return (
        len(text) == 1 and text.isprintable() and not text.isspace()
        and not event.modifiers() & blocked
    )  # fmt: skip
