"""Opening a folder the caption library knows, at scale, in the real main window (offscreen).

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/gui_library.py [--photos 10000]
        [--profile]

Builds, in a temporary folder, `--photos` small generated JPEGs and a caption library that
knows them all (their captions added through captioner.library's API in one transaction), then:
(a) File -> Open Folder in a window that is up: from `open_paths` until the list shows every
    photo with its caption and has painted (target: under 1 s for 10,000 photos; the model is
    not run, the window has none loaded: a missing model directory, so no model load competes);
(b) the list's thumbnails load lazily: how many the thumbnailer was asked for once the list is
    shown (only the rows on screen), and after scrolling the list through page by page (every
    row once), with the time each page took to paint.
--profile prints cProfile's top functions of (a).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WORDS = ["dog", "cat", "horse", "bicycle", "person", "boat", "tree", "car", "bird", "table"]


def cpu_name() -> str:
    try:
        output = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown CPU"
    for line in output.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def make_photos(folder: Path, count: int) -> list[str]:
    from PIL import Image

    paths = []
    for i in range(count):
        path = folder / f"photo_{i:05d}.jpg"
        Image.new("RGB", (48, 32), (i % 256, (i // 256) % 256, 90)).save(path, quality=70)
        paths.append(str(path))
    return paths


def make_library(file: Path, paths: list[str]) -> float:
    """The library knows every photo, with a model's caption; returns the seconds it took."""
    from captioner.library import Library, ModelKey, ModelResult

    key = ModelKey("benchmark-model", "beam=3", "benchmark")
    results = [
        ModelResult(
            path=path,
            text=f"a {WORDS[i % 10]} next to a {WORDS[(i * 7) % 10]}",
            score=-3.0,
            nouns=(WORDS[i % 10], WORDS[(i * 7) % 10]),
        )
        for i, path in enumerate(paths)
    ]
    start = time.perf_counter()
    with Library.open(file) as library:
        library.add_model_results(results, key)  # one transaction
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=10_000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    from PySide6.QtWidgets import QApplication

    from gui.main_window import MainWindow
    from gui.settings import Settings

    app = QApplication.instance() or QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "photos"
        folder.mkdir()
        start = time.perf_counter()
        paths = make_photos(folder, args.photos)
        made = time.perf_counter() - start
        library_seconds = make_library(tmp / "library.sqlite3", paths)

        settings = Settings.from_file(str(tmp / "settings.ini"))
        settings.mark_started()  # not a first run: no samples opened
        window = MainWindow(
            settings,
            model_dir=str(tmp / "no-model"),
            data_dir=str(tmp / "app-data"),
            library_path=str(tmp / "library.sqlite3"),
        )
        window.resize(1320, 840)
        window.show()
        asked: list[str] = []
        window.image_model.thumbnail_needed.connect(asked.append)
        deadline = time.time() + 60
        while not (window.session.model_info or window.session.model_error):
            app.processEvents()
            if time.time() > deadline:
                break
        app.processEvents()

        profiler = cProfile.Profile() if args.profile else None
        start = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        window.open_paths([str(folder)])
        view = window.image_list
        view.viewport().repaint()  # the list painted, with the captions of the rows shown
        app.processEvents()
        opened = time.perf_counter() - start
        if profiler is not None:
            profiler.disable()
        items = window.image_model.items()
        with_caption = sum(bool(item.caption) for item in items)
        assert len(items) == args.photos and with_caption == args.photos, (len(items), with_caption)
        asked_when_shown = len(set(asked))
        rows_on_screen = view.viewport().height() // max(view.sizeHintForRow(0), 1) + 1

        bar = view.verticalScrollBar()
        page_times = []
        while bar.value() < bar.maximum():
            start = time.perf_counter()
            bar.setValue(min(bar.value() + bar.pageStep(), bar.maximum()))
            view.viewport().repaint()
            app.processEvents()
            page_times.append(time.perf_counter() - start)
        asked_after_scroll = len(set(asked))
        window.close()
        app.processEvents()

    print(f"CPU: {cpu_name()} ({os.cpu_count()} cores visible)")
    print(
        f"{args.photos} photos: JPEGs made in {made:.1f} s, "
        f"library filled in {library_seconds:.2f} s"
    )
    print()
    print("| measure | result |")
    print("|---|---|")
    print(f"| open the folder: list with every caption, painted | {opened * 1000:.0f} ms |")
    print(f"| rows on screen | {rows_on_screen} |")
    print(f"| thumbnails asked for once shown | {asked_when_shown} |")
    print(
        f"| scroll through, page by page ({len(page_times)} pages) | "
        f"median {statistics.median(page_times) * 1000:.1f} ms, "
        f"max {max(page_times) * 1000:.1f} ms per page |"
    )
    print(f"| thumbnails asked for after scrolling through | {asked_after_scroll} |")
    if profiler is not None:
        print()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
