"""The app and the model it runs: shipped models by name, what the banner and Help → About this
model say about a model, the copy gate beside the other gates and copied nouns underlined."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from conftest import show_main_window, tiny_copy_captioner  # noqa: E402
from PySide6.QtWidgets import QFileDialog  # noqa: E402

from gui.app import model_argument  # noqa: E402
from gui.main_window import MainWindow  # noqa: E402
from gui.settings import Settings  # noqa: E402
from gui.widgets.banner import SHAPES_MODEL, copy_model_text  # noqa: E402
from gui.widgets.settings_panel import BROWSE  # noqa: E402

WAIT_MS = 90_000  # two busy cores: a model load or a caption can take seconds
COPY_CARD = "# copy-test\n\n## Data\n\nThree photos of a cat and a cup.\n"


@pytest.fixture(scope="module")
def copy_model_dir(tiny_captioner, tmp_path_factory):
    """A model that copies "cat" and "coffee cup" off Lite0's ImageNet classifier, with a card."""
    model = tiny_copy_captioner(tiny_captioner, ["coffee cup", "cat"])
    path = model.save(tmp_path_factory.mktemp("models") / "copy")
    (path / "README.md").write_text(COPY_CARD, encoding="utf-8")
    return path


@pytest.fixture
def settings(tmp_path):
    settings = Settings.from_file(str(tmp_path / "settings.ini"))
    settings.mark_started()  # no samples: the list holds what a test opens
    return settings


@pytest.fixture
def open_window(qtbot, settings, tmp_path):
    def open_window(model: str, paths=()) -> MainWindow:
        return show_main_window(qtbot, settings, model, str(tmp_path / "app-data"), paths)

    return open_window


def switch_model(qtbot, window: MainWindow, choose) -> None:
    with qtbot.waitSignal(window.model_ready, timeout=WAIT_MS) as ready:
        choose()
    assert ready.args == [True], window.session.model_error


def test_a_copy_model_says_how_many_things_it_names_and_about_lists_them(
    qtbot, open_window, copy_model_dir
):
    window = open_window(str(copy_model_dir))
    banner = window.banner
    assert banner.isVisible()
    assert banner.text.text() == copy_model_text(2)
    assert banner.text.text().startswith("Names about 2 kinds of things (nouns learned from")
    assert banner.about_button.isVisible() and banner.button.isHidden()

    banner.about_button.click()
    dialog = window.about_model_dialog
    assert dialog.isVisible()
    assert "copy-test" in dialog.title.text()
    assert "Three photos of a cat and a cup." in dialog.card.toPlainText()
    assert dialog.nouns.toPlainText().splitlines() == ["cat", "coffee cup"]  # sorted, singular
    assert "2 kinds of things" in dialog.nouns_label.text()


def test_a_plain_model_has_no_banner_and_about_says_it_copies_nothing(
    qtbot, open_window, tiny_model_dir
):
    window = open_window(str(tiny_model_dir))
    assert window.banner.isHidden()
    window.actions.about_model.trigger()
    dialog = window.about_model_dialog
    assert "no model card" in dialog.card.toPlainText()
    assert "copies no nouns" in dialog.nouns_label.text()
    assert dialog.nouns.isHidden() and dialog.nouns.toPlainText() == ""


def test_the_gates_panel_shows_the_copy_gate_of_a_copy_model_only(
    qtbot, open_window, copy_model_dir, tiny_model_dir, photos, tmp_path
):
    photo = tmp_path / "chelsea.png"
    photos["chelsea"].save(photo)
    window = open_window(str(copy_model_dir), [photo])
    qtbot.waitUntil(lambda: window.session.current is not None, timeout=WAIT_MS)
    chart = window.lstm_panel.chart
    shown, _ = chart.series["copy gate"]
    np.testing.assert_allclose(shown, window.session.current.copy_gate)
    assert len(shown) == len(window.session.current.tokens)
    window.words.select(0)
    assert (
        f"copy gate {window.session.current.copy_gate[0]:.2f}" in window.lstm_panel.details.text()
    )
    # The nouns it said were copied (the vocabulary path cannot say them): underlined.
    copy_words = {"cat", "cats", "coffee cup", "coffee cups"}
    assert window.words.copied == [token in copy_words for token in window.session.current.tokens]
    assert any(window.words.copied)

    switch_model(qtbot, window, lambda: window.set_model(str(tiny_model_dir)))
    qtbot.waitUntil(lambda: window.session.current is not None, timeout=WAIT_MS)
    assert window.session.current.copy_gate is None
    assert "copy gate" not in chart.series and "attention gate" in chart.series
    assert not any(window.words.copied)


