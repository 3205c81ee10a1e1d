"""The app's command line, model-error banner, metadata confirmation and window size."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from conftest import PHOTO_CAPTIONS, show_main_window  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox  # noqa: E402

from captioner import Captioner  # noqa: E402
from captioner.photos.metadata import read_caption_metadata, write_caption_metadata  # noqa: E402
from gui.main_window import MainWindow  # noqa: E402
from gui.settings import Settings  # noqa: E402
from gui.widgets.banner import ModelBanner  # noqa: E402
from gui.widgets.elided_label import ElidedLabel  # noqa: E402

WAIT_MS = 90_000  # two busy cores: a model load or a caption can take seconds
# What a torch failure looks like: a first line, then one line per tensor, hundreds of them.
TORCH_ERROR = "Error(s) in loading state_dict for Decoder:\n" + "".join(
    f"\tsize mismatch for layer{i}.weight: copying a param with shape torch.Size([9000, 512]) "
    f"from checkpoint, the shape in current model is torch.Size([40, 512]).\n"
    for i in range(40)
)


def _without_display() -> dict[str, str]:
    env = {**os.environ}
    for name in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        env.pop(name, None)
    return env


@pytest.mark.parametrize(
    ("option", "expected"),
    [("--help", "usage: captioner-gui"), ("--version", f"captioner-gui {version('captioner')}")],
)
def test_help_and_version_print_and_exit_without_a_display(option, expected):
    done = subprocess.run(
        [sys.executable, "-m", "gui.app", option],
        env=_without_display(),
        capture_output=True,
        text=True,
        timeout=300,  # a hang, not a speed limit
    )
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout


def settle_layouts() -> None:
    """Run the layout requests a change posted, and those they post in turn (docks, then
    their contents): that is when a window or a panel would change size."""
    for _ in range(5):
        QApplication.processEvents()


@pytest.fixture
def open_window(qtbot, tmp_path, tiny_model_dir):
    def open_window(paths=()) -> MainWindow:
        settings = Settings.from_file(str(tmp_path / "settings.ini"))
        data = str(tmp_path / "app-data")
        window = show_main_window(qtbot, settings, str(tiny_model_dir), data, paths)
        assert window.session.model_info is not None, window.session.model_error
        return window

    return open_window


def test_a_failed_model_shows_one_line_with_details_and_leaves_the_layout_alone(
    qtbot, open_window, tiny_model_dir, tmp_path, monkeypatch
):
    broken = str(tmp_path / "broken-model")
    load = Captioner.load

    def fail_to_load_broken(path, **kwargs):
        if str(path) == broken:
            raise RuntimeError(TORCH_ERROR)
        return load(path, **kwargs)

    monkeypatch.setattr(Captioner, "load", fail_to_load_broken)
    window = open_window()
    settle_layouts()
    alternatives = window.docks["beams"].height()
    width = window.width()

    with qtbot.waitSignal(window.model_ready, timeout=WAIT_MS) as ready:
        window.set_model(broken)
    assert ready.args == [False]
    settle_layouts()
    banner = window.banner
    assert banner.isVisible()
    line = banner.text.displayed_text()
    assert "\n" not in line and line.startswith("No model loaded")
    assert "Error(s) in loading state_dict" in banner.text.text()
    assert banner.text.height() < 2 * banner.text.fontMetrics().lineSpacing()
    assert banner.details == TORCH_ERROR
    assert banner.details_button.isVisible()
    assert window.docks["beams"].height() == alternatives
    assert window.width() == width

    with qtbot.waitSignal(window.model_ready, timeout=WAIT_MS) as ready:
        window.set_model(str(tiny_model_dir))
    assert ready.args == [True]
    settle_layouts()
    assert not banner.isVisible()
    assert window.docks["beams"].height() == alternatives


def test_details_open_the_whole_error_text(qtbot, monkeypatch):
    shown = []
    monkeypatch.setattr(QMessageBox, "exec", lambda box: shown.append(box.detailedText()))
    banner = ModelBanner()
    qtbot.addWidget(banner)
    banner.show_message("No model loaded: Error(s) in loading", warning=True, details=TORCH_ERROR)
    banner.details_button.click()
    assert shown == [TORCH_ERROR]

    banner.show_message("A plain note", warning=False)
    assert banner.details_button.isHidden()


def test_long_texts_never_resize_the_window(qtbot, open_window, photos, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    photo = folder / ("a-photo-with-a-very-long-file-name-" * 6 + "chelsea.png")
    photos["chelsea"].save(photo)
    window = open_window([photo])
    qtbot.waitUntil(
        lambda: window.words.words == PHOTO_CAPTIONS["chelsea"].split(), timeout=WAIT_MS
    )
    window.resize(1342, 840)  # the width the issue saw grow to 1560 px
    settle_layouts()
    assert window.width() == 1342
    minimum = window.minimumSizeHint().width()

    long_text = "captioned in 1234 ms (decoder only, features cached) " * 12
    window.words.set_words(["pneumonoultramicroscopicsilicovolcanoconiosis"] * 30)
    window.caption_panel.summary.setText(long_text)
    window.statusBar().showMessage(long_text)
    window.banner.show_message("x" * 500, warning=True)
    window.setWindowTitle(f"{photo.name} — Captioner")
    window.settings_panel.model_name.setText("a-model-trained-for-a-long-while-" * 8)
    window.settings_panel.model_status.setText("x" * 400)  # a line with nowhere to break
    settle_layouts()

    assert window.width() == 1342
    assert window.minimumSizeHint().width() <= minimum


def test_ctrl_e_asks_before_replacing_a_description_a_person_wrote(
    qtbot, open_window, photos, tmp_path, monkeypatch
):
    photo = tmp_path / "astronaut.png"
    photos["astronaut"].save(photo)
    written_by_hand = "Eileen Collins, NASA portrait, 1992"
    write_caption_metadata(photo, written_by_hand)  # as exiftool -Description=... would
    window = open_window([photo])
    # The description is the person's caption (#23: adopted into the caption library, shown
    # as written); taking the model's caption instead (Ctrl+1) is what Ctrl+E would write.
    assert window.words.words == written_by_hand.split()
    qtbot.waitUntil(lambda: window.caption_panel.model_said.isVisible(), timeout=WAIT_MS)
    window.actions.take_beam[0].trigger()
    assert window.words.words == PHOTO_CAPTIONS["astronaut"].split()
    questions = []

    def answer(button):
        def question(parent, title, text, *args, **kwargs):
            questions.append(text)
            return button

        return question

    before = photo.read_bytes()
    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.No))
    window.actions.metadata.trigger()
    assert len(questions) == 1 and written_by_hand in questions[0]
    assert photo.read_bytes() == before

    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.Yes))
    window.actions.metadata.trigger()
    assert len(questions) == 2
    assert read_caption_metadata(photo)["xmp"] == PHOTO_CAPTIONS["astronaut"]


def test_an_elided_label_keeps_its_whole_text_and_offers_it_as_a_tooltip(qtbot):
    label = ElidedLabel("a short one")
    qtbot.addWidget(label)
    label.resize(400, label.sizeHint().height())
    assert label.displayed_text() == "a short one" and label.toolTip() == ""

    long_text = "a cat looking at the camera " * 20
    label.setText(long_text)
    assert label.text() == long_text
    assert label.displayed_text().endswith("…")
    assert label.fontMetrics().horizontalAdvance(label.displayed_text()) <= 400
    assert label.toolTip() == long_text
    assert label.minimumSizeHint().width() < 100  # whatever the text, it never asks for more


@pytest.mark.parametrize("size", [(800, 560), (1320, 840), (1920, 1080)])
def test_the_window_fits_its_size_with_no_button_cut_and_nothing_clipped(
    qtbot, open_window, photos, tmp_path, size
):
    from PySide6.QtWidgets import QAbstractButton, QWidget

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in PHOTO_CAPTIONS:
        photos[name].save(folder / f"{name}.png")
    window = open_window([folder])
    qtbot.waitUntil(lambda: bool(window.words.words), timeout=WAIT_MS)
    window.banner.show_message(
        "Names about 503 kinds of things (nouns learned from ImageNet); "
        "its sentences come from composites",
        warning=False,
        about=True,
    )
    window.caption_panel.summary.setText("Beam 1 of 5 · score -8.70 · captioned in 123 ms")
    for dock in ("lstm", "settings"):
        window.docks[dock].raise_()
        window.resize(*size)
        settle_layouts()
        assert (window.width(), window.height()) == size
        for widget in window.findChildren(QWidget):
            if not widget.isVisible() or widget.isWindow():
                continue
            text = widget.text() if isinstance(widget, QAbstractButton) else ""
            name = f"{type(widget).__name__} {widget.objectName()} {text!r}"
            if isinstance(widget, QAbstractButton):  # its whole text, not "Pl…ds"
                assert widget.width() >= widget.sizeHint().width(), name
            # Nothing a layout placed narrower or lower than it needs (cut off on the right or
            # at the bottom).
            layout = widget.parentWidget().layout()
            if layout is None or layout.indexOf(widget) < 0:
                continue
            assert widget.width() >= widget.minimumSizeHint().width(), name
            assert widget.height() >= widget.minimumSizeHint().height(), name
        summary = window.caption_panel.summary
        if size != (800, 560):  # the score line and the model's note are read whole
            assert summary.displayed_text() == summary.text()
            assert window.banner.text.displayed_text() == window.banner.text.text()
            for panel in (window.settings_panel, window.images_panel):
                if panel.isVisible():
                    right = panel.mapTo(window, panel.rect().topRight()).x()
                    assert right <= window.width()


def test_the_image_list_widens_again_when_the_window_does(qtbot, open_window, tmp_path):
    window = open_window()
    window.resize(1320, 840)
    settle_layouts()
    images = window.docks["images"]
    wide = images.width()
    window.resize(800, 560)
    settle_layouts()
    assert images.width() < wide
    window.resize(1320, 840)
    settle_layouts()
    assert abs(images.width() - wide) <= 2
