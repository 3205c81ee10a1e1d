"""The main window: image list, photo with heatmaps, caption, LSTM chart, settings, menus.

All model work happens in the CaptionWorker's thread; this class only sends it requests and
shows what comes back. Results are cached per photo, keyed by the model (a generation number,
bumped on every load) and the decoding options, so a photo seen before shows at once, and a
changed beam size re-runs only the decoder on the worker's cached encoder features.
"""

from __future__ import annotations

import os
import textwrap
import time
from collections import OrderedDict
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QEvent, QObject, QStandardPaths, Qt, QThread, QTimer, Signal
from PySide6.QtGui import QAction, QGuiApplication, QImage, QKeySequence
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

from captioner.options import DecodeOptions
from gui.convert import pil_to_qimage
from gui.export import save_png
from gui.files import OPEN_FILTER, collect_images, sample_images_dir
from gui.garbage import UiThreadGarbageCollector
from gui.models.image_list import ImageListModel, PathRole, Status
from gui.settings import SHIPPED_MODELS, Settings
from gui.thumbnails import Thumbnailer
from gui.widgets.about_model import AboutModelDialog
from gui.widgets.attention_grid import AttentionGridDialog
from gui.widgets.banner import NO_MODEL, ModelBanner
from gui.widgets.caption_panel import BeamList, CaptionPanel, format_score
from gui.widgets.image_list import ImageListView
from gui.widgets.lstm_panel import LstmPanel
from gui.widgets.settings_panel import SettingsPanel
from gui.widgets.viewer import ImageViewer
from gui.worker import CaptionFailure, CaptionOutcome, CaptionWorker, ModelInfo

RESULT_CACHE_SIZE = 64  # full results (attention maps, gates) kept for instant re-selection
DISPLAY_CACHE_SIZE = 8  # viewer copies of photos, a few megabytes each
PLAY_INTERVAL_MS = 700
GRID_CELL = 224


class _LruCache(OrderedDict):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key, value) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)

    def fetch(self, key):
        if key in self:
            self.move_to_end(key)
        return self.get(key)


