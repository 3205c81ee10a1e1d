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
        self.reopen_last = self._action(
            "Reopen the Last &Folder at Start",
            tip="Start with the photos and folders that were open when the app was closed",
        )
        self.reopen_last.setCheckable(True)
        self.reopen_last.setChecked(window.settings.reopen_last)
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
        self.export = self._action(
            "E&xport Captions…", tip="Write your captions as sidecar .txt files, into the photos, "
            "or to a CSV, JSONL or COCO file",
        )  # fmt: skip
        self.remove = self._action("&Remove from List", seq.Delete)
        self.quit = self._action("&Quit", seq.Quit)
        self.undo = self._action("&Undo", seq.Undo)
        self.redo = self._action("&Redo", "Ctrl+Shift+Z")
        self.undo.setEnabled(False)
        self.redo.setEnabled(False)
        self.edit_caption = self._action(
            "&Edit Caption", "F2", tip="Write the photo's caption (or simply start typing)"
        )
        self.accept = self._action(
            "&Accept Caption", "Ctrl+Return", tip="Mark the model's caption as checked"
        )
        self.take_beam = [  # Ctrl+N takes the Nth of the Alternatives as the caption
            self._action(f"Take Alternative &{n}", f"Ctrl+{n}") for n in range(1, 10)
        ]
        self.find = self._action("&Find Photos…", seq.Find)
        self.next_unchecked = self._action(
            "Next &Unchecked Photo", "Ctrl+PgDown",
            tip="The next photo whose caption you have not checked yet",
        )  # fmt: skip
        self.library = self._action(
            "Caption &Library…", tip="Choose the file that keeps your captions"
        )
        self.sidecars = self._action(
            "Keep photo.&txt in Step With My Captions",
            tip="Write each caption you set to a .txt file beside its photo",
        )
        self.sidecars.setCheckable(True)
        self.sidecars.setChecked(window.settings.sidecars)
        self.grid_view = self._action(
            "Photos as a &Grid", "Ctrl+Shift+G", tip="Thumbnails in a grid instead of a list"
        )
        self.grid_view.setCheckable(True)
        self.grid_view.setChecked(window.settings.grid_view)
        self.next = self._action("&Next Image", "PgDown")
        self.previous = self._action("&Previous Image", "PgUp")
        self.play = self._action("Play words")
        self.play.setCheckable(True)
        self.play.setToolTip("Step through the words' heatmaps (Space)")
        self.grid = self._action("Attention grid", "Ctrl+G")
        self.grid.setToolTip("Every word's heatmap at once (Ctrl+G)")
        self.caption_all = self._action("Caption &All", "F5")
        self.teach = self._action(
            "&Teach: This Photo Shows a…", "Ctrl+T",
            tip="Teach the model a word for the thing in this photo (its examples stay in the "
            "caption library)",
        )  # fmt: skip
        self.learn = self._action(
            "&Learn From My Captions…",
            tip="Fine-tune the model's sentences on your captions, as a new model",
        )
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

    def update(self, *, has_caption: bool, batch_running: bool, has_maps: bool = True) -> None:
        """Enable what applies: exports need a caption, heatmaps the model's run of the photo
        (a caption from the library has none until then); Cancel a running batch."""
        for action in (self.copy, self.sidecar, self.metadata, self.accept):
            action.setEnabled(has_caption)
        for action in (self.save_grid, self.grid, self.play):
            action.setEnabled(has_caption and has_maps)
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
        file_menu.addActions([self.sidecar, self.metadata, self.save_grid, self.export])
        file_menu.addSeparator()
        file_menu.addActions([self.remove, self.quit])
        edit_menu = bar.addMenu("&Edit")
        edit_menu.addActions([self.undo, self.redo])
        edit_menu.addSeparator()
        edit_menu.addActions([self.edit_caption, self.accept])
        alternatives = edit_menu.addMenu("Take A&lternative")
        alternatives.addActions(self.take_beam)
        edit_menu.addSeparator()
        edit_menu.addActions([self.copy, self.find])
        view_menu = bar.addMenu("&View")
        view_menu.addAction(self.grid_view)
        view_menu.addSeparator()
        view_menu.addActions([self.next, self.previous, self.next_unchecked])
        view_menu.addSeparator()
        view_menu.addActions([self.play, self.grid])
        view_menu.addSeparator()
        view_menu.addActions([dock.toggleViewAction() for dock in docks.values()])
        caption_menu = bar.addMenu("&Caption")
        caption_menu.addActions([self.caption_all, self.cancel])
        caption_menu.addSeparator()
        caption_menu.addActions([self.teach, self.learn])
        settings_menu = bar.addMenu("&Settings")
        settings_menu.addActions([*self.shipped_models.values(), self.model_dir, self.hub_model])
        settings_menu.addAction(self.decoding_options)
        settings_menu.addSeparator()
        settings_menu.addActions([self.library, self.sidecars])
        settings_menu.addSeparator()
        settings_menu.addAction(self.reopen_last)
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
