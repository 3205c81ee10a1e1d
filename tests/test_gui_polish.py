"""What a new user tripped over in the app (issue #27): counts, messages, titles, undo, grid."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from conftest import show_main_window  # noqa: E402

from gui.models.image_list import Status  # noqa: E402
from gui.settings import Settings  # noqa: E402

WAIT_MS = 90_000  # two busy cores: a model load or a caption can take seconds
NAMES = ["astronaut", "chelsea", "coffee", "rocket", "motorcycle"]


@pytest.fixture
def settings(tmp_path):
    settings = Settings.from_file(str(tmp_path / "settings.ini"))
    settings.mark_started()  # not a first start: no samples opened
    return settings


@pytest.fixture
def open_window(qtbot, settings, tiny_model_dir, tmp_path):
    def open_window(paths=(), wait_for_model=True):
        data = str(tmp_path / "app-data")
        return show_main_window(qtbot, settings, str(tiny_model_dir), data, paths, wait_for_model)

    return open_window


@pytest.fixture
def folder(tmp_path, photos):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in NAMES:
        photos[name].save(folder / f"{name}.png")
    return folder


def test_caption_all_counts_only_the_photos_it_captioned(qtbot, open_window, folder):
    for index in range(3):
        (folder / f"broken-{index}.jpg").write_bytes(b"this is not a photo at all")
    window = open_window()
    window.open_paths([str(folder)])
    # At once, before the thumbnails mark the broken files: Caption All is given all eight.
    with qtbot.waitSignal(window.caption_all_finished, timeout=WAIT_MS) as finished:
        window.caption_all()
    done, total, cancelled = finished.args
    assert (done, total, cancelled) == (8, 8, False)
    statuses = [item.status for item in window.image_model.items()]
    assert statuses.count(Status.CAPTIONED) == 5 and statuses.count(Status.FAILED) == 3
    assert window.statusBar().currentMessage() == "Captioned 5 photos, 3 could not be read"


def test_reopening_a_folder_says_what_was_added(qtbot, open_window, folder, photos):
    window = open_window()
    window.open_paths([str(folder)])
    assert window.statusBar().currentMessage() == "Opened 5 photos"
    for name in ("hubble_deep_field", "chelsea"):
        photos[name].save(folder / f"new-{name}.png")
    window.open_paths([str(folder)])
    assert window.image_model.rowCount() == 7
    assert window.statusBar().currentMessage() == "Added 2 photos; 5 were already open"
    window.open_paths([str(folder)])
    assert window.statusBar().currentMessage() == "All 7 photos were already open"
    window.open_paths([str(folder / "new-chelsea.png")])
    assert window.statusBar().currentMessage() == "1 photo was already open"


def test_the_gates_panel_has_a_neutral_title_until_a_model_is_loaded(qtbot, open_window, tmp_path):
    window = open_window(wait_for_model=False)
    assert window.session.model_info is None  # loading in the background: no events run yet
    assert window.docks["lstm"].windowTitle() == "Inside the decoder"
    qtbot.waitUntil(lambda: window.session.model_info is not None, timeout=WAIT_MS)
    assert window.docks["lstm"].windowTitle() == "Inside the LSTM"

    broken = tmp_path / "not-a-model"
    broken.mkdir()
    with qtbot.waitSignal(window.model_ready, timeout=WAIT_MS) as ready:
        window.set_model(str(broken))
    assert ready.args == [False]
    assert window.docks["lstm"].windowTitle() == "Inside the decoder"
