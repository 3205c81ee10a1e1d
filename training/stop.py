"""Stopping a run cleanly: Ctrl-C or a scheduler's SIGTERM ends it between two batches."""

from __future__ import annotations

import signal
import sys


class StopRequest:
    """Ctrl-C (or SIGTERM from a scheduler) finishes the current batch, then the run saves.

    Stopping between batches keeps weights, optimizer, RNG and progress consistent, so the
    resumed run is exactly the uninterrupted one. A second Ctrl-C stops at once.
    """

    signals = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> StopRequest:
        self.requested = False
        self.previous = {s: signal.signal(s, self._handle) for s in self.signals}
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this batch (Ctrl-C again to stop now)", file=sys.stderr)

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)
