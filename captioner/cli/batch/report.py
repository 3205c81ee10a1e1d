"""What a batch run tells the person at the terminal: error lines, a progress bar, a summary."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

PROGRAM = "captioner"


def shows_progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


class Reporter:
    """Errors as `captioner: PATH: reason` lines on stderr; a progress bar when it is a TTY.

    Every photo is counted once: captioned, failed or already done. An extra output not
    written (a kept sidecar, an attention grid) is counted apart: its photo has its caption.
    """

    def __init__(
        self, *, quiet: bool, total: int | None, load_seconds: float | None = None
    ) -> None:
        self.quiet = quiet
        # Loading the model can take longer than captioning a few photos; a summary timing the
        # captioning alone would tell a person a 5 s command took 0.5 s.
        self.load_seconds = load_seconds
        self.captioned = 0
        self.failed = 0
        self.already_done = 0
        self.failed_outputs = 0
        self.start = time.perf_counter()
        self.bar = tqdm(
            total=total,
            unit=" photos",
            file=sys.stderr,
            dynamic_ncols=True,
            smoothing=0.05,
            disable=not shows_progress(quiet),
        )

    def error(self, message: str) -> None:
        line = f"{PROGRAM}: {message}"
        if self.bar.disable:
            print(line, file=sys.stderr, flush=True)
        else:
            self.bar.write(line, file=sys.stderr)

    def photo_captioned(self) -> None:
        self.captioned += 1

    def photo_failed(self, message: str) -> None:
        self.failed += 1
        self.error(message)

    def output_failed(self, message: str) -> None:
        self.failed_outputs += 1
        self.error(message)

    def skip_done(self) -> None:
        self.already_done += 1

    @property
    def all_written(self) -> bool:
        return not self.failed and not self.failed_outputs

    def advance(self, photos: int) -> None:
        self.bar.update(photos)

    def close(self) -> None:
        self.bar.close()

    def summary(self) -> None:
        """`400 photos: 300 captioned, 52 failed, 48 already done; 3 extra outputs not written`,
        then the time: all of it, and the model's loading and the captioning apart."""
        if self.quiet:
            return
        seconds = time.perf_counter() - self.start
        rate = self.captioned / seconds if seconds > 0 else 0.0
        photos = self.captioned + self.failed + self.already_done
        line = f"{_counted(photos, 'photo')}: {self.captioned} captioned, {self.failed} failed"
        if self.already_done:
            line += f", {self.already_done} already done"
        if self.failed_outputs:
            line += f"; {_counted(self.failed_outputs, 'extra output')} not written"
        if self.load_seconds is None:
            timing = f"in {seconds:.1f} s ({rate:.1f} photos/s)"
        else:
            timing = (
                f"in {self.load_seconds + seconds:.1f} s (loading the model "
                f"{self.load_seconds:.1f} s, captioning {seconds:.1f} s, {rate:.1f} photos/s)"
            )
        print(f"{PROGRAM}: {line} {timing}", file=sys.stderr)


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
