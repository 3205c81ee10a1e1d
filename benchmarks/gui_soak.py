"""An hour of a person's use, compressed: does the app stay alive and its memory flat?

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/gui_soak.py [--minutes 10] [--photos 400]

Opens a folder of `--photos` photos (the shipped samples and scikit-image's photos, cropped,
flipped and scaled into distinct files) in the real main window with the default model, starts
Caption All, and browses: Down or Up ten times a second (turning at either end of the list), every
word of the shown caption hovered every 2 s, the beam size changed and the attention grid opened
every 30 s. Once a minute it prints the process's resident memory (now and peak) and the reference
counts of None, True and False, which a PySide6 that loses references drains (issue #20). It ends
with a verdict: alive, memory within 10% of the first minute's, counts steady. Exit status 1 if not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "horse", "brick", "coins")
KEY_INTERVAL_MS = 100
HOVER_INTERVAL_MS = 2_000
SETTINGS_INTERVAL_MS = 30_000
MEMORY_TOLERANCE = 0.10


def make_photos(folder: Path, count: int) -> None:
    """`count` distinct JPEGs: each source photo cropped, flipped and scaled differently."""
    import numpy as np
    from PIL import Image, ImageOps
    from skimage import data

    sources = [
        Image.open(p).convert("RGB") for p in sorted((REPO / "captioner/samples").glob("*.jpg"))
    ]
    sources += [
        Image.fromarray(np.asarray(getattr(data, n)())).convert("RGB") for n in SKIMAGE_PHOTOS
    ]
    for index in range(count):
        image = sources[index % len(sources)]
        variant = index // len(sources)
        width, height = image.size
        margin = (variant % 7) * min(width, height) // 40
        image = image.crop((margin, margin, width - margin, height - margin))
        if variant % 2:
            image = ImageOps.mirror(image)
        scale = 0.6 + 0.1 * (variant % 5)
        image = image.resize(
            (max(64, int(image.width * scale)), max(64, int(image.height * scale)))
        )
        image.save(folder / f"photo-{index:04d}.jpg", quality=88)


def memory_mib() -> tuple[float, float]:
    """(resident now, resident peak) of this process, from /proc."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def singleton_counts() -> tuple[int, int, int]:
    return sys.getrefcount(None), sys.getrefcount(True), sys.getrefcount(False)


def soak(minutes: float, photo_count: int) -> int:
    from PySide6.QtCore import QEvent, QPointF, Qt, QTimer
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from gui.main_window import MainWindow
    from gui.settings import Settings

    app = QApplication([sys.argv[0]])
    work = Path(tempfile.mkdtemp(prefix="gui-soak-"))
    folder = work / "photos"
    folder.mkdir()
    make_photos(folder, photo_count)
    window = MainWindow(
        Settings.from_file(str(work / "settings.ini")),
        paths=[str(folder)],
        model_dir=None,
        data_dir=str(work / "data"),
    )
    window.resize(1320, 840)
    window.show()
    state = {"direction": 1, "keys": 0, "hovers": 0, "beam": 3, "minute": 0}
    rows: list[tuple] = []
    start = time.monotonic()

    def press_key() -> None:
        row = window.image_list.currentIndex().row()
        if row >= window.image_model.rowCount() - 1:
            state["direction"] = -1
        elif row <= 0:
            state["direction"] = 1
        key = Qt.Key.Key_Down if state["direction"] > 0 else Qt.Key.Key_Up
        QTest.keyClick(window.image_list, key)
        state["keys"] += 1

    def hover_words() -> None:
        words = window.words
        for index in range(len(words.words)):
            point = QPointF(words.word_rect(index).center())
            event = QMouseEvent(
                QEvent.Type.MouseMove,
                point,
                words.mapToGlobal(point),
                Qt.MouseButton.NoButton,
                Qt.MouseButton.NoButton,
                Qt.KeyboardModifier.NoModifier,
            )
            QApplication.sendEvent(words, event)
            state["hovers"] += 1

    def change_settings() -> None:
        state["beam"] = 5 if state["beam"] == 3 else 3
        window.settings_panel.beam_size.setValue(state["beam"])
        window.show_grid()
        QTimer.singleShot(1_000, lambda: window._grid_dialog and window._grid_dialog.close())

    def report() -> None:
        now, peak = memory_mib()
        none, true, false = singleton_counts()
        pending = len(window.session.pending_paths())
        rows.append(
            (state["minute"], now, peak, none, true, false, state["keys"], photo_count - pending)
        )
        print(
            f"{state['minute']:>6} {now:>9.0f} {peak:>9.0f} {none:>9} {true:>7} {false:>7} "
            f"{state['keys']:>7} {photo_count - pending:>9}",
            flush=True,
        )
        state["minute"] += 1
        if time.monotonic() - start >= minutes * 60:
            window.close()
            app.quit()

    def begin(loaded: bool) -> None:
        if not loaded:
            print("the default model did not load", flush=True)
            app.exit(1)
            return
        window.select_row(0)
        window.caption_all()
        for interval, slot in (
            (KEY_INTERVAL_MS, press_key),
            (HOVER_INTERVAL_MS, hover_words),
            (SETTINGS_INTERVAL_MS, change_settings),
            (60_000, report),
        ):
            timer = QTimer(window)
            timer.timeout.connect(slot)
            timer.start(interval)
        report()

    window.model_ready.connect(begin)
    print(
        f"{photo_count} photos, {minutes:g} minutes; Python {sys.version.split()[0]}, "
        f"PySide6 {__import__('PySide6').__version__}",
        flush=True,
    )
    print(" minute  RSS MiB  peak MiB      None    True   False    keys  captioned", flush=True)
    status = app.exec()
    shutil.rmtree(work, ignore_errors=True)  # 400 photos and the settings
    if status or len(rows) < 2:
        return 1
    first_minute = rows[1][1] if len(rows) > 2 else rows[0][1]
    highest = max(row[1] for row in rows[1:])
    growth = highest / first_minute - 1
    none_drop = rows[1][3] - min(row[3] for row in rows[1:])
    flat = growth <= MEMORY_TOLERANCE
    steady = none_drop <= 1_000
    print(
        f"alive after {state['keys']} key presses and {state['hovers']} word hovers; "
        f"memory {'flat' if flat else 'GREW'}: highest {highest:.0f} MiB, "
        f"{growth:+.1%} against minute 1; None's count fell by at most {max(none_drop, 0)}"
    )
    return 0 if flat and steady else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--photos", type=int, default=400)
    args = parser.parse_args()
    return soak(args.minutes, args.photos)


if __name__ == "__main__":
    sys.exit(main())
