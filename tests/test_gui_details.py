"""Details of the desktop app (issue #11, points 12-14), driven with pytest-qt."""

from __future__ import annotations

import itertools
import os

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from conftest import show_main_window  # noqa: E402
from PySide6.QtCore import QModelIndex, Qt  # noqa: E402
from PySide6.QtGui import QFont, QFontMetrics  # noqa: E402

from captioner import Captioner  # noqa: E402
from captioner.decoder import Decoder, DecoderConfig  # noqa: E402
from captioner.encoder import Encoder, EncoderConfig  # noqa: E402
from captioner.vocab import Vocabulary  # noqa: E402
from gui.files import collect_images  # noqa: E402
from gui.main_window import MainWindow  # noqa: E402
from gui.models.image_list import ImageListModel, Status  # noqa: E402
from gui.settings import Settings  # noqa: E402
from gui.thumbnails import THUMBNAIL_SIZE, Thumbnailer  # noqa: E402
from gui.widgets.caption_panel import BeamList  # noqa: E402
from gui.widgets.image_list import elided_lines  # noqa: E402
from gui.widgets.lstm_panel import GateChart  # noqa: E402

WAIT_MS = 90_000  # two busy cores: a model load or a caption can take seconds
LONG_CAPTION = (
    "a large brown dog with a red collar running across a wide green field of grass "
    "next to a small white fence under a cloudy grey sky in the late afternoon"
)


@pytest.fixture
def open_window(qtbot, tiny_model_dir, tmp_path):
    def open_window(paths=(), model_dir=None) -> MainWindow:
        settings = Settings.from_file(str(tmp_path / "settings.ini"))
        settings.mark_started()  # no samples: the list holds what a test opens
        model = str(model_dir or tiny_model_dir)
        return show_main_window(qtbot, settings, model, str(tmp_path / "app-data"), paths)

    return open_window


# 12. The settings name the model's real feature grid.


def test_settings_show_the_grid_of_a_stride_16_encoder(qtbot, open_window, tmp_path):
    vocab = Vocabulary.build(["a red circle"], min_count=1)
    encoder = Encoder(EncoderConfig(image_size=224, feature_stride=16))
    decoder = Decoder(DecoderConfig(len(vocab), encoder.encoder_dim, 8, 16, 8))
    model_dir = Captioner(encoder, decoder, vocab, name="stride-16").save(tmp_path / "s16")
    window = open_window(model_dir=model_dir)
    assert window.session.model_info is not None
    assert "14 x 14 grid" in window.settings_panel.model_encoder.text()


# 13. Without a model the viewer shows the photo itself, not its thumbnail scaled up.


def test_without_a_model_the_viewer_shows_the_full_photo(qtbot, open_window, photos, tmp_path):
    path = tmp_path / "astronaut.png"
    photos["astronaut"].save(path)
    assert min(photos["astronaut"].size) > 2 * THUMBNAIL_SIZE
    window = open_window([path], model_dir=tmp_path / "no-such-model")
    assert window.session.model_info is None
    width, height = photos["astronaut"].size
    qtbot.waitUntil(
        lambda: (
            window.viewer.image is not None
            and (window.viewer.image.width(), window.viewer.image.height()) == (width, height)
        ),
        timeout=WAIT_MS,
    )
    assert not window.viewer.busy


# 14a. Captions in the image list end with an ellipsis instead of being cut mid-line.


def test_long_captions_in_the_list_are_elided_and_in_the_tooltip(qtbot):
    model = ImageListModel()
    model.add_paths(["/photos/dog.jpg"])
    model.set_status("/photos/dog.jpg", Status.CAPTIONED, caption=LONG_CAPTION)
    assert LONG_CAPTION in model.data(model.index(0), Qt.ItemDataRole.ToolTipRole)

    metrics = QFontMetrics(QFont())
    width, max_lines = 180, 3
    lines = elided_lines(LONG_CAPTION, metrics, width, max_lines)
    assert len(lines) == max_lines
    assert all(metrics.horizontalAdvance(line) <= width for line in lines)
    assert lines[-1].endswith("…")
    assert LONG_CAPTION.startswith(" ".join(lines)[:-1].rstrip())
    # A caption that fits is shown whole, wrapped at spaces.
    assert " ".join(elided_lines("a dog", metrics, width, max_lines)) == "a dog"


# 14b. Gate-chart word labels never overlap, however long the caption.