def test_settings_choose_a_shipped_model_or_a_directory_and_keep_it(
    qtbot, open_window, settings, tiny_model_dir, tmp_path, monkeypatch
):
    # A folder named like a shipped model, where the app runs, is not what "Shapes" loads.
    shutil.copytree(tiny_model_dir, tmp_path / "shapes")
    monkeypatch.chdir(tmp_path)
    window = open_window(str(tiny_model_dir))
    choice = window.settings_panel.model_choice
    assert choice.currentData() == str(tiny_model_dir)

    switch_model(qtbot, window, lambda: choice.activated.emit(choice.findData("shapes")))
    assert window.session.model_info.name == "scenes-default"
    assert window.banner.text.text() == SHAPES_MODEL
    assert settings.model == "shapes"
    assert choice.currentData() == "shapes"
    assert Settings.from_file(settings.store.fileName()).model == "shapes"

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args: "")
    choice.activated.emit(choice.findData(BROWSE))  # cancelled: nothing changes
    assert choice.currentData() == "shapes" and settings.model == "shapes"

    picked = str(tmp_path / "shapes")
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args: picked)
    switch_model(qtbot, window, lambda: choice.activated.emit(choice.findData(BROWSE)))
    assert window.session.model_info.name == "tiny-test-model"
    assert settings.model == picked and choice.currentData() == picked
    assert choice.currentText() == "shapes"  # the directory's name, beside Shapes (…)
    assert window.banner.isHidden()


def test_gui_model_argument_follows_the_cli_rule(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert model_argument("shapes") == "shapes"
    assert model_argument("runs/best") == str(tmp_path / "runs" / "best")
    (tmp_path / "shapes").mkdir()
    assert model_argument("shapes") == str(tmp_path / "shapes")  # an existing path wins


def test_the_backend_setting_reloads_the_model_on_that_runtime(
    qtbot, open_window, tiny_model_dir, settings
):
    window = open_window(str(tiny_model_dir))
    qtbot.waitUntil(lambda: window.session.model_info is not None, timeout=WAIT_MS)
    assert window.session.model_info.device == "cpu (ONNX Runtime)"  # auto, on a CPU
    switch_model(qtbot, window, lambda: window.settings_panel.backend.setCurrentText("torch"))
    assert window.session.model_info.device == "cpu (PyTorch)"
    assert "on cpu (PyTorch)" in window.settings_panel.model_decoder.text()
    assert settings.backend == "torch"


def test_the_precision_setting_reloads_the_encoder_in_int8(qtbot, open_window, settings):
    settings.backend = "onnx"
    window = open_window("default")
    qtbot.waitUntil(lambda: window.session.model_info is not None, timeout=WAIT_MS)
    assert window.session.model_info.device == "cpu (ONNX Runtime)"
    switch_model(qtbot, window, lambda: window.settings_panel.precision.setCurrentText("int8"))
    assert window.session.model_info.device == "cpu (ONNX Runtime, int8)"
    assert window.session.model_info.precision_note == ""
    assert settings.precision == "int8"


def test_int8_where_it_cannot_run_loads_float_and_says_why(
    qtbot, open_window, tiny_model_dir, settings
):
    settings.backend, settings.precision = "torch", "int8"
    window = open_window(str(tiny_model_dir))
    qtbot.waitUntil(lambda: window.session.model_info is not None, timeout=WAIT_MS)
    info = window.session.model_info
    assert info.device == "cpu (PyTorch)"
    assert "float" in info.precision_note
    assert info.precision_note in window.statusBar().currentMessage()
