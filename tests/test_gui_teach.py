"""Teaching a word in the app (#24): "Teach: this photo shows a ___" from the caption's context
menu, the caption of the photo saying the word at once, the Taught Words dock listing, removing
and forgetting, and bad input said, with nothing stored. The real main window, offscreen, on the
shipped default model."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from conftest import show_main_window  # noqa: E402
from PIL import ImageOps  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QContextMenuEvent  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox  # noqa: E402

from captioner.library import Library  # noqa: E402
from captioner.registry import shipped_model  # noqa: E402
from gui import teaching as teaching_module  # noqa: E402
from gui.settings import Settings  # noqa: E402
from gui.widgets import caption_panel  # noqa: E402
from gui.widgets.taught_words import SourceRole  # noqa: E402

WAIT_MS = 90_000


@pytest.fixture
def rocket_photos(tmp_path, photos):
    """The rocket photo and a mirrored crop of it: two photos of one thing."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rocket = photos["rocket"]
    rocket.save(folder / "rocket.png")
    width, height = rocket.size
    crop = ImageOps.mirror(rocket.crop((0, 0, int(width * 0.85), int(height * 0.85))))
    crop.save(folder / "rocket-crop.png")
    photos["chelsea"].save(folder / "chelsea.png")
    return folder


@pytest.fixture
def library_file(tmp_path):
    return tmp_path / "library.sqlite3"


def open_window(qtbot, tmp_path, library_file, paths, model=None):
    settings = Settings.from_file(str(tmp_path / "settings.ini"))
    return show_main_window(
        qtbot, settings, str(model or shipped_model("default")), str(tmp_path / "data"),
        paths, library_path=library_file,
    )  # fmt: skip


def wait_captioned(qtbot, window, path) -> None:
    qtbot.waitUntil(
        lambda: window.session.current is not None and window.session.current_path == str(path),
        timeout=WAIT_MS,
    )


def caption_of(window) -> str:
    return " ".join(window.words.words)


def taught_in(library_file) -> list[tuple[str, str]]:
    with Library.open(library_file) as library:
        return [(record.word, record.source) for record in library.taught()]


class MenuShown:
    """Stands in for QMenu.exec: records the actions the words' menu offers and triggers the
    one chosen, as a person's click would."""

    def __init__(self, choose: str) -> None:
        self.choose, self.offered = choose, []

    def exec(self, actions, *_args):
        self.offered = [action.text() for action in actions]
        chosen = next(action for action in actions if action.text().startswith(self.choose))
        chosen.trigger()
        return chosen


def right_click_word(window, index: int) -> None:
    words = window.words
    point = words.word_rect(index).center()
    event = QContextMenuEvent(
        QContextMenuEvent.Reason.Mouse, point, words.mapToGlobal(point), Qt.KeyboardModifier(0)
    )
    QApplication.sendEvent(words, event)


def test_teaching_from_the_words_menu_puts_the_word_in_the_caption_and_forgetting_takes_it_out(
    qtbot, tmp_path, rocket_photos, library_file, monkeypatch
):
    rocket = rocket_photos / "rocket.png"
    window = open_window(qtbot, tmp_path, library_file, [rocket])
    wait_captioned(qtbot, window, rocket)
    before = caption_of(window)
    assert "widget" not in before.split()
    asked = []

    def ask_word(parent, word, image):
        asked.append((word, image is not None))
        return "Widget", None

    monkeypatch.setattr(teaching_module, "ask_word", ask_word)
    menu = MenuShown("&Teach")
    monkeypatch.setattr(caption_panel, "QMenu", menu)
    noun = window.words.copied.index(True)  # the model's name for the thing
    noun_word = window.words.words[noun]
    right_click_word(window, noun)
    assert window.words.selected == noun
    assert menu.offered == [window.actions.teach.text()]
    assert asked == [(noun_word, True)]  # started from the word right-clicked, on the photo

    qtbot.waitUntil(lambda: "widget" in window.words.words, timeout=WAIT_MS)
    assert window.session.current_path == str(rocket)
    assert window.words.copied[window.words.words.index("widget")]  # underlined: read off it
    assert taught_in(library_file) == [("widget", str(rocket))]
    # The dock lists it, with the photo as its example (and its thumbnail).
    panel = window.taught_words
    assert panel.model.words() == ["widget"]
    [example] = panel.model.examples("widget")
    assert example.data(SourceRole) == str(rocket)
    qtbot.waitUntil(lambda: not example.icon().isNull(), timeout=WAIT_MS)
    assert not panel.note.isVisible() and panel.note.text() == ""

    # Another photo of the thing says it too; an unrelated one does not.
    crop = rocket_photos / "rocket-crop.png"
    window.open_paths([str(crop), str(rocket_photos / "chelsea.png")])
    window.select_row(window.image_model.row_of(str(crop)))
    wait_captioned(qtbot, window, crop)
    assert "widget" in window.words.words
    window.select_row(window.image_model.row_of(str(rocket_photos / "chelsea.png")))
    wait_captioned(qtbot, window, rocket_photos / "chelsea.png")
    assert "widget" not in window.words.words

    # Forget it from the dock (after confirming): the caption is the model's own again.
    window.select_row(window.image_model.row_of(str(rocket)))
    wait_captioned(qtbot, window, rocket)
    panel.select_word("widget")
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    panel.forget_current_word()
    qtbot.waitUntil(lambda: caption_of(window) == before, timeout=WAIT_MS)
    assert taught_in(library_file) == [] and panel.model.words() == []
    assert panel.empty.isVisibleTo(panel)


