"""Caption → Learn From My Captions… in the app (#24): learning runs in the dialog's own thread
with progress while the window goes on, Cancel leaves no model directory, and the new model is
listed in Settings and can be used at once. The real main window, offscreen, on the tiny model."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from conftest import show_main_window  # noqa: E402
from PySide6.QtCore import QThread, QTimer  # noqa: E402

from captioner import learn  # noqa: E402
from captioner.learn import LearnSettings  # noqa: E402
from captioner.library import Library  # noqa: E402
from gui.dialogs import learn_from_captions  # noqa: E402
from gui.dialogs.learn_from_captions import learned_models  # noqa: E402
from gui.settings import Settings  # noqa: E402

WAIT_MS = 90_000
MINE = {  # the person's captions, in words the tiny model has never seen
    "chelsea": "felix the tabby dozing",
    "coffee": "my morning espresso",
    "astronaut": "aunt eileen in her spacesuit",
    "rocket": "launch day at the cape",
}
QUICK = LearnSettings(max_epochs=8, lr=3e-3, validation_share=0.25, patience=8, l2sp=1e-4)
LEARNED_NAME = "tiny-test-model + my captions"


@pytest.fixture
def library_file(tmp_path, photos):
    """A caption library holding the person's captions of four photos."""
    path = tmp_path / "library.sqlite3"
    with Library.open(path) as library:
        for name, caption in MINE.items():
            photo = tmp_path / f"{name}.png"
            photos[name].save(photo)
            library.set_caption(str(photo), caption)
    return path


@pytest.fixture
def window(qtbot, tmp_path, tiny_model_dir, library_file):
    settings = Settings.from_file(str(tmp_path / "settings.ini"))
    return show_main_window(
        qtbot, settings, str(tiny_model_dir), str(tmp_path / "data"), [tmp_path / "chelsea.png"],
        library_path=library_file,
    )  # fmt: skip


def open_dialog(window):
    window.actions.learn.trigger()
    dialog = window.learn_dialog
    assert dialog is not None and dialog.isVisible()
    dialog.settings = QUICK  # a few epochs: the test is about the app, not the learning
    return dialog


def test_learning_runs_in_its_own_thread_with_progress_and_the_new_model_is_offered(
    qtbot, window, tmp_path
):
    dialog = open_dialog(window)
    assert "4 captions you wrote or accepted" in dialog.intro.text()
    threads, values, ticks = [], [], []
    timer = QTimer(interval=5)  # the window's event loop: it must go on while learning runs
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start()
    dialog.start()
    dialog.learner.progressed.connect(lambda _p: threads.append(QThread.currentThread()))
    dialog.learner.progressed.connect(lambda _p: values.append(dialog.progress.value()))
    assert dialog.running and not dialog.start_button.isEnabled()
    assert dialog.cancel_button.text() == "&Cancel"
    qtbot.waitUntil(lambda: dialog.result is not None, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: not dialog.running, timeout=WAIT_MS)
    timer.stop()

    assert threads and all(t is not window.thread() for t in threads)  # never the UI thread
    assert values == sorted(values) and dialog.progress.value() == dialog.progress.maximum()
    assert len(ticks) > 5  # the UI thread kept running its event loop
    model_dir = tmp_path / "models" / LEARNED_NAME
    assert dialog.result.model_dir == model_dir and (model_dir / "config.json").is_file()
    summary = dialog.summary.text()
    assert "Learned from 4 of your captions (1 held out" in summary
    assert "0 photos skipped" in summary and "Held-out loss per word" in summary
    assert "felix" in summary  # a new word it learned

    choice = window.settings_panel.model_choice
    listed = choice.findData(str(model_dir))
    assert listed >= 0 and choice.itemText(listed) == LEARNED_NAME

    assert dialog.use_button.isVisible()
    dialog.use_button.click()
    qtbot.waitUntil(
        lambda: (
            window.session.model_info is not None and window.session.model_info.name == LEARNED_NAME
        ),
        timeout=WAIT_MS,
    )
    assert window.settings.model == str(model_dir)
    assert choice.currentData() == str(model_dir)


def test_cancel_leaves_no_model_directory(qtbot, window, tmp_path):
    dialog = open_dialog(window)
    dialog.start()
    dialog.learner.progressed.connect(lambda _p: dialog.cancel_button.click())
    qtbot.waitUntil(lambda: not dialog.running, timeout=WAIT_MS)
    assert dialog.result is None
    assert not dialog.isVisible()  # Cancel while learning: stopped, then closed
    assert not (tmp_path / "models" / LEARNED_NAME).exists()
    assert learned_models(tmp_path / "library.sqlite3") == []
    assert window.settings_panel.model_choice.findText(LEARNED_NAME) < 0


def test_cancel_in_the_dialog_says_nothing_was_written_and_it_can_start_again(
    qtbot, window, tmp_path
):
    dialog = open_dialog(window)
    dialog.start()
    dialog.learner.progressed.connect(lambda _p: dialog.cancel())
    qtbot.waitUntil(lambda: not dialog.running, timeout=WAIT_MS)
    assert dialog.isVisible() and "nothing was written" in dialog.status.text()
    assert dialog.start_button.isEnabled() and dialog.cancel_button.text() == "&Close"
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_learned_models_are_listed_at_start_and_without_captions_it_says_why(
    qtbot, tmp_path, tiny_model_dir, photos
):
    assert learn_from_captions.LEARNED_FOLDER == learn.MODELS_FOLDER
    library_file = tmp_path / "empty.sqlite3"
    learned = tmp_path / "models" / LEARNED_NAME
    learned.mkdir(parents=True)
    for name in ("config.json", "vocab.json", "model.safetensors"):
        (learned / name).write_bytes((tiny_model_dir / name).read_bytes())
    settings = Settings.from_file(str(tmp_path / "settings.ini"))
    window = show_main_window(
        qtbot, settings, str(tiny_model_dir), str(tmp_path / "data"), library_path=library_file
    )
    assert window.settings_panel.model_choice.findData(str(learned)) >= 0
    dialog = open_dialog(window)
    assert not dialog.start_button.isEnabled()
    assert "none of your captions" in dialog.status.text()
