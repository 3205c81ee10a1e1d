"""The person's captions in the app (#23): editing, alternatives, accept, undo across photos,
the list's markers, review, search, the caption library read at once, adopted sidecars, a
library that cannot be written and one that is not a library. The real main window, offscreen."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from conftest import PHOTO_CAPTIONS, save_photos, show_main_window  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402

from captioner.library import Library, LibraryUnavailable  # noqa: E402
from gui import main_window as main_window_module  # noqa: E402
from gui.models.image_list import CaptionStateRole, DiskStateRole, Status  # noqa: E402
from gui.settings import Settings  # noqa: E402
from gui.worker import CaptionWorker  # noqa: E402

WAIT_MS = 90_000
NAMES = ["astronaut", "chelsea", "coffee"]


@pytest.fixture
def photo_dir(tmp_path, photos):
    return save_photos(tmp_path / "photos", photos, NAMES)


@pytest.fixture
def library_file(tmp_path):
    return tmp_path / "captions.sqlite3"


@pytest.fixture
def open_window(qtbot, tiny_model_dir, tmp_path, library_file):
    def open_window(paths=(), wait=True):
        settings = Settings.from_file(str(tmp_path / "settings.ini"))
        return show_main_window(
            qtbot, settings, str(tiny_model_dir), str(tmp_path / "app-data"), paths, wait,
            library_path=library_file,
        )  # fmt: skip

    return open_window


def wait_for_caption(qtbot, window, name: str) -> None:
    expected = PHOTO_CAPTIONS[name].split()
    qtbot.waitUntil(lambda: window.words.words == expected, timeout=WAIT_MS)


def person_caption(library_file, path):
    with Library.open(library_file) as library:
        person = library.lookup([str(path)])[str(path)].person
    return None if person is None or person.text is None else (person.text, person.source)


def edit(qtbot, window, text: str) -> None:
    """Write `text` as the shown photo's caption: F2, the text, Enter."""
    window.actions.edit_caption.trigger()
    editor = window.caption_panel.editor
    assert editor.isVisible()
    editor.clear()
    qtbot.keyClicks(editor, text)
    qtbot.keyClick(editor, Qt.Key.Key_Return)


def state_of(window, name: str) -> str:
    row = next(i for i, item in enumerate(window.image_model.items()) if name in item.path)
    return window.image_model.index(row).data(CaptionStateRole)


def test_f2_typing_and_double_click_edit_enter_keeps_esc_cancels(
    qtbot, open_window, photo_dir, library_file
):
    window = open_window([photo_dir])
    wait_for_caption(qtbot, window, "astronaut")
    photo = str(photo_dir / "astronaut.png")

    edit(qtbot, window, "An astronaut, Eileen Collins!")
    assert not window.caption_panel.editor.isVisible()
    assert window.words.words == ["An", "astronaut,", "Eileen", "Collins!"]  # as written
    assert person_caption(library_file, photo) == ("An astronaut, Eileen Collins!", "typed")
    assert window.caption_panel.model_said.text() == f"model said: {PHOTO_CAPTIONS['astronaut']}"
    assert window.caption_panel.model_said.isVisible()
    assert state_of(window, "astronaut") == "mine"

    # Simply typing in the list starts editing with that letter; Esc cancels it.
    window.image_list.setFocus()
    qtbot.keyClicks(window.image_list, "Xy")
    assert window.caption_panel.editor.isVisible()
    assert window.caption_panel.editor.text() == "Xy"
    qtbot.keyClick(window.caption_panel.editor, Qt.Key.Key_Escape)
    assert not window.caption_panel.editor.isVisible()
    assert person_caption(library_file, photo) == ("An astronaut, Eileen Collins!", "typed")

    # A double-click on the caption edits it too, starting from the caption shown.
    qtbot.mouseDClick(window.words, Qt.MouseButton.LeftButton, pos=window.words.rect().center())
    assert window.caption_panel.editor.isVisible()
    assert window.caption_panel.editor.text() == "An astronaut, Eileen Collins!"
    qtbot.keyClick(window.caption_panel.editor, Qt.Key.Key_End)
    qtbot.keyClicks(window.caption_panel.editor, " In orbit.")
    qtbot.keyClick(window.caption_panel.editor, Qt.Key.Key_Enter)
    assert person_caption(library_file, photo)[0] == "An astronaut, Eileen Collins! In orbit."


