"""One batch run: its photos captioned in batches, each batch's rows written and flushed at once."""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Mapping

from captioner.api import Captioner
from captioner.cli.batch.config import BatchRun
from captioner.cli.batch.extras import sidecar_clashes, write_extras
from captioner.cli.batch.output import open_output
from captioner.cli.batch.photos import (
    Counted,
    all_photos,
    count_photos,
    not_in_library,
    still_to_do,
)
from captioner.cli.batch.report import Reporter, shows_progress
from captioner.cli.batch.writers import WRITERS, CaptionWriter
from captioner.library import Library, LibraryError, ModelKey, ModelResult
from captioner.photos.images import source_name
from captioner.pipeline import caption_batches, photo_batches
from captioner.results import CaptionResult


def run(config: BatchRun, captioner: Captioner, *, load_seconds: float | None = None) -> int:
    """Caption every photo `config` names with `captioner`; returns the exit status.

    load_seconds: how long loading `captioner` took, for the summary's time; None: not known.

    Raises an OutputError, before any photo is read, when the output cannot be opened as asked.
    """
    writer_class = WRITERS[config.format]
    library = Library.open(config.library) if config.library is not None else None
    # The words the person taught in the app are nouns the captions can say at once; they are
    # part of the key, so photos captioned before a word was taught are captioned again.
    notice = captioner.use_taught(library.taught()) if library is not None else None
    model = (
        ModelKey.of(captioner.captions_identity, config.decoding, captioner.name)
        if library is not None
        else None
    )
    output = open_output(config)
    total = (
        count_photos(config, writer_class, output.done, library, model)
        if shows_progress(config.quiet)
        else None
    )
    reporter = Reporter(quiet=config.quiet, total=total, load_seconds=load_seconds)
    if notice is not None:
        reporter.error(notice)
    found = all_photos(config)
    clashes: dict[str, list[str]] = {}
    if config.sidecar:
        # Photos sharing a sidecar name (cat.png, cat.jpg) are found in the whole input before
        # any is captioned; the list is kept, as stdin can be read only once.
        found = list(found)
        clashes = sidecar_clashes((p.path for p in found if p.problem is None), config.sidecar_name)
    inputs = Counted(found)
    photos = still_to_do(inputs, config, writer_class, output.done, reporter.skip_done)
    photos = not_in_library(photos, library, model, reporter.skip_done)
    batches = photo_batches(captioner, photos, batch_size=config.batch_size, workers=config.workers)
    try:
        for results in caption_batches(captioner, batches, config.decoding):
            results = [_with_finite_scores(result) for result in results]
            for result in results:
                _handle(result, output.writer, config, reporter, clashes)
            output.writer.flush()
            if library is not None:
                # One transaction per batch, committed before the next batch is captioned.
                captioned = [r for r in results if r.error is None]
                library.add_model_results(map(ModelResult.from_caption_result, captioned), model)
            reporter.advance(len(results))
    except LibraryError as error:
        reporter.error(f"cannot keep the captions in the library: {error}")
        return 1
    except KeyboardInterrupt:
        reporter.error(f"interrupted; the finished rows are kept{_resume_hint(config)}")
        return 130
    except BrokenPipeError:
        # Whoever read stdout stopped (`captioner ... | head`): end quietly, as other tools do,
        # with what is left in the buffer sent nowhere instead of raising again at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        output.close()
        reporter.close()
        if library is not None:
            library.close()
    if inputs.count == 0:
        reporter.error("no photos found in the given paths")
        return 1
    reporter.summary()
    return 0 if reporter.all_written else 1


def _handle(
    result: CaptionResult,
    writer: CaptionWriter,
    config: BatchRun,
    reporter: Reporter,
    clashes: Mapping[str, list[str]],
) -> None:
    """Write the row, then the photo's extra outputs; every problem is reported, none is fatal."""
    writer.write(result)
    if result.error is not None:
        reporter.photo_failed(f"{source_name(result.source)}: {result.error}")
        return
    reporter.photo_captioned()
    write_extras(result, config, reporter, clashes)


def _with_finite_scores(result: CaptionResult) -> CaptionResult:
    """The result less alternatives scored NaN or infinite; an error if its caption is.

    Such scores come from a damaged model (NaN weights) and rank nothing; NaN is not JSON either.
    """
    if result.error is not None:
        return result
    if not math.isfinite(result.score):
        return CaptionResult.failed(
            result.source,
            f"the model scored its caption {result.score}, not a finite number; "
            "the model may be damaged",
        )
    beams = [beam for beam in result.beams if math.isfinite(beam.score)]
    return result if len(beams) == len(result.beams) else dataclasses.replace(result, beams=beams)


def _resume_hint(config: BatchRun) -> str:
    if config.output_file is None:
        # The library has every finished batch and skips them next time: no --resume needed.
        return "; run it again to caption the rest" if config.library is not None else ""
    return f" in {config.output_file}; run again with --resume to caption the rest"
