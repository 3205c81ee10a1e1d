"""The app's heatmap of a copied noun shows where it was read, and says so (#25)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from conftest import show_main_window  # noqa: E402
from PySide6.QtCore import QEvent, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QImage, QMouseEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from captioner.photos.heatmap import overlay  # noqa: E402
from captioner.pointing import ATTENTION, READ  # noqa: E402
from captioner.registry import shipped_model  # noqa: E402
from gui.settings import Settings  # noqa: E402

WAIT_MS = 90_000


def hover(qtbot, window, index: int) -> None:
    """Move the pointer over word `index` of the caption, as a person does."""
    words = window.words
    centre = QPointF(words.word_rect(index).center())
    event = QMouseEvent(
        QEvent.Type.MouseMove, centre, words.mapToGlobal(centre), Qt.MouseButton.NoButton,
        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
    )  # fmt: skip
    with qtbot.waitSignal(window.heatmaps.overlay_shown, timeout=WAIT_MS):
        QApplication.sendEvent(words, event)


def as_array(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    rows = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), -1)
    return rows[:, : image.width() * 3].reshape(image.height(), image.width(), 3)


def test_hovering_a_copied_noun_shows_where_it_was_read(qtbot, tmp_path, photos):
    photos["chelsea"].save(tmp_path / "chelsea.png")
    settings = Settings.from_file(str(tmp_path / "settings.ini"))
    window = show_main_window(
        qtbot, settings, str(shipped_model("default")), str(tmp_path / "data"),
        [tmp_path / "chelsea.png"],
    )  # fmt: skip
    qtbot.waitUntil(lambda: "cat" in window.words.words, timeout=WAIT_MS)
    caption = window.session.current
    noun, other = caption.tokens.index("cat"), 0
    assert caption.map_kinds[noun] == READ and caption.map_kinds[other] == ATTENTION

    hover(qtbot, window, noun)
    assert window.viewer._label == "where “cat” was read"
    base = window.heatmaps._base
    opacity = window.heatmaps.opacity.value() / 100
    shown = as_array(window.viewer.overlay).astype(int)
    read = np.asarray(overlay(base, caption.maps[noun], opacity), dtype=int)
    prior = np.asarray(overlay(base, caption.alphas[noun], opacity), dtype=int)
    # The read map, blended as the viewer blends it, not the prior.
    assert np.array_equal(shown, read) and np.abs(shown - prior).max() > 20

    hover(qtbot, window, other)
    assert window.viewer._label == f"attention before “{caption.tokens[other]}”"
    shown = as_array(window.viewer.overlay).astype(int)
    looked = np.asarray(overlay(base, caption.alphas[other], opacity), dtype=int)
    assert np.array_equal(shown, looked)
