"""The desktop app, driven through its real main window with pytest-qt (offscreen platform)."""

from __future__ import annotations

import gc
import json
import shutil
import threading

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from conftest import PHOTO_CAPTIONS, save_photos, show_main_window  # noqa: E402
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication, QImage  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from captioner import Captioner  # noqa: E402
from captioner.decoder import Decoder, DecoderConfig  # noqa: E402
from captioner.encoder import Encoder, EncoderConfig  # noqa: E402
from captioner.photos.metadata import read_caption_metadata, sidecar_path  # noqa: E402
from captioner.vocab import Vocabulary  # noqa: E402
from gui import main_window as main_window_module  # noqa: E402
from gui.app import parse_args  # noqa: E402
from gui.convert import pil_to_qimage  # noqa: E402
from gui.main_window import MainWindow  # noqa: E402
from gui.models.image_list import Status  # noqa: E402
from gui.settings import Settings  # noqa: E402
from gui.widgets.banner import NO_MODEL, SHAPES_MODEL  # noqa: E402

WAIT_MS = 90_000  # two busy cores: a model load or a caption can take seconds
NAMES = ["astronaut", "chelsea", "coffee"]


@pytest.fixture
def photo_dir(tmp_path, photos):
    return save_photos(tmp_path / "photos", photos, NAMES)


@pytest.fixture
def settings(tmp_path):
    return Settings.from_file(str(tmp_path / "settings.ini"))


@pytest.fixture
def open_window(qtbot, settings, tiny_model_dir, tmp_path):
    def open_window(paths=(), model_dir=None, wait_for_model=True) -> MainWindow:
        model = str(model_dir or tiny_model_dir)
        data = str(tmp_path / "app-data")
        return show_main_window(qtbot, settings, model, data, paths, wait_for_model)

    return open_window


def wait_for_caption(qtbot, window: MainWindow, name: str) -> None:
    expected = PHOTO_CAPTIONS[name].split()
    qtbot.waitUntil(lambda: window.words.words == expected, timeout=WAIT_MS)


def viewer_pixels(window: MainWindow) -> np.ndarray:
    image = window.viewer.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    rows = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), -1)
    return rows[:, : image.width() * 3].reshape(image.height(), image.width(), 3).astype(int)


def click_word(qtbot, window: MainWindow, index: int) -> None:
    with qtbot.waitSignal(window.heatmaps.overlay_shown, timeout=WAIT_MS):
        qtbot.mouseClick(
            window.words, Qt.MouseButton.LeftButton, pos=window.words.word_rect(index).center()
        )


def test_opens_photos_captions_them_and_moves_on_with_the_keyboard(qtbot, open_window, photo_dir):
    window = open_window([photo_dir])
    assert [item.path.rsplit("/", 1)[-1] for item in window.image_model.items()] == [
        f"{name}.png" for name in NAMES
    ]
    wait_for_caption(qtbot, window, NAMES[0])
    assert window.image_model.item(0).status is Status.CAPTIONED
    assert window.beam_list.topLevelItemCount() == window.settings.decode_options.beam_size

    window.image_list.setFocus()
    qtbot.keyClick(window.image_list, Qt.Key.Key_Down)
    wait_for_caption(qtbot, window, NAMES[1])
    qtbot.keyClick(window.image_list, Qt.Key.Key_PageDown)
    wait_for_caption(qtbot, window, NAMES[2])
    assert window.image_model.item(2).status is Status.CAPTIONED


def test_clicking_a_word_overlays_its_heatmap_and_shows_its_gates(qtbot, open_window, photo_dir):
    window = open_window([photo_dir / "chelsea.png"])
    wait_for_caption(qtbot, window, "chelsea")
    plain = viewer_pixels(window)

    click_word(qtbot, window, 1)
    with_heatmap = viewer_pixels(window)
    changed = np.abs(with_heatmap - plain).sum(axis=2) > 30
    assert changed.mean() > 0.05  # a visible share of the photo is tinted
    assert window.words.selected == 1
    gates = window.lstm_panel.selected_values()
    assert set(gates) >= {"input", "forget", "output", "attention gate", "cell"}
    assert all(0.0 <= gates[name] <= 1.0 for name in ("input", "forget", "output"))

    # Right arrow moves to the next word: another map, another picture.
    with qtbot.waitSignal(window.heatmaps.overlay_shown, timeout=WAIT_MS) as shown:
        qtbot.keyClick(window.words, Qt.Key.Key_Right)
    assert shown.args == [2]
    assert np.abs(viewer_pixels(window) - with_heatmap).sum() > 0

    # Clicking the selected word again shows the plain photo.
    qtbot.mouseClick(
        window.words, Qt.MouseButton.LeftButton, pos=window.words.word_rect(2).center()
    )
    assert window.words.selected == -1
    assert np.array_equal(viewer_pixels(window), plain)


