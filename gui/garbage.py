"""Python's cyclic garbage collector, run only in the UI thread while worker threads are alive.

Automatic collection runs in whichever thread happens to allocate. If that is the caption
worker (loading a model allocates millions of objects) and the garbage holds a Qt object that
lives in the UI thread (a closed widget or a pixmap kept alive by a reference cycle), Qt
destroys it from the wrong thread and the process crashes with a segmentation fault. So while
the window runs, automatic collection is off and a timer in the UI thread collects instead,
with the same per-generation thresholds Python would use.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

COLLECT_INTERVAL_MS = 500


class UiThreadGarbageCollector(QObject):
    """Create it in the UI thread before starting workers; call stop() after joining them."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.collect_due_generation)
        self._timer.start(COLLECT_INTERVAL_MS)

    def collect_due_generation(self) -> None:
        counts, thresholds = gc.get_count(), gc.get_threshold()
        for generation in (2, 1, 0):
            if counts[generation] > thresholds[generation]:
                gc.collect(generation)
                return

    def stop(self) -> None:
        self._timer.stop()
        gc.collect()
        if self._was_enabled:
            gc.enable()
