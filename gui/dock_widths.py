"""The docks' widths as the person left them, given back when a shrunk window grows again.

A window made narrower takes the width from its docks; made wider again, Qt gives all the new
room to the central widget, and the image list stayed narrow. This remembers each dock's width
from the person's own changes (dragging a separator, a restored state) and, when the window
grows, widens the docks that were squeezed back to it.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QDockWidget, QMainWindow


class DockWidths(QObject):
    def __init__(self, window: QMainWindow, docks: list[QDockWidget]) -> None:
        super().__init__(window)
        self._window = window
        self._docks = docks
        self._wanted: dict[QDockWidget, int] = {}
        self._window_width = -1  # the window's width when its docks were last placed
        self._restoring = False
        for dock in docks:
            dock.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        # A dock resized while the window keeps its width: the person's doing.
        if (
            event.type() == QEvent.Type.Resize
            and not self._restoring
            and self._window.width() == self._window_width
            and not watched.isFloating()
        ):
            self._wanted[watched] = event.size().width()
        return False

    def window_resized(self, grew: bool) -> None:
        """Call from the window's resizeEvent (after its layout has placed the docks)."""
        self._window_width = self._window.width()
        for dock in self._docks:  # the first layout's widths (the window's own, or restored)
            if dock not in self._wanted and not dock.isFloating():
                self._wanted[dock] = dock.width()
        if not grew:
            return
        squeezed = [
            dock
            for dock in self._docks
            if dock.isVisible() and not dock.isFloating()
            and dock.width() < self._wanted.get(dock, 0)
        ]  # fmt: skip
        if squeezed:
            self._restoring = True  # these resizes are not the person's
            widths = [self._wanted[dock] for dock in squeezed]
            self._window.resizeDocks(squeezed, widths, Qt.Orientation.Horizontal)
            self._restoring = False