def test_beam_size_reruns_only_the_decoder_and_persists(
    qtbot, open_window, photo_dir, tmp_path, settings
):
    window = open_window([photo_dir / "coffee.png"])
    wait_for_caption(qtbot, window, "coffee")
    encoded = window.session.worker.encode_count

    window.settings_panel.beam_size.setValue(1)
    qtbot.waitUntil(lambda: window.beam_list.topLevelItemCount() == 1, timeout=WAIT_MS)
    window.settings_panel.beam_size.setValue(4)
    qtbot.waitUntil(lambda: window.beam_list.topLevelItemCount() == 4, timeout=WAIT_MS)
    assert window.words.words == PHOTO_CAPTIONS["coffee"].split()
    window.settings_panel.consensus_samples.setValue(8)
    qtbot.waitUntil(lambda: window.settings.decode_options.consensus_samples == 8, timeout=WAIT_MS)
    window.settings_panel.name_things.setValue(2)
    qtbot.waitUntil(lambda: window.session.options.name_things == 2, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.beam_list.topLevelItemCount() == 4, timeout=WAIT_MS)
    assert window.words.words == PHOTO_CAPTIONS["coffee"].split()  # the model knows it well
    assert window.session.worker.encode_count == encoded  # features came from the cache

    window.close()
    reopened = Settings.from_file(str(tmp_path / "settings.ini"))
    assert reopened.decode_options.beam_size == 4
    assert reopened.decode_options.consensus_samples == 8
    assert reopened.decode_options.name_things == 2
    assert reopened.recent[0] == str(photo_dir / "coffee.png")
    assert not reopened.first_run


def test_a_dropped_corrupt_file_gets_an_error_entry_and_the_rest_still_works(
    qtbot, open_window, photo_dir
):
    window = open_window([photo_dir])
    wait_for_caption(qtbot, window, NAMES[0])
    bad = photo_dir / "broken.jpg"
    bad.write_bytes(b"this is not a photo at all")

    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(bad))])
    centre = window.rect().center()
    copy, no_button = Qt.DropAction.CopyAction, Qt.MouseButton.NoButton
    enter = QDragEnterEvent(centre, copy, data, no_button, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(centre), copy, data, no_button, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, drop)

    row = window.image_model.row_of(str(bad))
    assert row == len(NAMES)
    qtbot.waitUntil(lambda: window.image_model.item(row).status is Status.FAILED, timeout=WAIT_MS)
    assert "not an image" in window.image_model.item(row).error
    assert "broken.jpg" in window.statusBar().currentMessage()

    window.select_row(1)
    wait_for_caption(qtbot, window, NAMES[1])


