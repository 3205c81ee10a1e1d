"""The main window's commands: QActions with their shortcuts, and the menu bar that lists them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QMenu

from gui.settings import SHIPPED_MODELS

if TYPE_CHECKING:
    from gui.main_window import MainWindow


class WindowActions:
    def __init__(self, window: MainWindow) -> None:
        """Every action triggers one of `window`'s public methods; the window owns them, so
        their shortcuts work even while the menu bar is hidden."""
        self.window = window
        seq = QKeySequence.StandardKey
        self.open_files = self._action("&Open Files…", window.open_files_dialog, seq.Open)
        self.open_folder = self._action("Open &Folder…", window.open_folder_dialog, "Ctrl+Shift+O")
        self.recursive = QAction("Include &Subfolders", window, checkable=True)
        self.recursive.setChecked(window.settings.recursive)
        self.recursive.toggled.connect(window.set_recursive)
        self.samples = self._action("Open Sa&mple Images", window.open_samples)
        self.paste = self._action("&Paste Image", window.paste, seq.Paste)
        self.copy = self._action("&Copy Caption", window.copy_caption, seq.Copy)
        self.sidecar = self._action(
            "&Save Caption as Text File", window.save_sidecar, seq.Save,
            tip="Write the caption to a .txt file next to the photo",
        )  # fmt: skip
        self.metadata = self._action(
            "Write Caption into Photo &Metadata", window.write_metadata, "Ctrl+E",
            tip="Store the caption in the photo's XMP and EXIF description",
        )  # fmt: skip
        self.save_grid = self._action(
            "Save Heatmap &Grid…", lambda: window.save_grid(), "Ctrl+Shift+S"
        )
        self.remove = self._action("&Remove from List", window.remove_selected, seq.Delete)
        self.quit = self._action("&Quit", window.close, seq.Quit)
        self.next = self._action("&Next Image", lambda: window.step_image(1), "PgDown")
        self.previous = self._action("&Previous Image", lambda: window.step_image(-1), "PgUp")
        self.play = self._action("Play words", lambda: window.heatmaps.toggle_play())
        self.play.setCheckable(True)
        self.play.setToolTip("Step through the words' heatmaps (Space)")
        self.grid = self._action("Attention grid", window.show_grid, "Ctrl+G")
        self.grid.setToolTip("Every word's heatmap at once (Ctrl+G)")
        self.caption_all = self._action("Caption &All", window.caption_all, "F5")
        self.cancel = self._action("&Cancel", window.cancel_caption_all, "Esc")
        self.cancel.setEnabled(False)
        self.model_dir = self._action("&Model Directory…", window.choose_model_dir)
        self.hub_model = self._action(
            "Hugging Face &Hub Model…", window.choose_hub_model,
            tip="Open a model from the Hugging Face Hub by name (hf:OWNER/NAME)",
        )  # fmt: skip
        self.shipped_models = [
            self._action(
                f"Use the {name.capitalize()} Model",
                lambda _=False, shipped=name: window.set_model(shipped),
                tip=label,
            )
            for name, label in SHIPPED_MODELS.items()
        ]
        self.about_model = self._action("About This &Model…", window.show_model_about)
        self.about_model.setEnabled(False)
        self.about = self._action("&About Captioner", window.show_about)

    def _action(self, text: str, slot, shortcut=None, *, tip: str = "") -> QAction:
        action = QAction(text, self.window)
        if shortcut is not None:
            shortcuts = shortcut if isinstance(shortcut, list) else [shortcut]
            action.setShortcuts([QKeySequence(s) for s in shortcuts])
        if tip:
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        self.window.addAction(action)  # shortcuts work even while the menu bar is hidden
        return action

    def update(self, *, has_caption: bool, batch_running: bool) -> None:
        """Enable what applies: exports and heatmaps need a caption; Cancel a running batch."""
        for action in (
            self.copy, self.sidecar, self.metadata, self.save_grid, self.grid, self.play,
        ):  # fmt: skip
            action.setEnabled(has_caption)
        self.caption_all.setEnabled(not batch_running)
        self.cancel.setEnabled(batch_running)

    def fill_menu_bar(self, docks: dict[str, QDockWidget]) -> None:
        """The menu bar; View lists the docks to show or hide."""
        window = self.window
        bar = window.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addActions([self.open_files, self.open_folder, self.recursive])
        recent_menu = file_menu.addMenu("Open &Recent")
        recent_menu.aboutToShow.connect(lambda: self._fill_recent_menu(recent_menu))
        file_menu.addActions([self.samples, self.paste])
        file_menu.addSeparator()
        file_menu.addActions([self.sidecar, self.metadata, self.save_grid])
        file_menu.addSeparator()
        file_menu.addActions([self.remove, self.quit])
        edit_menu = bar.addMenu("&Edit")
        edit_menu.addAction(self.copy)
        view_menu = bar.addMenu("&View")
        view_menu.addActions([self.next, self.previous])
        view_menu.addSeparator()
        view_menu.addActions([self.play, self.grid])
        view_menu.addSeparator()
        view_menu.addActions([dock.toggleViewAction() for dock in docks.values()])
        caption_menu = bar.addMenu("&Caption")
        caption_menu.addActions([self.caption_all, self.cancel])
        settings_menu = bar.addMenu("&Settings")
        settings_menu.addActions([*self.shipped_models, self.model_dir, self.hub_model])
        show_settings = settings_menu.addAction("Decoding &Options…")
        show_settings.triggered.connect(window.show_settings_dock)
        help_menu = bar.addMenu("&Help")
        help_menu.addActions([self.about_model, self.about])

    def _fill_recent_menu(self, menu: QMenu) -> None:
        menu.clear()
        settings = self.window.settings
        recent = settings.recent
        for number, path in enumerate(recent, 1):
            action = menu.addAction(f"&{number % 10} {path}")
            action.triggered.connect(lambda _=False, p=path: self.window.open_paths([p]))
        if recent:
            menu.addSeparator()
        clear = menu.addAction("&Clear Recent")
        clear.setEnabled(bool(recent))
        clear.triggered.connect(settings.clear_recent)
