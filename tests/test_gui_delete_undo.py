"""Delete takes photos off the list as one step of the caption library's undo stack: Ctrl+Z puts
them back where they were, with their captions and selection; the files are never touched."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from conftest import PHOTO_CAPTIONS, save_photos, show_main_window  # noqa: E402
from PySide6.QtCore import QItemSelectionModel, Qt  # noqa: E402

from gui.settings import Settings  # noqa: E402

WAIT_MS = 90_000
NAMES = ["astronaut", "chelsea", "coffee", "rocket"]


@pytest.fixture
def photo_dir(tmp_path, photos):
    return save_photos(tmp_path / "photos", photos, NAMES)


@pytest.fixture
def window(qtbot, tmp_path, tiny_model_dir, photo_dir):
    settings = Settings.from_file(str(tmp_path / "settings.ini"))
    return show_main_window(
        qtbot, settings, str(tiny_model_dir), str(tmp_path / "app-data"), [photo_dir]
    )


def listed(window) -> list[str]:
    return [item.name for item in window.image_model.items()]


def selected(window) -> list[int]:
    return sorted(index.row() for index in window.image_list.selectionModel().selectedRows())


def test_delete_is_undone_and_redone_with_the_captions_and_the_selection(qtbot, window, photo_dir):
    qtbot.waitUntil(
        lambda: window.words.words == PHOTO_CAPTIONS["astronaut"].split(), timeout=WAIT_MS
    )
    window.image_list.select_row(1)
    qtbot.waitUntil(
        lambda: window.words.words == PHOTO_CAPTIONS["chelsea"].split(), timeout=WAIT_MS
    )
    window.actions.edit_caption.trigger()
    window.caption_panel.editor.setText("Chelsea the cat")
    qtbot.keyClick(window.caption_panel.editor, Qt.Key.Key_Return)
    chelsea = window.image_model.item(1)
    assert (chelsea.state, chelsea.caption) == ("mine", "Chelsea the cat")

    # chelsea (shown) and rocket selected; Delete takes both off the list, not off the disk.
    window.image_list.selectionModel().select(
        window.image_model.index(3), QItemSelectionModel.SelectionFlag.Select
    )
    assert selected(window) == [1, 3]
    assert window.actions.remove.shortcut().toString() == "Del"
    window.actions.remove.trigger()
    assert listed(window) == ["astronaut.png", "coffee.png"]
    assert window.session.current_path == str(photo_dir / "coffee.png")  # the next one kept
    assert sorted(path.name for path in photo_dir.iterdir()) == [f"{n}.png" for n in NAMES]
    assert window.actions.undo.isEnabled()
    assert window.actions.undo.text() == "&Undo Remove 2 photos from the list"

    window.actions.undo.trigger()  # Ctrl+Z
    assert listed(window) == [f"{name}.png" for name in NAMES]  # at their places
    assert window.image_model.item(1) is chelsea
    assert (chelsea.state, chelsea.caption) == ("mine", "Chelsea the cat")
    assert selected(window) == [1, 3]
    assert window.image_list.currentIndex().row() == 1
    assert window.session.current_path == str(photo_dir / "chelsea.png")
    assert window.words.words == ["Chelsea", "the", "cat"]

    window.actions.redo.trigger()  # Ctrl+Shift+Z
    assert listed(window) == ["astronaut.png", "coffee.png"]

    # The same stack as the caption edits: undo the removal, then the edit before it.
    window.actions.undo.trigger()
    window.actions.undo.trigger()
    assert listed(window) == [f"{name}.png" for name in NAMES]
    assert window.image_model.item(1).state != "mine"
    assert window.actions.redo.text() == "&Redo Edit caption (chelsea.png)"


def test_removing_every_photo_empties_the_window_and_undo_brings_them_back(qtbot, window):
    window.image_list.selectAll()
    window.actions.remove.trigger()
    assert window.image_model.rowCount() == 0
    assert window.session.current_path is None
    assert window.windowTitle() == "Captioner"

    window.actions.undo.trigger()
    assert listed(window) == [f"{name}.png" for name in NAMES]
    assert selected(window) == [0, 1, 2, 3]
    assert window.session.current_path is not None


def test_a_photo_opened_again_while_removed_is_not_listed_twice_by_undo(qtbot, window, photo_dir):
    window.image_list.select_rows([0, 1], 0)
    window.actions.remove.trigger()
    window.open_paths([str(photo_dir / "astronaut.png")])  # listed again, at the end
    assert listed(window) == ["coffee.png", "rocket.png", "astronaut.png"]
    window.actions.undo.trigger()
    assert listed(window) == ["coffee.png", "chelsea.png", "rocket.png", "astronaut.png"]
