"""Refuse, at start-up, a PySide6 that would abort the app after a minute of use.

PySide6-Essentials 6.12.0 takes one reference from `None` on every call of a Qt method that
returns nothing. On Python 3.12 and later `None` is immortal and nothing happens; on Python 3.11
its count falls by one per call until `None` is freed and the interpreter aborts with "Fatal
Python error: none_dealloc". pyproject.toml keeps that release off Python 3.11; this check
catches an environment that installed it anyway (or a later release with the same bug) by
watching the count across a few harmless calls, rather than by a list of version numbers.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import PySide6
from PySide6.QtGui import QImage, QPainter

KNOWN_GOOD_VERSION = "6.11.3"  # checked on Python 3.11 by tests/test_gui_long_use.py
PROBE_CALLS = 64


def takes_references_from_none(void_call: Callable[[], object] | None = None) -> bool:
    """True if `void_call` (by default QPainter.save and restore, two void Qt calls) leaves
    `None` with fewer references each time it runs."""
    if sys.version_info >= (3, 12):
        return False  # None is immortal: its count cannot fall
    image = QImage(4, 4, QImage.Format.Format_RGB32)
    painter = QPainter(image)
    if void_call is None:

        def void_call() -> None:
            painter.save()
            painter.restore()

    before = sys.getrefcount(None)
    for _ in range(PROBE_CALLS):
        void_call()
    lost = before - sys.getrefcount(None)
    painter.end()
    return lost >= PROBE_CALLS


def binding_problem(void_call: Callable[[], object] | None = None) -> str | None:
    """One line saying what is wrong with the installed PySide6 and how to fix it, or None."""
    if not takes_references_from_none(void_call):
        return None
    python = ".".join(map(str, sys.version_info[:2]))
    return (
        f"PySide6 {PySide6.__version__} loses a reference to None on every Qt call on Python "
        f"{python}, so the app would abort within minutes; install a good release with: "
        f'pip install "PySide6-Essentials=={KNOWN_GOOD_VERSION}"'
    )
