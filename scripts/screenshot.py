"""Start the real main window, caption its photos and save a screenshot of it as PNG.

Meant to run on an X server (scripts/screenshot.sh starts one with Xvfb), so the picture is
what the X server shows; it also works with QT_QPA_PLATFORM=offscreen. Preferences go to a
temporary INI file, never the user's.

    .venv/bin/python scripts/screenshot.py docs/screenshot.png [--model DIR] [PATH ...]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from PIL import Image  # noqa: E402
from PySide6.QtCore import QBuffer, QEventLoop, QIODevice, QTimer  # noqa: E402
from PySide6.QtGui import QColor, QPalette  # noqa: E402

from gui.app import create_application  # noqa: E402
from gui.files import sample_images_dir  # noqa: E402
from gui.main_window import MainWindow  # noqa: E402
from gui.settings import Settings  # noqa: E402

MAX_BYTES = 300_000


def wait_until(condition, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    loop = QEventLoop()
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for the window")
        QTimer.singleShot(20, loop.quit)
        loop.exec()


def save_small_png(png: bytes, path: Path) -> int:
    """Save losslessly if that stays under MAX_BYTES, else with a 256-colour palette."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)
    if path.stat().st_size > MAX_BYTES:
        # 256 colours chosen by median cut, then error diffusion so heatmaps do not band.
        palette = image.quantize(256, Image.Quantize.MEDIANCUT)
        dithered = image.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG)
        dithered.save(path, optimize=True)
    return path.stat().st_size


def dark_palette() -> QPalette:
    """A dark desktop palette, to check that nothing in the window assumes a light theme."""
    palette = QPalette(QColor(53, 53, 53), QColor(45, 45, 48))  # button, window
    for role, colour in (
        (QPalette.ColorRole.Base, QColor(30, 30, 30)),
        (QPalette.ColorRole.AlternateBase, QColor(60, 60, 64)),
        (QPalette.ColorRole.Text, QColor(230, 230, 230)),
        (QPalette.ColorRole.WindowText, QColor(230, 230, 230)),
        (QPalette.ColorRole.ButtonText, QColor(230, 230, 230)),
        (QPalette.ColorRole.PlaceholderText, QColor(150, 150, 150)),
        (QPalette.ColorRole.Highlight, QColor(42, 130, 218)),
        (QPalette.ColorRole.HighlightedText, QColor(255, 255, 255)),
        (QPalette.ColorRole.Dark, QColor(25, 25, 25)),
        (QPalette.ColorRole.Mid, QColor(90, 90, 90)),
    ):
        palette.setColor(role, colour)
    return palette


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("paths", nargs="*", help="photos or folders (default: the samples)")
    parser.add_argument("--model", help="model directory (default: the default model)")
    parser.add_argument("--select", type=int, default=0, help="which photo to show")
    parser.add_argument("--word", type=int, default=1, help="which word's heatmap to show")
    parser.add_argument("--size", default="1320x840", help="window size, WIDTHxHEIGHT")
    parser.add_argument("--dark", action="store_true", help="use the dark colour scheme")
    args = parser.parse_intermixed_args()

    app = create_application([sys.argv[0]])
    if args.dark:
        app.setStyle("Fusion")
        app.setPalette(dark_palette())
    work = Path(tempfile.mkdtemp())
    settings = Settings.from_file(str(work / "settings.ini"))
    settings.mark_started()
    paths = args.paths or [str(sample_images_dir())]
    # A library of its own: the user's may know these photos, and would show them uncaptioned
    # by the model (no heatmap to draw).
    window = MainWindow(
        settings, paths=paths, model_dir=args.model, library_path=str(work / "library.sqlite3")
    )
    width, height = (int(v) for v in args.size.split("x"))
    window.resize(width, height)
    window.move(0, 0)
    window.show()
    wait_until(lambda: bool(window.session.model_info or window.session.model_error), 600)

    finished = []
    window.caption_all_finished.connect(lambda *result: finished.append(result))
    window.caption_all()
    wait_until(lambda: finished or not window.session.batch_running, 900)
    window.select_row(args.select)
    wait_until(lambda: window.session.current is not None or window.session.model_error, 300)
    wait_until(lambda: not window.viewer.busy, 300)
    if window.session.current is not None and args.word < len(window.session.current.tokens):
        window.words.select(args.word)
    window.image_list.setFocus()
    deadline = time.monotonic() + 1.0  # let the window settle and repaint
    wait_until(lambda: time.monotonic() > deadline, 5)

    shot = window.screen().grabWindow(window.winId())
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    shot.save(buffer, "PNG")
    size = save_small_png(bytes(buffer.data()), args.output)
    print(f"saved {args.output} ({shot.width()} x {shot.height()}, {size // 1024} KB)")
    window.close()
    app.quit()


if __name__ == "__main__":
    main()
