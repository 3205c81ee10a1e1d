"""The run's output file (or stdout): opened new, replaced, or resumed where it stopped."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import BinaryIO

from captioner.cli.batch.config import BatchRun
from captioner.cli.batch.writers import WRITERS, CaptionWriter


class OutputError(Exception):
    """The output cannot be opened as asked; nothing was written. The message says why."""


class OutputExistsError(OutputError):
    """The output already holds rows, and neither --resume nor --overwrite was given."""


class ResumeError(OutputError):
    """The output to resume is not a file of the run's format."""


class OutputNotWritableError(OutputError):
    """The output cannot be opened for writing (a missing folder, no permission, ...)."""


@dataclass
class Output:
    stream: BinaryIO
    writer: CaptionWriter
    done: set = field(default_factory=set)  # photo keys of the rows it already holds (--resume)
    owns_stream: bool = True  # False for stdout, which is not ours to close

    def close(self) -> None:
        self.writer.close()
        if self.owns_stream:
            self.stream.close()


def open_output(config: BatchRun) -> Output:
    """The output `config` asks for, ready for the writer's next row.

    Raises an OutputError when it exists without --resume or --overwrite, cannot be resumed
    as the run's format, or cannot be written.
    """
    writer_class = WRITERS[config.format]
    path = config.output_file
    if not config.writes_rows:
        # The library alone gets the results; the writer still runs, into nothing.
        null = open(os.devnull, "wb")  # noqa: SIM115 (closed by Output.close)
        return Output(null, writer_class(null, beams=config.beams))
    if path is None:
        sys.stdout.flush()
        stdout = sys.stdout.buffer
        return Output(stdout, writer_class(stdout, beams=config.beams), owns_stream=False)
    has_rows = os.path.isfile(path) and os.path.getsize(path) > 0
    try:
        if config.resume and has_rows:
            return _resumed(path, config, writer_class)
        if has_rows and not config.overwrite:
            raise OutputExistsError(
                f"{path} already exists: pass --resume to continue it, or --overwrite"
            )
        stream = open(path, "wb")  # noqa: SIM115 (closed by Output.close)
    except OSError as error:
        raise OutputNotWritableError(f"cannot write {path}: {error.strerror or error}") from None
    return Output(stream, writer_class(stream, beams=config.beams))


def _resumed(path: str, config: BatchRun, writer_class: type[CaptionWriter]) -> Output:
    stream = open(path, "r+b")  # noqa: SIM115 (closed by Output.close)
    try:
        scan = writer_class.scan(stream.read(), beams=config.beams)
    except (ValueError, UnicodeDecodeError) as error:
        stream.close()
        raise ResumeError(f"cannot resume {path} as {config.format}: {error}") from None
    stream.truncate(scan.end)  # drop a row cut short when the last run was stopped
    stream.seek(scan.end)
    existing_rows = scan.rows if scan.end else None
    writer = writer_class(stream, beams=config.beams, existing_rows=existing_rows)
    return Output(stream, writer, scan.keys)
