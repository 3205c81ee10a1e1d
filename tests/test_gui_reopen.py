"""The app starts with what was open when it was last closed (Settings → Reopen the Last Folder
at Start, on by default); photos named on the command line win, a folder gone since is named in
the status bar."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from conftest import show_main_window  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402

from gui.settings import Settings  # noqa: E402

NAMES = ["astronaut", "chelsea", "coffee"]


@pytest.fixture
def folders(tmp_path, photos):
    """Two folders of photos: trip/ (astronaut, chelsea) and home/ (coffee)."""
    made = {}
    for folder, names in (("trip", NAMES[:2]), ("home", NAMES[2:])):
        path = made[folder] = tmp_path / folder
        path.mkdir()
        for name in names:
            photos[name].save(path / f"{name}.png")
    return made


@pytest.fixture
def start(qtbot, tmp_path, tiny_model_dir, monkeypatch):
    """Start the app (as a new process would: a fresh Settings on the same file)."""

    def refuse(*args, **kwargs):
        raise AssertionError("a dialog was shown at start")

    for name in ("question", "warning", "critical", "information"):
        monkeypatch.setattr(QMessageBox, name, refuse)

    def start(paths=()):
        settings = Settings.from_file(str(tmp_path / "settings.ini"))
        data = str(tmp_path / "app-data")
        return show_main_window(qtbot, settings, str(tiny_model_dir), data, paths, wait=False)

    return start


def listed(window) -> list[str]:
    return [item.name for item in window.image_model.items()]


def test_the_last_folders_are_reopened_at_start(start, folders):
    first = start([folders["trip"]])
    first.open_paths([str(folders["home"])])
    first.close()

    second = start()
    assert listed(second) == ["astronaut.png", "chelsea.png", "coffee.png"]
    assert second.session.current_path == str(folders["trip"] / "astronaut.png")
    assert second.actions.reopen_last.isChecked()  # on by default


def test_paths_given_at_start_win(start, folders):
    start([folders["trip"]]).close()
    window = start([folders["home"]])
    assert listed(window) == ["coffee.png"]
    window.close()
    assert listed(start()) == ["coffee.png"]  # what this run opened is the last folder now


def test_turned_off_the_app_starts_empty(start, folders):
    first = start([folders["trip"]])
    first.actions.reopen_last.setChecked(False)  # Settings → Reopen the Last Folder at Start
    first.close()
    second = start()
    assert listed(second) == []
    assert not second.actions.reopen_last.isChecked()


def test_a_folder_gone_since_is_named_in_the_status_bar(start, folders):
    start([folders["trip"], folders["home"]]).close()
    shutil.rmtree(folders["trip"])
    window = start()
    assert listed(window) == ["coffee.png"]
    message = window.statusBar().currentMessage()
    assert "no longer there" in message and str(folders["trip"]) in message
    assert str(folders["home"]) not in message


def test_a_folder_whose_photos_were_all_removed_is_not_reopened(start, folders):
    first = start([folders["trip"], folders["home"]])
    first.image_list.select_rows([0, 1], 0)  # trip's two photos
    first.remove_selected()
    assert listed(first) == ["coffee.png"]
    first.close()
    assert listed(start()) == ["coffee.png"]
