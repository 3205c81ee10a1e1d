"""The app's command line, model-error banner, metadata confirmation and window size."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version

import pytest

pytest.importorskip("PySide6")


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