def test_cancel_stops_caption_all_between_photos(qtbot, open_window, photos, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for copy in range(4):
        for name in NAMES:
            photos[name].save(folder / f"{copy}-{name}.png")
    window = open_window([folder])
    qtbot.waitUntil(lambda: bool(window.words.words), timeout=WAIT_MS)
    # The progress bar lives in the UI thread; the worker's own signals arrive in its thread.
    window.progress.valueChanged.connect(lambda done: done and window.actions.cancel.trigger())

    with qtbot.waitSignal(window.caption_all_finished, timeout=WAIT_MS) as finished:
        window.actions.caption_all.trigger()
        assert window.progress.isVisible() and window.actions.cancel.isEnabled()
    done, total, cancelled = finished.args
    assert cancelled and done < total == 11
    statuses = [item.status for item in window.image_model.items()]
    assert statuses.count(Status.CAPTIONED) < 12
    assert not window.progress.isVisible() and not window.actions.cancel.isEnabled()

    pending = statuses.index(Status.PENDING)
    window.select_row(pending)
    qtbot.waitUntil(
        lambda: window.image_model.item(pending).status is Status.CAPTIONED, timeout=WAIT_MS
    )


def test_exports_copy_sidecar_metadata_and_grid(qtbot, open_window, photo_dir, tmp_path):
    window = open_window([photo_dir / "astronaut.png"])
    wait_for_caption(qtbot, window, "astronaut")
    caption = PHOTO_CAPTIONS["astronaut"]

    window.actions.copy.trigger()
    assert QGuiApplication.clipboard().text() == caption
    window.actions.sidecar.trigger()
    assert sidecar_path(photo_dir / "astronaut.png").read_text(encoding="utf-8") == caption + "\n"
    window.actions.metadata.trigger()
    assert read_caption_metadata(photo_dir / "astronaut.png")["xmp"] == caption
    saved = window.save_grid(str(tmp_path / "grid.png"))
    assert QImage(str(saved)).width() == 5 * 224  # the photo and four words on the first row


def test_paste_opens_the_clipboard_image(qtbot, open_window, photos, tmp_path):
    window = open_window()
    before = window.image_model.rowCount()  # the shipped samples, on a first start
    QGuiApplication.clipboard().setImage(pil_to_qimage(photos["chelsea"]))
    window.actions.paste.trigger()
    assert window.image_model.rowCount() == before + 1
    assert window.image_model.item(before).path.startswith(str(tmp_path / "app-data"))
    wait_for_caption(qtbot, window, "chelsea")


def test_missing_model_keeps_the_window_working_with_a_clear_banner(
    qtbot, open_window, photo_dir, tmp_path
):
    window = open_window([photo_dir], model_dir=tmp_path / "no-such-model")
    assert window.banner.isVisible()
    assert window.banner.text.text().startswith("No model loaded: ")
    assert "no-such-model" in window.banner.text.text()
    assert window.image_model.rowCount() == len(NAMES)
    window.select_row(1)  # still browsable
    assert NO_MODEL in window.words.accessibleDescription()


def test_the_scenes_model_says_what_it_can_describe(qtbot, open_window, tiny_model_dir, tmp_path):
    scenes = tmp_path / "scenes-default"
    shutil.copytree(tiny_model_dir, scenes)
    config = json.loads((scenes / "config.json").read_text())
    (scenes / "config.json").write_text(json.dumps({**config, "name": "scenes-default"}))
    window = open_window(model_dir=scenes)
    assert window.banner.isVisible()
    assert window.banner.text.text() == SHAPES_MODEL
    assert window.settings_panel.model_name.text() == "scenes-default"
    assert window.docks["lstm"].windowTitle() == "Inside the LSTM"
    vocab_size = len(json.loads((scenes / "vocab.json").read_text())["itos"])
    assert window.settings_panel.model_vocab.text() == f"{vocab_size:,} words"


def test_the_gates_panel_is_titled_after_the_models_cell(qtbot, open_window, tmp_path):
    vocab = Vocabulary.build(["a red circle"], min_count=1)
    encoder = Encoder(EncoderConfig(image_size=64))
    decoder = Decoder(DecoderConfig(len(vocab), encoder.encoder_dim, 8, 16, 8, cell="gru"))
    model_dir = Captioner(encoder, decoder, vocab, name="gru-test").save(tmp_path / "gru")
    window = open_window(model_dir=model_dir)
    assert window.session.model_info.cell == "gru"
    assert window.docks["lstm"].windowTitle() == "Inside the GRU"


def test_first_start_without_arguments_opens_the_samples(
    qtbot, open_window, photo_dir, monkeypatch
):
    monkeypatch.setattr(main_window_module, "sample_images_dir", lambda: photo_dir)
    first = open_window(wait_for_model=False)
    assert first.image_model.rowCount() == len(NAMES)
    first.close()
    second = open_window(wait_for_model=False)
    assert second.image_model.rowCount() == 0  # later starts begin empty


class _CycleWithFinalizer:
    """Garbage only the cyclic collector can free; remembers the thread that freed it."""

    freed_in: list[str] = []

    def __init__(self) -> None:
        self.myself = self

    def __del__(self) -> None:
        self.freed_in.append(threading.current_thread().name)


def test_garbage_is_collected_in_the_ui_thread_while_workers_allocate(
    qtbot, open_window, monkeypatch
):
    """A Qt object freed by a collection in the worker thread crashes the app (segfault)."""
    monkeypatch.setattr(_CycleWithFinalizer, "freed_in", [])
    window = open_window()
    _CycleWithFinalizer()
    # The lists are kept: freed ones would take their allocations back off the generation's
    # count, and the UI thread's collector only runs a generation whose count is over threshold.
    kept = []
    worker = threading.Thread(
        target=lambda: kept.append([[index] for index in range(50 * gc.get_threshold()[0])]),
        name="allocator",
    )
    worker.start()
    worker.join()
    qtbot.waitUntil(lambda: bool(_CycleWithFinalizer.freed_in), timeout=WAIT_MS)
    assert _CycleWithFinalizer.freed_in == [threading.main_thread().name]
    window.close()
    assert gc.isenabled()


def test_arguments():
    args = parse_args(["--model", "runs/best", "a.jpg", "photos/"])
    assert args.model == "runs/best" and args.paths == ["a.jpg", "photos/"]
    assert not args.quit_after_show
