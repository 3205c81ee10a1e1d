"""View → Photos as a Grid: the photo list as a grid of thumbnails, the same model and selection
as the list, moved through with the arrow keys, kept between runs."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from conftest import save_photos, show_main_window  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QImage  # noqa: E402
from PySide6.QtWidgets import QListView  # noqa: E402

from gui.settings import Settings  # noqa: E402

WAIT_MS = 90_000
NAMES = ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "motorcycle"]


@pytest.fixture
def photo_dir(tmp_path, photos):
    return save_photos(tmp_path / "photos", photos, NAMES)


@pytest.fixture
def start(qtbot, tmp_path, tiny_model_dir, photo_dir):
    def start():
        settings = Settings.from_file(str(tmp_path / "settings.ini"))
        data = str(tmp_path / "app-data")
        window = show_main_window(qtbot, settings, str(tiny_model_dir), data, [photo_dir])
        window.resize(1320, 840)
        window.resizeDocks([window.docks["images"]], [330], Qt.Orientation.Horizontal)
        return window

    return start


def pixels(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    rows = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), -1)
    return rows[:, : image.width() * 3].reshape(image.height(), image.width(), 3).astype(int)


def test_the_grid_shows_thumbnails_in_columns_shares_the_selection_and_persists(
    qtbot, start, photo_dir
):
    window = start()
    view = window.image_list
    assert view.viewMode() == QListView.ViewMode.ListMode
    list_rects = [view.visualRect(window.image_model.index(row)) for row in range(2)]
    assert list_rects[0].x() == list_rects[1].x()  # one photo per row
    view.select_row(2)
    assert window.session.current_path == str(photo_dir / "coffee.png")

    window.actions.grid_view.trigger()  # View → Photos as a Grid
    assert view.viewMode() == QListView.ViewMode.IconMode
    qtbot.waitUntil(lambda: view.visualRect(window.image_model.index(1)).x() > 0)
    first, second = (view.visualRect(window.image_model.index(row)) for row in range(2))
    assert first.y() == second.y() and second.x() >= first.right()  # side by side
    assert first.height() > list_rects[0].height()  # larger thumbnails
    assert view.currentIndex().row() == 2  # the same photo, the same selection
    assert window.session.current_path == str(photo_dir / "coffee.png")

    # Every photo's thumbnail is drawn: its cell is a picture, not a flat background.
    qtbot.waitUntil(
        lambda: all(item.thumbnail is not None for item in window.image_model.items()[:2]),
        timeout=WAIT_MS,
    )
    view.viewport().update()
    qtbot.wait(50)
    shot = pixels(view.viewport().grab().toImage())
    for row in range(2):
        rect = view.visualRect(window.image_model.index(row))
        cell = shot[rect.top() : rect.bottom(), rect.left() : rect.right()]
        assert cell.std() > 20

    # Keys move through the grid: Right to the next photo, Down to the one below.
    columns = sum(
        view.visualRect(window.image_model.index(row)).y() == first.y() for row in range(len(NAMES))
    )
    assert 1 < columns < len(NAMES)
    view.setFocus()
    view.select_row(0)
    qtbot.keyClick(view, Qt.Key.Key_Right)
    assert view.currentIndex().row() == 1
    assert window.session.current_path == str(photo_dir / "chelsea.png")
    qtbot.keyClick(view, Qt.Key.Key_Down)
    assert view.currentIndex().row() == 1 + columns
    window.actions.previous.trigger()  # PgUp: the previous photo in the list's order
    assert view.currentIndex().row() == columns

    # Delete works on what the grid selected, and the choice is kept for the next start.
    view.select_row(0)
    window.actions.remove.trigger()
    assert window.image_model.rowCount() == len(NAMES) - 1
    window.close()
    again = start()
    assert again.actions.grid_view.isChecked()
    assert again.image_list.viewMode() == QListView.ViewMode.IconMode

    again.actions.grid_view.trigger()  # back to the list
    assert again.image_list.viewMode() == QListView.ViewMode.ListMode
    assert not Settings.from_file(str(again.settings.store.fileName())).grid_view
