"""`captioner-gui [--model DIR|NAME|hf:OWNER/NAME] [PATH...]`: the QApplication, its arguments
and main()."""

from __future__ import annotations

import argparse
import os
import sys
import time
from importlib.metadata import PackageNotFoundError, version

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication

from captioner.registry import is_hub_model, names_shipped_model
from gui.binding_check import binding_problem
from gui.main_window import MainWindow
from gui.settings import APPLICATION, ORGANIZATION, Settings

SETTINGS_ENV = "CAPTIONER_GUI_SETTINGS"


def _version() -> str:
    try:
        return version("captioner")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="captioner-gui",
        description="Caption photos and see where the model looked for every word.",
    )
    parser.add_argument("paths", nargs="*", metavar="PATH", help="photos or folders to open")
    parser.add_argument(
        "--model",
        metavar="DIR|NAME|hf:OWNER/NAME",
        help="a trained model directory, a shipped model (default, shapes), or a Hugging Face "
        "Hub model (hf:OWNER/NAME[@REVISION]), for this session only; an existing path wins "
        "over a name, as for `captioner --model`",
    )
    parser.add_argument(
        "--library-path",
        metavar="FILE",
        help="keep captions in this caption library file instead of the one in Settings "
        "(by default the user's, shared with `captioner --library`)",
    )
    parser.add_argument(
        "--settings",
        metavar="INI",
        default=os.environ.get(SETTINGS_ENV),
        help=f"keep preferences in this INI file instead of the user's (env: {SETTINGS_ENV})",
    )
    parser.add_argument(
        "--quit-after-show",
        action="store_true",
        help="print the time of the window's first paint and quit (used to time startup)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    return _parser().parse_args(argv)


def model_argument(model: str) -> str:
    """--model as the window takes it, read by the command line's rule
    (captioner.registry.resolve_model): a Hub model as it is; a bare name ("shapes") that is no
    path here, as a shipped model's; any other path absolute, as the app keeps directories (its
    worker takes a name for a shipped model's even where a folder of that name exists)."""
    if is_hub_model(model) or names_shipped_model(model):
        return model
    return os.path.abspath(model)


class _FirstPaint(QObject):
    """Reports the wall-clock time the window is first painted, then closes it."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint:
            print(f"first-paint {time.time():.6f}", flush=True)
            watched.removeEventFilter(self)
            QTimer.singleShot(0, watched.close)  # closing stops the worker thread cleanly
        return False


def create_application(argv: list[str]) -> QApplication:
    """The QApplication, created once; Qt's own options (-platform, ...) are taken from argv."""
    app = QApplication.instance()
    if app is None:
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
            Qt.HighDpiScaleFactorRoundingPolicy.PassThrough
        )
        app = QApplication(argv)
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("Captioner")
    return app


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        # --help, --version and mistakes are answered before Qt looks for a display; Qt's
        # own options (-platform, -style, ...) are unknown here and left for QApplication.
        _parser().parse_known_args(sys.argv[1:])
        app = create_application(sys.argv)
        args = parse_args(app.arguments()[1:])  # what Qt left after removing its own options
    else:
        args = parse_args(argv)
        app = create_application([sys.argv[0]])
    problem = binding_problem()
    if problem is not None:
        print(f"captioner-gui: {problem}", file=sys.stderr)
        return 1
    settings = Settings.from_file(args.settings) if args.settings else Settings()
    model = model_argument(args.model) if args.model is not None else None
    window = MainWindow(settings, paths=args.paths, model_dir=model, library_path=args.library_path)
    probe = _FirstPaint(window)
    if args.quit_after_show:
        window.installEventFilter(probe)
    window.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
