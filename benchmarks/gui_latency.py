"""How fast the desktop app feels: window start-up and selection -> caption + heatmap latency.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/gui_latency.py [--cores 2] [--photos 10]

(a) window up: a fresh `python -m gui.app --quit-after-show` process, from its start to the
    window's first paint (the model loads afterwards, in the worker thread);
(b) in one window, per photo: select it, wait until its caption is on screen, then show the
    first word's heatmap; also re-selecting a captioned photo (cached) and changing the beam
    size (decode only, encoder features cached). Measured for each runtime and precision of
    the Settings, one window after the other: torch, onnx, onnx int8.
Every window and child process keeps captions in its own new caption library beside its INI
file, so none is served captions another stored, and the user's library is left alone.
Uses the default model when it is installed, else a stand-in of the default architecture
(EfficientNet-Lite0 at 224 px, DecoderConfig defaults, random weights, 60 words), and photos
from scikit-image saved as JPEGs (the shipped samples are these photos too). Prints which. Its
files go to a temporary folder, removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The Settings' runtime and precision choices measured, by the label the tables print.
CONFIGURATIONS = {
    "torch": ("torch", "float"),
    "onnx": ("onnx", "float"),
    "onnx-int8": ("onnx", "int8"),
}

SKIMAGE_PHOTOS = (
    "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
    "camera", "immunohistochemistry", "retina", "coins", "page", "horse", "brick",
)  # fmt: skip


def settings_file(path: Path) -> Path:
    """A new INI file whose caption library is a new file beside it."""
    from gui.settings import Settings

    settings = Settings.from_file(str(path))
    settings.library_path = str(path.with_suffix(".sqlite3"))
    settings.store.sync()
    return path


def window_up_seconds(runs: int, settings: Path, model_dir: str | None) -> list[float]:
    """Process start -> first paint of the main window, in fresh interpreters."""
    times = []
    for _ in range(runs):
        command = [sys.executable, "-m", "gui.app", "--quit-after-show"]
        command += ["--settings", str(settings)]
        if model_dir:
            command += ["--model", model_dir]
        start = time.time()
        output = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, check=True, timeout=300
        ).stdout
        painted = next(line for line in output.splitlines() if line.startswith("first-paint"))
        times.append(float(painted.split()[1]) - start)
    return times


def first_caption_seconds(runs: int, folder: Path, model_dir: str | None, photo: str):
    """Process start -> the first photo's caption on screen, torch import and model load
    included: what a user waits for after launching the app. Each launch has a new library:
    one that knew the photo would show its caption without running the model."""
    times = []
    for run in range(runs):
        settings = settings_file(folder / f"first-{run}.ini")
        command = [sys.executable, __file__, "--first-caption-child", str(settings), photo]
        if model_dir:
            command += ["--model", model_dir]
        start = time.time()
        output = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, check=True, timeout=600
        ).stdout
        shown = next(line for line in output.splitlines() if line.startswith("caption-shown"))
        times.append(float(shown.split()[1]) - start)
    return times


def first_caption_child(settings_file: str, photo: str, model_dir: str | None) -> None:
    """Runs in the child process: nothing has imported torch yet, as in a real launch."""
    from PySide6.QtWidgets import QApplication

    from gui.main_window import MainWindow
    from gui.settings import Settings

    app = QApplication([sys.argv[0]])
    window = MainWindow(Settings.from_file(settings_file), paths=[photo], model_dir=model_dir)

    def shown(_path: str) -> None:
        print(f"caption-shown {time.time():.6f}", flush=True)
        window.close()

    window.caption_shown.connect(shown)
    window.show()
    app.exec()


def stand_in_model(folder: Path) -> str:
    """The default architecture with random weights: same compute as the real default model."""
    import torch

    from captioner import Captioner
    from captioner.decoder import Decoder, DecoderConfig
    from captioner.encoder import Encoder, EncoderConfig
    from captioner.vocab import Vocabulary

    torch.manual_seed(0)
    encoder = Encoder(EncoderConfig(image_size=224))
    vocab = Vocabulary(f"word{i}" for i in range(56))  # + 4 special tokens = 60
    decoder = Decoder(DecoderConfig(len(vocab), encoder.encoder_dim))
    captioner = Captioner(encoder, decoder, vocab, name="stand-in (random weights)")
    return str(captioner.save(folder / "stand-in"))


def benchmark_photos(folder: Path, count: int) -> tuple[list[str], str]:
    import numpy as np
    from PIL import Image
    from skimage import data

    paths = []
    for name in SKIMAGE_PHOTOS[:count]:
        pixels = np.ascontiguousarray(getattr(data, name)())
        image = Image.fromarray(pixels).convert("RGB")
        path = folder / f"{name}.jpg"
        image.save(path, quality=92)
        paths.append(str(path))
    return paths, f"{len(paths)} scikit-image photos (JPEG)"


def huge_photo(folder: Path) -> str:
    """A 6000 x 4000 JPEG (24 megapixels), as a modern camera writes them."""
    from PIL import Image
    from skimage import data

    path = folder / "huge.jpg"
    Image.fromarray(data.astronaut()).resize((6000, 4000)).save(path, quality=90)
    return str(path)


def measure_in_window(
    paths: list[str], huge: str, model_dir: str | None, ini: Path, backend: str, precision: str
) -> dict:
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from gui.main_window import MainWindow
    from gui.settings import Settings

    app = QApplication.instance() or QApplication([sys.argv[0]])

    def wait_until(condition, timeout_s: float = 300.0) -> None:
        deadline = time.perf_counter() + timeout_s
        loop = QEventLoop()
        while not condition():
            if time.perf_counter() > deadline:
                raise TimeoutError("the window did not respond in time")
            QTimer.singleShot(2, loop.quit)
            loop.exec()

    settings = Settings.from_file(str(settings_file(ini)))
    settings.mark_started()  # no sample images on "first start": every photo starts uncached
    settings.backend, settings.precision = backend, precision
    start = time.perf_counter()
    window = MainWindow(settings, model_dir=model_dir)
    window.resize(1320, 840)
    window.show()
    wait_until(lambda: bool(window.session.model_info or window.session.model_error))
    if window.session.model_error:
        raise SystemExit(f"model failed to load: {window.session.model_error}")
    if precision == "int8" and "int8" not in window.session.model_info.device:
        raise SystemExit(
            f"int8 asked for, float loaded: {window.session.model_info.precision_note}"
        )
    times = {"model load, torch already imported": [time.perf_counter() - start]}
    shown: list[str] = []
    window.caption_shown.connect(shown.append)
    window.image_model.add_paths(paths)
    app.processEvents()

    def select_and_time(row: int, path: str) -> tuple[float, float]:
        shown.clear()
        began = time.perf_counter()
        window.select_row(row)
        wait_until(lambda: path in shown)
        window.repaint()  # include painting the caption
        captioned = time.perf_counter() - began
        window.words.select(0)
        window.viewer.repaint()
        return captioned, time.perf_counter() - began

    first, with_heatmap = [], []
    for row, path in enumerate(paths):
        captioned, total = select_and_time(row, path)
        first.append(captioned)
        with_heatmap.append(total)
    times["select -> caption shown"] = first
    times["select -> caption + heatmap shown"] = with_heatmap
    times["re-select a captioned photo (+ heatmap)"] = [
        select_and_time(row, path)[1] for row, path in enumerate(paths)
    ]
    redecode = []
    for row, path in enumerate(paths):
        window.select_row(row)
        wait_until(lambda p=path: window.session.result_for(p) is not None)
        beam_size = 3 if window.settings_panel.beam_size.value() != 3 else 5
        shown.clear()
        began = time.perf_counter()
        window.settings_panel.beam_size.setValue(beam_size)
        window.settings_panel.options_changed.emit(window.settings_panel.options())  # no delay
        wait_until(lambda p=path: p in shown and window.session.result_for(p) is not None)
        window.repaint()
        redecode.append(time.perf_counter() - began)
    times["beam size change -> new caption (decode only)"] = redecode
    window.image_model.add_paths([huge])
    times["huge photo: select -> caption + heatmap shown"] = [select_and_time(len(paths), huge)[1]]
    encodes = window.session.worker.encode_count
    window.close()
    times["encoder runs"] = encodes
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=10)
    parser.add_argument("--startup-runs", type=int, default=3)
    parser.add_argument(
        "--cores", type=int, default=0, help="pin to this many CPU cores (0: leave as is)"
    )
    parser.add_argument("--first-caption-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.first_caption_child:
        first_caption_child(*args.first_caption_child, args.model)
        return
    if args.cores:
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: args.cores]))

    import torch

    from captioner.registry import DEFAULT_MODEL_DIR

    if args.cores:
        torch.set_num_threads(args.cores)
    workdir = Path(tempfile.mkdtemp(prefix="gui-latency-"))
    if (DEFAULT_MODEL_DIR / "config.json").is_file():
        model_dir, model = None, f"default model ({DEFAULT_MODEL_DIR})"
    else:
        model_dir = stand_in_model(workdir)
        model = "stand-in: Lite0 224 + DecoderConfig defaults, random weights, 60 words"
    paths, photos = benchmark_photos(workdir, args.photos)
    cores = len(os.sched_getaffinity(0))
    print(f"model: {model}")
    print(f"photos: {photos}")
    print(f"CPU cores available: {cores}, torch threads: {torch.get_num_threads()}")
    print(f"platform: {os.environ['QT_QPA_PLATFORM']}, python {sys.version.split()[0]}\n")

    up = window_up_seconds(args.startup_runs, settings_file(workdir / "startup.ini"), model_dir)
    first = first_caption_seconds(args.startup_runs, workdir, model_dir, paths[0])
    results = {
        "window up (process start -> first paint)": up,
        "launch -> first caption (torch import + load)": first,
    }
    from captioner import Captioner

    huge = huge_photo(workdir)
    by_backend = {}
    for label, (backend, precision) in CONFIGURATIONS.items():
        # Graphs are exported (and quantized) once per model and cached: time the app, not that.
        Captioner.load(model_dir, device="cpu", backend=backend, precision=precision)
        ini = workdir / f"window-{label}.ini"
        by_backend[label] = measure_in_window(paths, huge, model_dir, ini, backend, precision)
        encodes = by_backend[label].pop("encoder runs")

    print(f"| {'measurement':<46} | {'n':>3} | {'median':>9} | {'p90':>9} | {'max':>9} |")
    print(f"|{'-' * 48}|{'-' * 5}|{'-' * 11}|{'-' * 11}|{'-' * 11}|")
    for name, values in results.items():
        print(
            f"| {name:<46} | {len(values):>3} | {ms(statistics.median(values))} "
            f"| {ms(p90(values))} | {ms(max(values))} |"
        )
    print("\nIn one window per runtime and precision, median (p90):\n")
    print(
        f"| {'measurement':<46} | {'n':>3} |" + "".join(f" {label:>16} |" for label in by_backend)
    )
    print(f"|{'-' * 48}|{'-' * 5}|" + f"{'-' * 18}|" * len(by_backend))
    for name, values in by_backend["torch"].items():
        cells = (by_backend[label][name] for label in by_backend)
        print(
            f"| {name:<46} | {len(values):>3} |"
            + "".join(f" {median_and_p90(v):>16} |" for v in cells)
        )
    print(f"\nencoder ran {encodes} times for {len(paths)} photos (re-decoding reuses features)")
    for name in (
        "select -> caption + heatmap shown",
        "beam size change -> new caption (decode only)",
    ):
        torch_ms = statistics.median(by_backend["torch"][name])
        ratios = (
            f"{label} / torch {statistics.median(by_backend[label][name]) / torch_ms:.2f}"
            for label in by_backend
            if label != "torch"
        )
        print(f"{name}, medians: {', '.join(ratios)}")
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    shutil.rmtree(workdir, ignore_errors=True)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:>6.0f} ms"


def median_and_p90(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms ({p90(values) * 1000:.0f})"


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


if __name__ == "__main__":
    main()