def test_gate_chart_word_labels_do_not_overlap_on_a_long_caption(qtbot):
    chart = GateChart()
    qtbot.addWidget(chart)
    chart.resize(380, 380)
    tokens = LONG_CAPTION.split()[:20]
    chart.set_data(tokens, {})
    for selected in (-1, 7):
        chart.set_selected(selected)
        labels = chart.word_labels()
        assert len(labels) >= len(tokens) // 3  # thinned, not dropped
        if selected >= 0:
            assert selected in [label.index for label in labels]
        for first, second in itertools.combinations(labels, 2):
            assert not first.outline().intersects(second.outline()), (first.text, second.text)
    # Short captions keep every word, level.
    chart.set_data(["a", "cat"], {})
    assert [label.text for label in chart.word_labels()] == ["a", "cat"]


# 14c. Scores shrunk by a length penalty still tell the alternatives apart.


def test_small_beam_scores_are_shown_with_enough_digits(qtbot):
    beams = BeamList()
    qtbot.addWidget(beams)
    beams.set_beams([("a dog", -0.0012), ("a cat", -0.0034), ("a cow", -12.345)])
    shown = [beams.topLevelItem(row).text(2) for row in range(3)]
    assert shown[0] != shown[1]
    assert float(shown[0]) == pytest.approx(-0.0012)
    assert shown[2] == "-12.35"


# 14d. The status bar shows a photo's error only while that photo is the one shown.


def test_status_bar_shows_no_error_of_a_photo_that_is_not_shown(
    qtbot, open_window, photos, tmp_path
):
    folder = tmp_path / "photos"
    folder.mkdir()
    photos["astronaut"].save(folder / "astronaut.png")
    (folder / "broken.jpg").write_bytes(b"this is not a photo at all")
    photos["chelsea"].save(folder / "chelsea.png")
    window = open_window()
    window.open_paths([str(folder)])
    broken = window.image_model.row_of(str(folder / "broken.jpg"))
    qtbot.waitUntil(
        lambda: window.image_model.item(broken).status is Status.FAILED, timeout=WAIT_MS
    )
    assert window.session.current_path == str(folder / "astronaut.png")
    assert "broken.jpg" not in window.statusBar().currentMessage()

    # Its error shows while it is selected, and goes when another photo is.
    window.select_row(broken)
    qtbot.waitUntil(lambda: "broken.jpg" in window.statusBar().currentMessage(), timeout=WAIT_MS)
    window.select_row(broken + 1)
    assert "broken.jpg" not in window.statusBar().currentMessage()


# 14e. A symbolic link to a listed photo does not add it again.


def test_a_link_to_a_listed_photo_adds_no_second_row(photos, tmp_path):
    photo = tmp_path / "chelsea.png"
    photos["chelsea"].save(photo)
    link = tmp_path / "link-to-chelsea.png"
    link.symlink_to(photo)

    assert collect_images([str(photo), str(link)], recursive=False) == [str(photo)]
    assert collect_images([str(tmp_path)], recursive=False) == [str(photo)]

    model = ImageListModel()
    assert model.add_paths([str(photo)]) == [0]
    assert model.add_paths([str(link)]) == [0]  # opened later, on its own
    assert model.rowCount(QModelIndex()) == 1


def test_thumbnails_refuse_what_captioning_refuses(qtbot, photos, tmp_path):
    """Qt reads PPM, ICO, SVG...; the list shows such a file's reason, not a thumbnail."""
    ppm, png = tmp_path / "odd.ppm", tmp_path / "photo.png"
    photos["chelsea"].save(ppm)
    photos["chelsea"].save(png)
    thumbnailer = Thumbnailer()
    try:
        with qtbot.waitSignal(thumbnailer.failed, timeout=WAIT_MS) as failed:
            thumbnailer.request(str(ppm))
        assert failed.args == [str(ppm), "format not supported: PPM"]
        with qtbot.waitSignal(thumbnailer.ready, timeout=WAIT_MS) as ready:
            thumbnailer.request(str(png))
        assert ready.args[0] == str(png)
        assert max(ready.args[1].width(), ready.args[1].height()) == THUMBNAIL_SIZE
    finally:
        thumbnailer.shutdown()


def test_a_fifo_named_like_a_photo_gets_a_reason_not_a_hung_thumbnail_thread(qtbot, tmp_path):
    """Qt's reader would open the FIFO and wait for a writer for ever (issue #21)."""
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    thumbnailer = Thumbnailer()
    try:
        with qtbot.waitSignal(thumbnailer.failed, timeout=20_000) as failed:
            thumbnailer.request(str(fifo))
        assert failed.args == [str(fifo), "is not a regular file but a FIFO (named pipe)"]
    finally:
        with open(os.open(fifo, os.O_RDWR | os.O_NONBLOCK), "wb"):  # frees a reader, if blocked
            thumbnailer.shutdown()