def test_taking_an_alternative_and_accepting(qtbot, open_window, photo_dir, library_file):
    window = open_window([photo_dir / "coffee.png"])
    wait_for_caption(qtbot, window, "coffee")
    window.settings_panel.beam_size.setValue(3)
    qtbot.waitUntil(lambda: window.beam_list.topLevelItemCount() == 3, timeout=WAIT_MS)
    photo = str(photo_dir / "coffee.png")
    second = window.beam_list.topLevelItem(1).text(1)
    third = window.beam_list.topLevelItem(2).text(1)

    item = window.beam_list.topLevelItem(2)
    rect = window.beam_list.visualItemRect(item)
    qtbot.mouseClick(window.beam_list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(window.beam_list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert person_caption(library_file, photo) == (third, "alternative")
    assert window.words.words == third.split()
    assert state_of(window, "coffee") == "accepted"

    window.actions.take_beam[1].trigger()  # Ctrl+2
    assert person_caption(library_file, photo) == (second, "alternative")
    assert window.words.words == second.split()
    assert window.session.current is not None  # a beam of the model's: heatmaps still work

    window.actions.take_beam[0].trigger()  # Ctrl+1: the model's best
    assert person_caption(library_file, photo) == (PHOTO_CAPTIONS["coffee"], "accepted")
    window.review.undo()
    window.review.undo()
    window.review.undo()
    assert person_caption(library_file, photo) is None
    window.actions.accept.trigger()  # Ctrl+Return
    assert person_caption(library_file, photo) == (PHOTO_CAPTIONS["coffee"], "accepted")
    assert window.caption_panel.summary.text().startswith("✓ Checked")


def test_undo_and_redo_walk_across_photos(qtbot, open_window, photo_dir, library_file):
    window = open_window([photo_dir])
    wait_for_caption(qtbot, window, "astronaut")
    first, second = str(photo_dir / "astronaut.png"), str(photo_dir / "chelsea.png")
    edit(qtbot, window, "first photo")
    window.step_image(1)
    wait_for_caption(qtbot, window, "chelsea")
    edit(qtbot, window, "second photo")
    edit(qtbot, window, "second photo again")

    window.review.undo()  # Ctrl+Z
    assert person_caption(library_file, second) == ("second photo", "typed")
    window.review.undo()
    assert person_caption(library_file, second) is None
    assert window.words.words == PHOTO_CAPTIONS["chelsea"].split()
    window.review.undo()  # the first photo's edit: the list goes back to it
    assert person_caption(library_file, first) is None
    assert window.session.current_path == first
    assert not window.actions.undo.isEnabled()

    window.review.redo()  # Ctrl+Shift+Z
    assert person_caption(library_file, first) == ("first photo", "typed")
    assert window.words.words == ["first", "photo"]
    window.review.redo()
    window.review.redo()
    assert person_caption(library_file, second) == ("second photo again", "typed")
    assert window.session.current_path == second
    with Library.open(library_file) as library:
        assert len(library.history(second)) == 6  # every step kept: 2 edits, 2 undos, 2 redos
    assert window.actions.undo.shortcut().toString() == "Ctrl+Z"
    assert window.actions.redo.shortcut().toString() == "Ctrl+Shift+Z"


def caption_every_photo(qtbot, window) -> None:
    """Caption All, and wait until every listed photo has its caption."""
    window.caption_all()
    qtbot.waitUntil(
        lambda: all(i.status is Status.CAPTIONED for i in window.image_model.items()),
        timeout=WAIT_MS,
    )


def test_markers_and_next_unchecked_walk_a_review(qtbot, open_window, photo_dir):
    window = open_window([photo_dir])
    wait_for_caption(qtbot, window, "astronaut")
    caption_every_photo(qtbot, window)
    assert [state_of(window, name) for name in NAMES] == ["model"] * 3
    window.actions.accept.trigger()
    assert state_of(window, "astronaut") == "accepted"
    index = window.image_model.index(0)
    assert "accepted" in index.data(Qt.ItemDataRole.ToolTipRole)
    assert "checked" in index.data(Qt.ItemDataRole.AccessibleTextRole)

    window.review.next_unchecked()  # Ctrl+PgDown
    assert window.session.current_path.endswith("chelsea.png")
    edit(qtbot, window, "my cat")
    assert state_of(window, "chelsea") == "mine"
    window.review.next_unchecked()
    assert window.session.current_path.endswith("coffee.png")
    window.actions.accept.trigger()
    window.review.next_unchecked()  # none left: it stays, and says so
    assert window.session.current_path.endswith("coffee.png")
    assert "checked" in window.statusBar().currentMessage()
    assert window.actions.next_unchecked.shortcut().toString() == "Ctrl+PgDown"


def test_recaptioning_never_replaces_the_persons_caption(
    qtbot, open_window, photo_dir, library_file
):
    window = open_window([photo_dir / "chelsea.png"])
    wait_for_caption(qtbot, window, "chelsea")
    edit(qtbot, window, "Rex the cat")
    window.settings_panel.beam_size.setValue(2)  # new options: the model captions it again
    qtbot.waitUntil(lambda: window.beam_list.topLevelItemCount() == 2, timeout=WAIT_MS)
    assert window.words.words == ["Rex", "the", "cat"]
    assert window.caption_panel.model_said.text().startswith("model said: ")
    photo = str(photo_dir / "chelsea.png")
    assert person_caption(library_file, photo) == ("Rex the cat", "typed")
    with Library.open(library_file) as library:
        assert library.lookup([photo])[photo].model is not None  # the new caption is kept too


def test_search_filters_the_list_as_one_types(qtbot, open_window, photo_dir):
    window = open_window([photo_dir])
    wait_for_caption(qtbot, window, "astronaut")
    caption_every_photo(qtbot, window)
    edit(qtbot, window, "Éileen in orbit")  # the astronaut, in the person's words

    def shown():
        rows = window.image_list.visible_rows()
        return [window.image_model.item(row).name for row in rows]

    window.focus_search()
    qtbot.keyClicks(window.search.box, "CA")  # a prefix, any case
    qtbot.waitUntil(lambda: shown() == ["chelsea.png"], timeout=5000)
    window.search.box.clear()
    qtbot.keyClicks(window.search.box, "eileen")  # accents ignored
    qtbot.waitUntil(lambda: shown() == ["astronaut.png"], timeout=5000)
    qtbot.keyClick(window.search.box, Qt.Key.Key_Escape)  # Esc clears
    assert window.search.box.text() == ""
    qtbot.waitUntil(lambda: len(shown()) == 3, timeout=5000)

    qtbot.keyClicks(window.search.box, 'cup" OR (')  # FTS5 cannot parse it: no traceback
    qtbot.wait(300)
    window.search.box.clear()
    qtbot.waitUntil(lambda: len(shown()) == 3, timeout=5000)

    window.search.filter.setCurrentIndex(window.search.filter.findData("mine"))
    assert shown() == ["astronaut.png"]
    window.search.filter.setCurrentIndex(window.search.filter.findData("unchecked"))
    assert shown() == ["chelsea.png", "coffee.png"]
    window.step_image(1)  # moving on skips what the search hides
    assert window.session.current_path.endswith("coffee.png")
    window.search.filter.setCurrentIndex(window.search.filter.findData("checked"))
    assert shown() == ["astronaut.png"]


def test_known_captions_are_shown_at_once_without_running_the_model(
    qtbot, open_window, photo_dir, monkeypatch
):
    window = open_window([photo_dir])
    wait_for_caption(qtbot, window, "astronaut")
    caption_every_photo(qtbot, window)
    window.close()

    asked = []
    original = CaptionWorker.request_caption
    monkeypatch.setattr(
        CaptionWorker, "request_caption",
        lambda self, path, *a, **k: (asked.append(path), original(self, path, *a, **k)),
    )  # fmt: skip
    again = open_window([photo_dir], wait=False)
    assert again.words.words == PHOTO_CAPTIONS["astronaut"].split()  # before the model loads
    assert [item.caption for item in again.image_model.items()] == [
        PHOTO_CAPTIONS[name] for name in NAMES
    ]
    qtbot.waitUntil(lambda: again.session.model_info is not None, timeout=WAIT_MS)
    again.step_image(1)
    assert again.words.words == PHOTO_CAPTIONS["chelsea"].split()
    assert all(item.status is Status.CAPTIONED for item in again.image_model.items())
    assert again.session.pending_paths() == []  # Caption all has nothing left to do
    qtbot.wait(200)
    assert asked == []  # the worker was never asked to caption


def test_a_photos_own_sidecar_is_taken_as_the_persons_caption(
    qtbot, open_window, photo_dir, library_file
):
    (photo_dir / "astronaut.txt").write_text("Eileen Collins, STS-93.\n", "utf-8")
    window = open_window([photo_dir])
    assert window.words.words == ["Eileen", "Collins,", "STS-93."]
    qtbot.waitUntil(lambda: window.caption_panel.model_said.isVisible(), timeout=WAIT_MS)
    assert window.words.words == ["Eileen", "Collins,", "STS-93."]  # never the model's
    assert ".txt" in window.caption_panel.summary.text()
    photo = str(photo_dir / "astronaut.png")
    assert person_caption(library_file, photo) == ("Eileen Collins, STS-93.", "sidecar")
    assert state_of(window, "astronaut") == "mine"


def test_an_unwritable_library_keeps_edits_in_memory_says_so_and_asks_before_quitting(
    qtbot, open_window, photo_dir, library_file, monkeypatch
):
    window = open_window([photo_dir])
    wait_for_caption(qtbot, window, "astronaut")
    library = window.captions.library
    full = [True]
    set_caption = library.set_caption

    def failing(*args, **kwargs):
        if full[0]:
            raise LibraryUnavailable(
                f"{library_file}: cannot be written now (database or disk is full)"
            )
        return set_caption(*args, **kwargs)

    monkeypatch.setattr(library, "set_caption", failing)
    edit(qtbot, window, "kept in memory")
    photo = str(photo_dir / "astronaut.png")
    assert window.words.words == ["kept", "in", "memory"]  # shown as made
    assert window.captions.unsaved == 1
    assert window.library_banner.isVisible()
    assert "not being saved" in window.library_banner.text.toolTip()
    assert person_caption(library_file, photo) is None

    asked = []
    monkeypatch.setattr(
        main_window_module.QMessageBox, "question",
        lambda *a, **k: (asked.append(a[1]), QMessageBox.StandardButton.No)[1],
    )  # fmt: skip
    window.close()
    assert asked and window.isVisible()  # asked first, and told not to quit

    full[0] = False  # the disk has room again: the next edit writes both, in order
    window.step_image(1)
    wait_for_caption(qtbot, window, "chelsea")
    edit(qtbot, window, "written at once")
    assert window.captions.unsaved == 0
    assert not window.library_banner.isVisible()
    assert person_caption(library_file, photo) == ("kept in memory", "typed")
    assert person_caption(library_file, str(photo_dir / "chelsea.png"))[0] == "written at once"
    asked.clear()
    window.close()
    assert not asked and not window.isVisible()


def test_a_library_retried_on_the_timer(qtbot, open_window, photo_dir, library_file, monkeypatch):
    window = open_window([photo_dir])
    wait_for_caption(qtbot, window, "astronaut")
    library = window.captions.library
    set_caption = library.set_caption
    monkeypatch.setattr(
        library, "set_caption",
        lambda *a, **k: (_ for _ in ()).throw(LibraryUnavailable("read-only")),
    )  # fmt: skip
    edit(qtbot, window, "later")
    assert window.captions.unsaved == 1
    monkeypatch.setattr(library, "set_caption", set_caption)
    window.captions._retry.setInterval(50)
    qtbot.waitUntil(lambda: window.captions.unsaved == 0, timeout=5000)
    assert person_caption(library_file, str(photo_dir / "astronaut.png")) == ("later", "typed")
    assert not window.library_banner.isVisible()


@pytest.mark.parametrize("agree", [True, False])
def test_a_file_that_is_no_library_is_kept_and_replaced_only_if_agreed(
    qtbot, open_window, photo_dir, library_file, monkeypatch, agree
):
    garbage = b"my tax return, not a caption library\n" * 50
    library_file.write_bytes(garbage)
    asked = []
    answer = QMessageBox.StandardButton.Yes if agree else QMessageBox.StandardButton.No
    monkeypatch.setattr(
        main_window_module.QMessageBox, "question",
        lambda *a, **k: (asked.append(a[2]), answer)[1],
    )  # fmt: skip
    window = open_window([photo_dir])
    assert asked and "not a caption library" in asked[0]
    aside = list(library_file.parent.glob(f"{library_file.name}.set-aside-*"))
    if agree:
        assert [path.read_bytes() for path in aside] == [garbage]  # kept, renamed
        wait_for_caption(qtbot, window, "astronaut")
        edit(qtbot, window, "a new library")
        assert person_caption(library_file, str(photo_dir / "astronaut.png"))[0] == "a new library"
        assert not window.library_banner.isVisible()
    else:
        assert aside == [] and library_file.read_bytes() == garbage  # untouched
        assert window.library_banner.isVisible()
        assert "not a caption library" in window.library_banner.text.toolTip()
        monkeypatch.setattr(
            main_window_module.QMessageBox, "question",
            lambda *a, **k: QMessageBox.StandardButton.Yes,
        )  # fmt: skip


def test_export_the_selected_photos_and_keep_sidecars_in_step(
    qtbot, open_window, photo_dir, tmp_path
):
    from gui.dialogs.export_captions import ExportDialog

    window = open_window([photo_dir])
    wait_for_caption(qtbot, window, "astronaut")
    window.actions.sidecars.setChecked(True)  # Settings: keep photo.txt in step
    edit(qtbot, window, "Eileen in orbit")
    assert (photo_dir / "astronaut.txt").read_text("utf-8") == "Eileen in orbit\n"
    window.step_image(1)
    wait_for_caption(qtbot, window, "chelsea")
    window.actions.accept.trigger()
    assert (photo_dir / "chelsea.txt").read_text("utf-8") == PHOTO_CAPTIONS["chelsea"] + "\n"

    window.select_row(1)  # only the cat
    dialog = ExportDialog(window, window.captions, [str(photo_dir / "chelsea.png")])
    dialog.format.setCurrentIndex(dialog.format.findData("jsonl"))
    assert dialog.only_selected.isChecked()
    out = tmp_path / "out.jsonl"
    dialog.export(str(out))
    lines = out.read_text("utf-8").splitlines()
    assert len(lines) == 1 and PHOTO_CAPTIONS["chelsea"] in lines[0]
    dialog = ExportDialog(window, window.captions, [])
    dialog.format.setCurrentIndex(dialog.format.findData("csv"))
    assert dialog.every.isChecked()
    dialog.export(str(tmp_path / "all.csv"))
    text = (tmp_path / "all.csv").read_text("utf-8")
    assert "Eileen in orbit" in text and PHOTO_CAPTIONS["chelsea"] in text


def test_a_photo_gone_or_changed_on_disk_keeps_its_row_and_captions(
    qtbot, open_window, photo_dir, library_file
):
    window = open_window([photo_dir])
    wait_for_caption(qtbot, window, "astronaut")
    edit(qtbot, window, "Eileen Collins")
    window.step_image(1)
    wait_for_caption(qtbot, window, "chelsea")
    edit(qtbot, window, "A ginger cat")
    window.close()

    (photo_dir / "astronaut.png").unlink()  # gone
    chelsea = photo_dir / "chelsea.png"
    chelsea.write_bytes(chelsea.read_bytes() + b"\0" * 16)  # changed
    again = open_window([photo_dir], wait=False)

    by_name = {os.path.basename(item.path): item for item in again.image_model.items()}
    assert sorted(by_name) == ["astronaut.png", "chelsea.png", "coffee.png"]
    gone, changed = by_name["astronaut.png"], by_name["chelsea.png"]
    assert gone.caption == "Eileen Collins" and gone.state == "mine"
    assert changed.caption == "A ginger cat" and changed.state == "mine"
    row_of = again.image_model.row_of
    assert again.image_model.index(row_of(gone.path)).data(DiskStateRole) == "missing"
    assert again.image_model.index(row_of(changed.path)).data(DiskStateRole) == "changed"
    tooltip = again.image_model.index(row_of(gone.path)).data(Qt.ItemDataRole.ToolTipRole)
    assert "no longer on disk" in tooltip and "Eileen Collins" in tooltip
    assert gone.path not in again.session.pending_paths()  # Caption all leaves it alone

    # The changed photo is captioned again: the model's words are only "model said".
    again.select_row(row_of(changed.path))
    qtbot.waitUntil(lambda: again.caption_panel.model_said.isVisible(), timeout=WAIT_MS)
    assert again.words.words == ["A", "ginger", "cat"]
    assert person_caption(library_file, changed.path) == ("A ginger cat", "typed")

    # The gone photo shows its caption, never a failure, and the model is not asked.
    again.select_row(row_of(gone.path))
    assert again.words.words == ["Eileen", "Collins"]
    qtbot.wait(300)
    assert gone.status is not Status.FAILED
    assert again.words.words == ["Eileen", "Collins"]
    assert person_caption(library_file, gone.path) == ("Eileen Collins", "typed")