def test_the_dock_removes_one_example_and_asks_before_forgetting(
    qtbot, tmp_path, rocket_photos, library_file, monkeypatch
):
    rocket, crop = rocket_photos / "rocket.png", rocket_photos / "rocket-crop.png"
    window = open_window(qtbot, tmp_path, library_file, [rocket, crop])
    wait_captioned(qtbot, window, rocket)
    teaching = window.teaching
    # Two photos taught one right after the other: the second is not lost to the first's
    # new model generation.
    assert teaching.teach("space rocket", str(rocket), (0.2, 0.0, 0.8, 1.0))
    assert teaching.teach("space rocket", str(crop))
    panel = window.taught_words
    qtbot.waitUntil(lambda: len(panel.model.examples()) == 2, timeout=WAIT_MS)
    assert [e.data(SourceRole) for e in panel.model.examples()] == [str(rocket), str(crop)]
    assert "(boxed)" in panel.model.examples()[0].text()

    # The same photo again adds nothing, and says so.
    with qtbot.waitSignal(teaching.message, timeout=WAIT_MS) as said:
        teaching.teach("space rocket", str(crop))
    qtbot.waitUntil(lambda: "already an example" in window.statusBar().currentMessage())
    assert said.args is not None
    assert len(taught_in(library_file)) == 2

    example = panel.model.indexFromItem(panel.model.examples()[0])
    panel.tree.setCurrentIndex(example)
    assert panel.remove_button.isEnabled()
    panel.remove_current_example()
    assert taught_in(library_file) == [("space rocket", str(crop))]
    assert [e.data(SourceRole) for e in panel.model.examples()] == [str(crop)]

    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    panel.select_word("space rocket")
    panel.forget_current_word()
    assert taught_in(library_file) == [("space rocket", str(crop))]  # "No": kept


def test_bad_words_and_gone_photos_are_said_and_nothing_is_stored(
    qtbot, tmp_path, rocket_photos, library_file
):
    rocket = rocket_photos / "rocket.png"
    window = open_window(qtbot, tmp_path, library_file, [rocket])
    wait_captioned(qtbot, window, rocket)
    teaching, status = window.teaching, window.statusBar()

    assert not teaching.teach("   ", str(rocket))
    assert "Type the word" in status.currentMessage()

    with qtbot.waitSignal(window.session.worker.teach_failed, timeout=WAIT_MS):
        assert teaching.teach("x" * 200, str(rocket))
    qtbot.waitUntil(lambda: "200 characters" in status.currentMessage())
    assert status.currentMessage().startswith("Could not teach “xxxx")

    with qtbot.waitSignal(window.session.worker.teach_failed, timeout=WAIT_MS):
        assert teaching.teach("a big red ball", str(rocket))
    qtbot.waitUntil(lambda: "one or two words" in status.currentMessage())

    gone = rocket_photos / "gone.png"
    assert not teaching.teach("widget", str(gone))
    assert "no longer on disk" in status.currentMessage()
    assert taught_in(library_file) == []
    assert window.taught_words.model.words() == []


def test_a_model_without_a_copy_path_says_why_it_cannot_use_taught_words(
    qtbot, tmp_path, rocket_photos, library_file, tiny_model_dir, monkeypatch
):
    rocket = rocket_photos / "rocket.png"
    first = open_window(qtbot, tmp_path, library_file, [rocket])
    wait_captioned(qtbot, first, rocket)
    with qtbot.waitSignal(first.teaching.taught_word, timeout=WAIT_MS):
        first.teaching.teach("widget", str(rocket))
    first.close()

    window = open_window(qtbot, tmp_path, library_file, [rocket], model=tiny_model_dir)
    assert window.session.model_info is not None and not window.session.model_info.can_learn_words
    panel = window.taught_words
    assert panel.model.words() == ["widget"]  # kept in the library
    assert panel.note.isVisibleTo(panel) and "no copy path" in panel.note.text()

    asked = []
    monkeypatch.setattr(teaching_module, "ask_word", lambda *a: asked.append(a))
    window.actions.teach.trigger()  # Ctrl+T
    assert asked == []  # not asked for a word it cannot learn
    assert "cannot learn words" in window.statusBar().currentMessage()
    assert window.actions.teach.shortcut().toString() == "Ctrl+T"
