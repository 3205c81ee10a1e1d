"""The main window's commands: QActions with their shortcuts and tips, and the menu bar that
lists them. What each one does is the window's to wire (MainWindow._connect_actions)."""

from __future__ import annotations

from typing import Protocol

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QMenu, QMenuBar

from gui.settings import Settings, shipped_model_labels


class ActionHost(Protocol):
    """What the actions need of the window that owns them: the window keeps the actions (so
    their shortcuts work even while the menu bar is hidden), shows the menu bar, and opens
    what the Open Recent menu lists."""

    settings: Settings

    def addAction(self, text: str) -> QAction: ...

    def menuBar(self) -> QMenuBar: ...

    def open_paths(self, paths: list[str]) -> list[str]: ...


class WindowActions:
    def __init__(self, window: ActionHost) -> None:
        self.window = window
        seq = QKeySequence.StandardKey
        self.open_files = self._action("&Open Files…", seq.Open)
        self.open_folder = self._action("Open &Folder…", "Ctrl+Shift+O")
        self.recursive = self._action("Include &Subfolders")
        self.recursive.setCheckable(True)
        self.recursive.setChecked(window.settings.recursive)
        self.samples = self._action("Open Sa&mple Images")
        self.paste = self._action("&Paste Image", seq.Paste)
        self.copy = self._action("&Copy Caption", seq.Copy)
        self.sidecar = self._action(
            "&Save Caption as Text File", seq.Save,
            tip="Write the caption to a .txt file next to the photo",
        )  # fmt: skip
        self.metadata = self._action(
            "Write Caption into Photo &Metadata", "Ctrl+E",
            tip="Store the caption in the photo's XMP and EXIF description",
        )  # fmt: skip
        self.save_grid = self._action("Save Heatmap &Grid…", "Ctrl+Shift+S")
        self.remove = self._action("&Remove from List", seq.Delete)
        self.quit = self._action("&Quit", seq.Quit)
        self.next = self._action("&Next Image", "PgDown")
        self.previous = self._action("&Previous Image", "PgUp")
        self.play = self._action("Play words")
        self.play.setCheckable(True)
        self.play.setToolTip("Step through the words' heatmaps (Space)")
        self.grid = self._action("Attention grid", "Ctrl+G")
        self.grid.setToolTip("Every word's heatmap at once (Ctrl+G)")
        self.caption_all = self._action("Caption &All", "F5")
        self.cancel = self._action("&Cancel", "Esc")
        self.cancel.setEnabled(False)
        self.model_dir = self._action("&Model Directory…")
        self.hub_model = self._action(
            "Hugging Face &Hub Model…",
            tip="Open a model from the Hugging Face Hub by name (hf:OWNER/NAME)",
        )
        self.shipped_models = {  # a shipped model's name -> the action that uses it
            name: self._action(f"Use the {name.capitalize()} Model", tip=label)
            for name, label in shipped_model_labels().items()
        }
        self.decoding_options = self._action("Decoding &Options…")
        self.about_model = self._action("About This &Model…")
        self.about_model.setEnabled(False)
        self.about = self._action("&About Captioner")

    def _action(
        self, text: str, shortcut: str | QKeySequence.StandardKey | None = None, *, tip: str = ""
    ) -> QAction:
        action = self.window.addAction(text)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
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
        bar = self.window.menuBar()
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
        settings_menu.addActions([*self.shipped_models.values(), self.model_dir, self.hub_model])
        settings_menu.addAction(self.decoding_options)
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