class MainWindow(QMainWindow):
    caption_shown = Signal(str)  # path: its caption is on screen
    overlay_shown = Signal(int)  # word index whose heatmap the viewer now draws
    model_ready = Signal(bool)  # a model load finished: True loaded, False failed
    caption_all_finished = Signal(int, int, bool)  # done, total, cancelled

    def __init__(
        self,
        settings: Settings,
        *,
        paths: list[str] | None = None,
        model_dir: str | None = None,
        data_dir: str | None = None,
    ) -> None:
        """paths: photos or folders to open, else the samples on first start; model_dir: a
        model for this run only, a shipped model's name or an absolute directory (else the one
        in Settings); data_dir: where pasted images are stored."""
        super().__init__()
        self.settings = settings
        self.setWindowTitle("Captioner")
        self.setAcceptDrops(True)
        self._data_dir = Path(
            data_dir
            or QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
        )
        self._options = settings.decode_options
        self._generation = 0
        self._model_info: ModelInfo | None = None
        self._model_error = ""
        self._model = settings.model  # a shipped model's name or a directory
        self._results: _LruCache = _LruCache(RESULT_CACHE_SIZE)  # path -> CaptionOutcome
        self._displays: _LruCache = _LruCache(DISPLAY_CACHE_SIZE)  # path -> (PIL, QImage)
        self._current_path: str | None = None
        self._photo_error = ""  # the status bar's last message about the shown photo
        self._beams: list = []  # CaptionResult per beam of the shown photo
        self._timing = ""  # how long the shown caption took
        self._current = None  # the CaptionResult shown (one of _beams)
        self._pinned_word = -1
        self._hovered_word = -1
        self._heat_base: Image.Image | None = None  # the photo at the size it is drawn
        self._overlays: dict[int, QImage] = {}  # word -> heatmap at _heat_base's size
        self._batch_running = False
        self._grid_dialog: AttentionGridDialog | None = None
        self._about_model_dialog: AboutModelDialog | None = None
        self._garbage_collector = UiThreadGarbageCollector(self)  # before any worker thread

        self._create_actions()
        self._create_widgets()
        self._create_menus()
        self._start_worker()
        self._restore_window()

        self._load_model(model_dir if model_dir is not None else settings.model)
        if paths:
            self.open_paths(paths)
        elif settings.first_run:
            self.open_samples()
        settings.mark_started()

    # Building the window.

    def _action(self, text: str, slot, shortcut=None, *, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            shortcuts = shortcut if isinstance(shortcut, list) else [shortcut]
            action.setShortcuts([QKeySequence(s) for s in shortcuts])
        if tip:
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        self.addAction(action)  # shortcuts work even while the menu bar is hidden
        return action

    def _create_actions(self) -> None:
        seq = QKeySequence.StandardKey
        self.open_action = self._action("&Open Files…", self.open_files_dialog, seq.Open)
        self.open_folder_action = self._action(
            "Open &Folder…", self.open_folder_dialog, "Ctrl+Shift+O"
        )
        self.recursive_action = QAction("Include &Subfolders", self, checkable=True)
        self.recursive_action.setChecked(self.settings.recursive)
        self.recursive_action.toggled.connect(self._set_recursive)
        self.samples_action = self._action("Open Sa&mple Images", self.open_samples)
        self.paste_action = self._action("&Paste Image", self.paste, seq.Paste)
        self.copy_action = self._action("&Copy Caption", self.copy_caption, seq.Copy)
        self.sidecar_action = self._action(
            "&Save Caption as Text File", self.save_sidecar, seq.Save,
            tip="Write the caption to a .txt file next to the photo",
        )  # fmt: skip
        self.metadata_action = self._action(
            "Write Caption into Photo &Metadata", self.write_metadata, "Ctrl+E",
            tip="Store the caption in the photo's XMP and EXIF description",
        )  # fmt: skip
        self.save_grid_action = self._action("Save Heatmap &Grid…", self.save_grid, "Ctrl+Shift+S")
        self.remove_action = self._action("&Remove from List", self.remove_selected, seq.Delete)
        self.quit_action = self._action("&Quit", self.close, seq.Quit)
        self.next_action = self._action("&Next Image", lambda: self.step_image(1), "PgDown")
        self.previous_action = self._action("&Previous Image", lambda: self.step_image(-1), "PgUp")
        self.play_action = self._action("Play words", self.toggle_play)
        self.play_action.setCheckable(True)
        self.play_action.setToolTip("Step through the words' heatmaps (Space)")
        self.grid_action = self._action("Attention grid", self.show_grid, "Ctrl+G")
        self.grid_action.setToolTip("Every word's heatmap at once (Ctrl+G)")
        self.caption_all_action = self._action("Caption &All", self.caption_all, "F5")
        self.cancel_action = self._action("&Cancel", self.cancel_caption_all, "Esc")
        self.cancel_action.setEnabled(False)
        self.model_dir_action = self._action("&Model Directory…", self.choose_model_dir)
        self.shipped_model_actions = [
            self._action(
                f"Use the {name.capitalize()} Model",
                lambda _=False, shipped=name: self.set_model(shipped),
                tip=label,
            )
            for name, label in SHIPPED_MODELS.items()
        ]
        self.about_model_action = self._action("About This &Model…", self.show_model_about)
        self.about_model_action.setEnabled(False)
        self.about_action = self._action("&About Captioner", self.show_about)

    def _create_widgets(self) -> None:
        self.image_model = ImageListModel(self)
        self.image_list = ImageListView()
        self.image_list.setModel(self.image_model)
        self.image_list.selectionModel().currentChanged.connect(self._on_current_changed)
        self.image_list.installEventFilter(self)

        self.banner = ModelBanner()
        self.banner.choose_model.connect(self.choose_model_dir)
        self.banner.about_model.connect(self.show_model_about)
        self.viewer = ImageViewer()
        self.caption_panel = CaptionPanel(self.play_action, self.grid_action)
        self.words = self.caption_panel.words
        self.words.word_hovered.connect(self._on_word_hovered)
        self.words.word_selected.connect(self._on_word_selected)
        self.caption_panel.opacity.setValue(round(self.settings.opacity * 100))
        self.caption_panel.opacity.valueChanged.connect(self._on_opacity_changed)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.banner)
        layout.addWidget(self.viewer, 1)
        layout.addWidget(self.caption_panel)
        self.setCentralWidget(central)

        self.beam_list = BeamList()
        self.beam_list.beam_chosen.connect(self._show_beam)
        self.lstm_panel = LstmPanel()
        self.lstm_panel.word_clicked.connect(self.words.select)
        self.settings_panel = SettingsPanel(self._options, self.settings.device, self._model)
        self.settings_panel.options_changed.connect(self._on_options_changed)
        self.settings_panel.device_changed.connect(self._on_device_changed)
        self.settings_panel.model_chosen.connect(self.set_model)

        self.docks = {}
        for name, title, widget, area in (
            ("images", "Images", self.image_list, Qt.DockWidgetArea.LeftDockWidgetArea),
            ("beams", "Alternatives", self.beam_list, Qt.DockWidgetArea.RightDockWidgetArea),
            ("lstm", "Inside the LSTM", self.lstm_panel, Qt.DockWidgetArea.RightDockWidgetArea),
            ("settings", "Settings", self.settings_panel, Qt.DockWidgetArea.RightDockWidgetArea),
        ):
            dock = QDockWidget(title, self)
            dock.setObjectName(f"{name}_dock")  # saveState needs names
            dock.setWidget(widget)
            self.addDockWidget(area, dock)
            self.docks[name] = dock
        self.tabifyDockWidget(self.docks["lstm"], self.docks["settings"])
        self.docks["lstm"].raise_()
        self.resizeDocks(
            [self.docks["images"], self.docks["beams"]], [300, 400], Qt.Orientation.Horizontal
        )
        self.resizeDocks(
            [self.docks["beams"], self.docks["lstm"]], [170, 420], Qt.Orientation.Vertical
        )

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

        self._play_timer = QTimer(self, interval=PLAY_INTERVAL_MS)
        self._play_timer.timeout.connect(self._play_step)
        self._resize_timer = QTimer(self, singleShot=True, interval=120)
        self._resize_timer.timeout.connect(self._refresh_overlay)
        self.viewer.resized.connect(self._resize_timer.start)
        self._update_actions()

    def _create_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addActions([self.open_action, self.open_folder_action, self.recursive_action])
        self.recent_menu = file_menu.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        file_menu.addActions([self.samples_action, self.paste_action])
        file_menu.addSeparator()
        file_menu.addActions([self.sidecar_action, self.metadata_action, self.save_grid_action])
        file_menu.addSeparator()
        file_menu.addActions([self.remove_action, self.quit_action])
        edit_menu = bar.addMenu("&Edit")
        edit_menu.addAction(self.copy_action)
        view_menu = bar.addMenu("&View")
        view_menu.addActions([self.next_action, self.previous_action])
        view_menu.addSeparator()
        view_menu.addActions([self.play_action, self.grid_action])
        view_menu.addSeparator()
        view_menu.addActions([dock.toggleViewAction() for dock in self.docks.values()])
        caption_menu = bar.addMenu("&Caption")
        caption_menu.addActions([self.caption_all_action, self.cancel_action])
        settings_menu = bar.addMenu("&Settings")
        settings_menu.addActions([*self.shipped_model_actions, self.model_dir_action])
        show_settings = settings_menu.addAction("Decoding &Options…")
        show_settings.triggered.connect(self._show_settings_dock)
        help_menu = bar.addMenu("&Help")
        help_menu.addActions([self.about_model_action, self.about_action])

    def _start_worker(self) -> None:
        self.worker = CaptionWorker()
        self.worker_thread = QThread(self)
        self.worker_thread.setObjectName("caption-worker")
        self.worker.moveToThread(self.worker_thread)
        self.worker_thread.started.connect(self.worker.run)
        self.worker.model_loaded.connect(self._on_model_loaded)
        self.worker.model_failed.connect(self._on_model_failed)
        self.worker.caption_started.connect(self._on_caption_started)
        self.worker.captioned.connect(self._on_captioned)
        self.worker.caption_failed.connect(self._on_caption_failed)
        self.worker.display_loaded.connect(self._on_display_loaded)
        self.worker.batch_progress.connect(self._on_batch_progress)
        self.worker.batch_finished.connect(self._on_batch_finished)
        self.worker_thread.start()

    def _restore_window(self) -> None:
        geometry, state = self.settings.window_state()
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1320, 840)
        if state is not None:
            self.restoreState(state)

    def closeEvent(self, event) -> None:
        self._play_timer.stop()
        self.settings.save_window_state(self.saveGeometry(), self.saveState())
        self.settings.sync()
        self.worker.cancel_batch()
        self.worker.stop()
        self.worker_thread.quit()
        self.worker_thread.wait()
        self.thumbnailer.shutdown()
        self._garbage_collector.stop()
        if self._grid_dialog is not None:
            self._grid_dialog.close()
        if self._about_model_dialog is not None:
            self._about_model_dialog.close()
        super().closeEvent(event)

    # Opening photos.

    def open_paths(self, paths: list[str], *, remember: bool = True) -> list[str]:
        """Add photos and folders to the list and select the first of them; returns the photos."""
        images = collect_images(paths, recursive=self.settings.recursive)
        if remember:
            for path in reversed(paths[:10]):
                self.settings.add_recent(os.path.abspath(path))
        if not images:
            self.statusBar().showMessage("No photos found in " + ", ".join(paths), 8000)
            return []
        rows = self.image_model.add_paths(images)
        self.select_row(rows[0])
        self.statusBar().showMessage(f"Opened {len(images)} photo{'s' * (len(images) != 1)}", 4000)
        return images

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

    def _set_recursive(self, on: bool) -> None:
        self.settings.recursive = on

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self.settings.recent
        for number, path in enumerate(recent, 1):
            action = self.recent_menu.addAction(f"&{number % 10} {path}")
            action.triggered.connect(lambda _=False, p=path: self.open_paths([p]))
        if recent:
            self.recent_menu.addSeparator()
        clear = self.recent_menu.addAction("&Clear Recent")
        clear.setEnabled(bool(recent))
        clear.triggered.connect(self.settings.clear_recent)

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
        """Pasted or dropped pixels become a PNG file, so they can be captioned and exported."""
        self._data_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = self._data_dir / f"pasted-{stamp}-{os.urandom(2).hex()}.png"
        temporary = path.with_name(f".{path.name}.tmp")
        if not image.save(str(temporary), "PNG"):
            self.statusBar().showMessage(f"Could not save the pasted image to {path}", 8000)
            return
        os.replace(temporary, path)
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
        rows = [index.row() for index in self.image_list.selectionModel().selectedRows()]
        if rows:
            self.image_model.remove_rows(rows)
            if self.image_model.rowCount():
                self.select_row(min(min(rows), self.image_model.rowCount() - 1))
            else:
                self._current_path = None
                self._show_nothing()

    # Choosing a photo.

    def select_row(self, row: int) -> None:
        index = self.image_model.index(row)
        self.image_list.setCurrentIndex(index)
        self.image_list.scrollTo(index)

    def step_image(self, delta: int) -> None:
        count = self.image_model.rowCount()
        if count:
            current = self.image_list.currentIndex().row()
            self.select_row(min(max(current + delta, 0), count - 1))

    def _on_current_changed(self, current, _previous) -> None:
        if current.isValid():
            self.show_photo(current.data(PathRole))

    def show_photo(self, path: str) -> None:
        """Show a photo with its caption; ask the worker for whatever is not cached."""
        self._stop_play()
        self._current_path = path
        if self.statusBar().currentMessage() == self._photo_error:
            self.statusBar().clearMessage()  # it was about the photo shown before
        self.setWindowTitle(f"{os.path.basename(path)} — Captioner")
        item = self.image_model.item(self.image_model.row_of(path))
        display = self._displays.fetch(path)
        if display is not None:
            self.viewer.set_image(display[1])
        else:
            thumbnail = item.thumbnail.toImage() if item.thumbnail is not None else None
            self.viewer.set_image(thumbnail)
            self.viewer.set_placeholder("Loading…")
        outcome = self._fresh_result(path)
        if outcome is not None:
            self._show_result(outcome)
            if display is not None:
                return
        else:
            self._show_no_caption(item)
        if self._model_info is None and self._model_error:
            if display is None:  # nothing can be captioned, but the photo can be shown
                self.worker.request_display(path, self._generation)
            return
        self.worker.request_caption(
            path, self._options, self._generation, want_display=display is None
        )
        self.viewer.set_busy(True)

    def _fresh_result(self, path: str) -> CaptionOutcome | None:
        outcome = self._results.fetch(path)
        if outcome is None or outcome.generation != self._generation:
            return None
        return outcome if outcome.options == self._options else None

    def _show_no_caption(self, item) -> None:
        self._beams, self._current = [], None
        if item.status is Status.FAILED:
            text = f"Cannot caption this file: {item.error}"
            self.viewer.set_placeholder(f"{item.name}\n{item.error}")
        elif self._model_info is None and self._model_error:
            text = NO_MODEL
        else:
            text = "Captioning…"
        self.words.set_words([], text)
        self.caption_panel.summary.setText("")
        self.beam_list.set_beams([])
        self.lstm_panel.clear()
        self._reset_overlays()
        self._update_actions()

    def _show_nothing(self) -> None:
        self.setWindowTitle("Captioner")
        self.viewer.set_image(None)
        self.viewer.set_placeholder("Open photos with Ctrl+O, or drop them here")
        self.viewer.set_busy(False)
        self._beams, self._current = [], None
        self.words.set_words([], "")
        self.caption_panel.summary.setText("")
        self.beam_list.set_beams([])
        self.lstm_panel.clear()
        self._update_actions()

    # Results from the worker.

    def _on_caption_started(self, path: str) -> None:
        row = self.image_model.row_of(path)
        if row is not None and self.image_model.item(row).status is not Status.CAPTIONED:
            self.image_model.set_status(path, Status.WORKING)

    def _on_captioned(self, outcome: CaptionOutcome) -> None:
        if outcome.generation != self._generation:
            return  # from a model that has since been replaced
        path = outcome.path
        if outcome.display is not None:
            self._displays.put(path, (outcome.display, pil_to_qimage(outcome.display)))
        fresh = outcome.options == self._options
        self.image_model.set_status(
            path, Status.CAPTIONED if fresh else Status.PENDING, caption=outcome.result.text
        )
        if not fresh:
            return
        self._results.put(path, outcome)
        if path != self._current_path:
            return
        self.viewer.set_busy(False)
        if outcome.display is not None:
            self.viewer.set_image(self._displays[path][1])
            self._heat_base = None  # the heatmaps now go on the full-quality photo
        shown = [beam.text for beam in self._beams]
        if shown and shown == [beam.text for beam in outcome.result.beams or [outcome.result]]:
            # The same caption again (it was shown from the cache while the photo loaded):
            # keep the user's word selection and redraw its heatmap on the sharp photo.
            self._refresh_overlay()
            self.caption_shown.emit(path)
        else:
            self._show_result(outcome)

    def _on_caption_failed(self, failure: CaptionFailure) -> None:
        if failure.bad_image:
            self.image_model.set_status(failure.path, Status.FAILED, error=failure.reason)
        else:
            self.image_model.set_status(failure.path, Status.PENDING)
        if failure.generation == self._generation or failure.bad_image:
            self._show_photo_error(failure.path, failure.reason)
        if failure.path == self._current_path:
            self.viewer.set_busy(False)
            row = self.image_model.row_of(failure.path)
            if row is not None:
                self._show_no_caption(self.image_model.item(row))

    def _on_thumbnail(self, path: str, image: QImage) -> None:
        self.image_model.set_thumbnail(path, image)
        if path == self._current_path and self.viewer.image is None:
            self.viewer.set_image(image)

    def _on_thumbnail_failed(self, path: str, reason: str) -> None:
        self.image_model.set_status(path, Status.FAILED, error=reason)
        self._show_photo_error(path, reason)
        if path == self._current_path and self._current is None:
            self._show_no_caption(self.image_model.item(self.image_model.row_of(path)))

    def _show_photo_error(self, path: str, reason: str) -> None:
        # Only the shown photo's: the list marks the others, and "Caption all" counts them.
        if path == self._current_path:
            self._photo_error = f"{os.path.basename(path)}: {reason}"
            self.statusBar().showMessage(self._photo_error, 10000)

    def _on_display_loaded(self, path: str, display: Image.Image) -> None:
        self._displays.put(path, (display, pil_to_qimage(display)))
        if path == self._current_path:
            self.viewer.set_image(self._displays[path][1])

    def _show_result(self, outcome: CaptionOutcome) -> None:
        result = outcome.result
        self._beams = result.beams or [result]
        self.beam_list.set_beams([(beam.text, beam.score) for beam in self._beams])
        self._timing = f"captioned in {outcome.seconds * 1000:.0f} ms" + (
            "" if outcome.encoded else " (decoder only, features cached)"
        )
        self._show_beam(0)
        self.caption_shown.emit(outcome.path)

    def _show_beam(self, index: int) -> None:
        if not 0 <= index < len(self._beams):
            return
        self._stop_play()
        beam = self._beams[index]
        self._current = beam
        self._pinned_word = self._hovered_word = -1
        self._reset_overlays()
        # Copy models keep their nouns out of the vocabulary path: a noun said was copied.
        copy_words = self._model_info.copy_words if self._model_info is not None else ()
        copied = [token in copy_words for token in beam.tokens]
        self.words.set_words(beam.tokens, "(an empty caption)", copied)
        words = len(beam.tokens)
        self.caption_panel.summary.setText(
            f"Beam {index + 1} of {len(self._beams)} · score {format_score(beam.score)} · "
            f"{words} word{'s' * (words != 1)} · {self._timing}"
        )
        cell = self._model_info.cell if self._model_info is not None else "lstm"
        self.lstm_panel.set_caption(
            beam.tokens, beam.gates, beam.context_gate, cell, copy_gate=beam.copy_gate
        )
        self._update_actions()

    # Heatmaps.

    def _reset_overlays(self) -> None:
        self._overlays.clear()
        self._heat_base = None
        self.viewer.set_overlay(None)

    def _on_word_hovered(self, index: int) -> None:
        self._hovered_word = index
        self._show_word(index if index >= 0 else self._pinned_word)

    def _on_word_selected(self, index: int) -> None:
        self._pinned_word = index
        self.lstm_panel.set_selected(index)
        self._show_word(index)

    def _on_opacity_changed(self, value: int) -> None:
        self.settings.opacity = value / 100
        self._overlays.clear()
        self._refresh_overlay()

    def _refresh_overlay(self) -> None:
        shown = self._hovered_word if self._hovered_word >= 0 else self._pinned_word
        if self.viewer.overlay is not None or shown >= 0:
            self._show_word(shown)

    def _show_word(self, index: int) -> None:
        """Blend word `index`'s attention map over the photo (-1: the plain photo)."""
        display = self._displays.get(self._current_path) if self._current_path else None
        if self._current is None or display is None or not 0 <= index < len(self._current.tokens):
            self.viewer.set_overlay(None)
            return
        size = self.viewer.overlay_size()
        target = (max(size.width(), 1), max(size.height(), 1))
        if self._heat_base is None or self._heat_base.size != target:
            # Heatmaps are blended at the size they are drawn, never at full resolution.
            self._heat_base = display[0].resize(target, Image.Resampling.BILINEAR)
            self._overlays.clear()
        if index not in self._overlays:
            from captioner.heatmap import overlay

            opacity = self.caption_panel.opacity.value() / 100
            blended = overlay(self._heat_base, self._current.alphas[index], opacity)
            self._overlays[index] = pil_to_qimage(blended)
        self.viewer.set_overlay(self._overlays[index], self._current.tokens[index])
        self.overlay_shown.emit(index)

    def toggle_play(self) -> None:
        if self._play_timer.isActive():
            self._stop_play()
        elif self._current is not None and self._current.tokens:
            self.play_action.setChecked(True)
            self.play_action.setText("Stop")
            self.words.select(0)
            self._play_timer.start()
        else:
            self.play_action.setChecked(False)

    def _play_step(self) -> None:
        following = self.words.selected + 1
        if self._current is None or following >= len(self._current.tokens):
            self._stop_play()
        else:
            self.words.select(following)

    def _stop_play(self) -> None:
        self._play_timer.stop()
        self.play_action.setChecked(False)
        self.play_action.setText("Play words")

    def attention_grid(self) -> Image.Image | None:
        display = self._displays.get(self._current_path) if self._current_path else None
        if self._current is None or display is None or not self._current.tokens:
            return None
        from captioner.heatmap import attention_grid

        opacity = self.caption_panel.opacity.value() / 100
        return attention_grid(
            display[0], self._current.tokens, self._current.alphas,
            columns=5, cell_size=GRID_CELL, opacity=opacity,
        )  # fmt: skip

    def show_grid(self) -> None:
        grid = self.attention_grid()
        if grid is None:
            self.statusBar().showMessage("Caption a photo first", 4000)
            return
        if self._grid_dialog is None:
            self._grid_dialog = AttentionGridDialog(self)
            self._grid_dialog.save_requested.connect(self.save_grid)
        self._grid_dialog.set_grid(grid, os.path.basename(self._current_path))
        self._grid_dialog.show()
        self._grid_dialog.raise_()

    def save_grid(self, path: str | None = None) -> Path | None:
        grid = self.attention_grid()
        if grid is None:
            self.statusBar().showMessage("Caption a photo first", 4000)
            return None
        if not path:
            suggestion = str(Path(self._current_path).with_name(
                Path(self._current_path).stem + "-attention.png"
            ))  # fmt: skip
            path, _ = QFileDialog.getSaveFileName(
                self, "Save heatmap grid", suggestion, "PNG image (*.png)"
            )
            if not path:
                return None
        try:
            saved = save_png(grid, path)
        except OSError as error:
            self.statusBar().showMessage(f"Could not save {path}: {error.strerror or error}", 10000)
            return None
        self.statusBar().showMessage(f"Saved the heatmap grid to {saved}", 6000)
        return saved

    # Exporting the caption.

    def copy_caption(self) -> None:
        if self._current is not None:
            QGuiApplication.clipboard().setText(self._current.text)
            self.statusBar().showMessage("Caption copied", 3000)

    def save_sidecar(self) -> Path | None:
        if self._current is None:
            return None
        from captioner.metadata import sidecar_path, write_sidecar

        try:
            try:
                written = write_sidecar(self._current_path, self._current.text)
            except FileExistsError:
                answer = QMessageBox.question(
                    self, "Replace caption file?",
                    f"{sidecar_path(self._current_path)} already exists. Replace it?",
                )  # fmt: skip
                if answer != QMessageBox.StandardButton.Yes:
                    return None
                written = write_sidecar(self._current_path, self._current.text, overwrite=True)
        except OSError as error:
            self.statusBar().showMessage(f"Could not write the caption file: {error}", 10000)
            return None
        self.statusBar().showMessage(f"Saved the caption to {written}", 6000)
        return written

    def write_metadata(self) -> bool:
        if self._current is None:
            return False
        from captioner.metadata import existing_description, write_caption_metadata

        path, caption = self._current_path, self._current.text
        try:
            try:
                write_caption_metadata(path, caption)
            except FileExistsError:
                # A description already there was most likely typed by a person.
                existing = textwrap.shorten(existing_description(path) or "", 300)
                answer = QMessageBox.question(
                    self, "Replace description?",
                    f"{os.path.basename(path)} already has a description:\n\n{existing}\n\n"
                    "Replace it with the caption?",
                )  # fmt: skip
                if answer != QMessageBox.StandardButton.Yes:
                    return False
                write_caption_metadata(path, caption, overwrite=True)
        except (ValueError, OSError) as error:
            self.statusBar().showMessage(str(error), 10000)
            return False
        self.statusBar().showMessage(
            f"Stored the caption in {os.path.basename(self._current_path)}'s metadata", 6000
        )
        return True

    # Caption all.

    def caption_all(self) -> None:
        if self._batch_running:
            return
        if self._model_info is None and self._model_error:
            self.statusBar().showMessage(NO_MODEL, 8000)
            return
        todo = [
            item.path
            for item in self.image_model.items()
            if item.status in (Status.PENDING, Status.WORKING)
        ]
        if not todo:
            self.statusBar().showMessage("Every photo in the list is captioned", 4000)
            return
        self._batch_running = True
        self.progress.setRange(0, len(todo))
        self.progress.setValue(0)
        self.progress.show()
        self.cancel_button.show()
        self.statusBar().showMessage(f"Captioning {len(todo)} photos…")
        self.worker.start_batch(todo, self._options)
        self._update_actions()

    def cancel_caption_all(self) -> None:
        if self._batch_running:
            self.worker.cancel_batch()
            self.statusBar().showMessage("Cancelling…")

    def _on_batch_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)

    def _on_batch_finished(self, done: int, total: int, cancelled: bool) -> None:
        self._batch_running = False
        self.progress.hide()
        self.cancel_button.hide()
        if cancelled:
            message = f"Cancelled after {done} of {total} photos"
        else:
            failed = sum(item.status is Status.FAILED for item in self.image_model.items())
            message = f"Captioned {total} photos" + (f", {failed} could not be read" * bool(failed))
        self.statusBar().showMessage(message, 8000)
        self._update_actions()
        self.caption_all_finished.emit(done, total, cancelled)

    # The model and decoding settings.

    def choose_model_dir(self) -> None:
        self._show_settings_dock()
        self.settings_panel.choose_model_dir()

    def set_model(self, model: str) -> None:
        """Use `model` (a shipped model's name or an absolute directory) now and in later
        sessions."""
        self.settings.model = model
        self.settings_panel.set_model(model)
        self._load_model(model)

    def _on_device_changed(self, device: str) -> None:
        self.settings.device = device
        self._load_model(self._model)

    def _load_model(self, model: str) -> None:
        self._model = model
        self._generation += 1
        self._model_info, self._model_error = None, ""
        self.about_model_action.setEnabled(False)
        self._results.clear()
        self.image_model.mark_all_pending()
        if self._batch_running:
            self.worker.cancel_batch()
        self.banner.hide()
        self.settings_panel.show_model_loading()
        self.statusBar().showMessage("Loading the model…")
        self.worker.load_model(model, self.settings.device, self._generation)
        if self._current_path is not None:
            self.show_photo(self._current_path)

    def _on_model_loaded(self, info: ModelInfo) -> None:
        if info.generation != self._generation:
            return
        self._model_info = info
        self.settings_panel.show_model(info)
        self.docks["lstm"].setWindowTitle(f"Inside the {info.cell.upper()}")
        self.banner.show_model(info)
        self.about_model_action.setEnabled(True)
        if self._about_model_dialog is not None:
            self._about_model_dialog.set_model(info)
        self.statusBar().showMessage(
            f"Loaded the model {info.name} ({info.vocab_size:,} words) on {info.device}", 5000
        )
        self.model_ready.emit(True)

    def _on_model_failed(self, generation: int, message: str) -> None:
        if generation != self._generation:
            return
        self._model_error = message
        # Only the first line: torch's errors run to hundreds of lines, and a tall label
        # would squeeze the docks beside it for the rest of the session.
        reason = message.partition("\n")[0]
        self.settings_panel.show_model(None, reason)
        self.banner.show_message(f"No model loaded: {reason}", warning=True, details=message)
        self.statusBar().showMessage(NO_MODEL, 10000)
        self.viewer.set_busy(False)
        if self._current_path is not None:
            row = self.image_model.row_of(self._current_path)
            self._show_no_caption(self.image_model.item(row))
            if self._current_path not in self._displays:
                self.worker.request_display(self._current_path, self._generation)
        self.model_ready.emit(False)

    def _on_options_changed(self, options: DecodeOptions) -> None:
        if options == self._options:
            return
        self._options = options
        self.settings.decode_options = options
        self.worker.set_batch_options(options)
        self.image_model.mark_all_pending()
        if self._current_path is not None:
            self.show_photo(self._current_path)

    def _show_settings_dock(self) -> None:
        self.docks["settings"].show()
        self.docks["settings"].raise_()
        self.settings_panel.beam_size.setFocus()

    def show_model_about(self) -> None:
        if self._model_info is None:
            return
        if self._about_model_dialog is None:
            self._about_model_dialog = AboutModelDialog(self)
        self._about_model_dialog.set_model(self._model_info)
        self._about_model_dialog.show()
        self._about_model_dialog.raise_()

    def show_about(self) -> None:
        QMessageBox.about(
            self, "About Captioner",
            "<b>Captioner</b><p>Describes photos in a sentence with a CNN encoder and a "
            "soft-attention LSTM decoder (“Show, Attend and Tell”, Xu et al. 2015), and shows "
            "where it looked for every word.</p>",
        )  # fmt: skip

    def _update_actions(self) -> None:
        has_caption = self._current is not None
        for action in (
            self.copy_action, self.sidecar_action, self.metadata_action,
            self.save_grid_action, self.grid_action, self.play_action,
        ):  # fmt: skip
            action.setEnabled(has_caption)
        self.caption_all_action.setEnabled(not self._batch_running)
        self.cancel_action.setEnabled(self._batch_running)

    # Keys the focused widget leaves alone: images up/down, words left/right, Space plays.

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.image_list and event.type() == QEvent.Type.KeyPress:
            if event.key() in (Qt.Key.Key_Left, Qt.Key.Key_Right) and not event.modifiers():
                self.words.step(1 if event.key() == Qt.Key.Key_Right else -1)
                return True
            if event.key() == Qt.Key.Key_Space and not event.modifiers():
                self.toggle_play()
                return True
        return super().eventFilter(watched, event)

    def keyPressEvent(self, event) -> None:
        key = event.key()
        if key in (Qt.Key.Key_Up, Qt.Key.Key_Down):
            self.step_image(1 if key == Qt.Key.Key_Down else -1)
        elif key in (Qt.Key.Key_Left, Qt.Key.Key_Right):
            self.words.step(1 if key == Qt.Key.Key_Right else -1)
        elif key == Qt.Key.Key_Space:
            self.toggle_play()
        else:
            super().keyPressEvent(event)
