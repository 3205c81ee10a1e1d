"""`captioner PATH...`: caption a folder of photos overnight, losing nothing on the way.

Inputs stream in (captioner.inputs), are read by background workers and captioned in batches
(captioner.pipeline), and each batch's rows are written and flushed at once (captioner.writers),
so a killed run keeps what it finished and `--resume` carries on. A photo that cannot be read
becomes an error row and a line on stderr; the run goes on.

Every photo found is counted once in the summary: captioned, failed (no caption in the output)
or already done (in the output before a --resume). An extra output that was not written (a
sidecar or description kept, an attention grid that could not be saved) is counted apart, as
its photo still has its caption. Exit status: 0 every photo captioned or already done and every
extra output written, 1 anything failed or was kept, 2 usage error.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import math
import os
import sys
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from pathlib import Path

from tqdm import tqdm

from captioner.api import Captioner, CaptionResult
from captioner.atomic import save_atomically
from captioner.checkpoint import CheckpointError
from captioner.device import device_argument, resolve_device
from captioner.distributed import Distributed
from captioner.heatmap import attention_grid
from captioner.images import ImageError, load_image, source_name
from captioner.inputs import Photo, expand, read_path_list, shard, unique
from captioner.metadata import sidecar_path, write_caption_metadata, write_sidecar
from captioner.options import DecodeOptions, number_argument, positive_int
from captioner.pipeline import caption_batches, photo_batches
from captioner.writers import WRITERS, CaptionWriter

PROGRAM = "captioner"
ATTENTION_CELL_SIZE = 224
EXAMPLES = """\
examples:
  captioner -r ~/Pictures -o captions.jsonl          # every photo below ~/Pictures
  captioner -r ~/Pictures -o captions.jsonl --resume # after a crash: finish the rest
  captioner 'scans/*.tif' --sidecar                  # scans/a.tif -> scans/a.txt
  find /data -name '*.jpg' | captioner - --format csv -o captions.csv
  torchrun --nproc-per-node 8 -m captioner.cli -r /data -o out.jsonl  # out.0-of-8.jsonl ...

exit status: 0 every photo captioned (or already done) and every extra output written;
1 some photo failed or an extra output was not written (a kept sidecar or description too);
2 usage error.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Caption photos with a Show, Attend and Tell model.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="photo files, folders (the photos in them) or quoted patterns like 'a/*.jpg'; "
        "- reads a list of paths from stdin",
    )
    inputs = parser.add_argument_group("inputs")
    inputs.add_argument(
        "-r", "--recursive", action="store_true", help="include photos in subfolders"
    )
    inputs.add_argument(
        "--files-from", metavar="FILE", help="read paths from FILE, one per line (- for stdin)"
    )
    inputs.add_argument(
        "--shard",
        metavar="I/N",
        type=_shard_argument,
        help="caption only every N-th photo starting at I (0 <= I < N), for job arrays",
    )

    model = parser.add_argument_group("model and decoding")
    model.add_argument(
        "--model",
        metavar="DIR|NAME",
        help="a model directory, or a model shipped with captioner: default (names everyday "
        "things), shapes (generated shapes scenes); an existing path wins over a name "
        "(default: default)",
    )
    add_decoding_arguments(model)
    model.add_argument(
        "--workers",
        type=number_argument(int, 0),
        default=min(4, os.cpu_count() or 1),
        help="processes that decode and resize photos (0: none; default: %(default)s)",
    )

    output = parser.add_argument_group("output")
    output.add_argument("--format", choices=sorted(WRITERS), default="jsonl")
    output.add_argument("-o", "--output", metavar="FILE", help="default: stdout")
    output.add_argument(
        "--resume",
        action="store_true",
        help="keep the rows already in --output, skip their photos and append the rest",
    )
    output.add_argument(
        "--beams",
        type=positive_int,
        default=1,
        metavar="N",
        help="also write the N best captions with their scores (jsonl, csv)",
    )
    output.add_argument(
        "--sidecar", action="store_true", help="write photo.txt beside each photo.jpg"
    )
    output.add_argument(
        "--write-metadata",
        action="store_true",
        help="store the caption in the photo (XMP dc:description, EXIF ImageDescription); "
        "the pixel data is not re-encoded",
    )
    output.add_argument(
        "--save-attention",
        metavar="DIR",
        help="save a PNG per photo showing where the model looked for each word",
    )
    output.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing sidecar files and descriptions already in photos "
        "(--write-metadata), and --output when not resuming",
    )
    output.add_argument(
        "-q", "--quiet", action="store_true", help="print nothing on stderr but errors"
    )
    return parser


def add_decoding_arguments(group) -> None:
    """The options every captioning command shares (this one and `captioner-evaluate`)."""
    group.add_argument(
        "--device",
        type=device_argument,
        default="auto",
        help="auto (CUDA, MPS, CPU), cpu, cuda:1, mps",
    )
    DecodeOptions.add_arguments(group)
    group.add_argument("--batch-size", type=positive_int, default=16, help="default: %(default)s")


def _shard_argument(text: str) -> tuple[int, int]:
    index, slash, count = text.partition("/")
    if not (slash and index.isdigit() and count.isdigit()) or not 0 <= int(index) < int(count):
        raise argparse.ArgumentTypeError(f"expected I/N with 0 <= I < N, like 0/4; got {text!r}")
    return int(index), int(count)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the command line; usage errors exit with status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.paths and not args.files_from:
        parser.error("no photos given: pass files, folders or patterns, or --files-from FILE")
    if args.files_from not in (None, "-") and not os.access(args.files_from, os.R_OK):
        parser.error(f"--files-from {args.files_from}: no such file, or it cannot be read")
    if args.beams > args.beam_size:
        parser.error(f"--beams {args.beams} needs --beam-size {args.beams} or more")
    if args.beams > 1 and args.format not in ("jsonl", "csv"):
        parser.error(f"--beams is for jsonl and csv; the {args.format} format has one caption")
    if args.output == "-":
        args.output = None
    if args.resume and args.output is None:
        parser.error("--resume needs -o FILE: it reads what that file already holds")

    try:
        world = Distributed.from_environment()
    except ValueError as error:
        parser.error(str(error))
    if world.launched:  # started by torchrun: each rank takes its share of the photos
        if args.shard is not None:
            parser.error("--shard cannot be combined with torchrun (RANK and WORLD_SIZE are set)")
        if args.output is None:
            parser.error("under torchrun every rank writes its own file: pass -o FILE")
        args.shard = (world.rank, world.world_size)
        args.device = world.local_device(resolve_device(args.device))
    if args.shard is not None and args.output is not None:
        args.output = shard_output_path(args.output, *args.shard)
    return args


def shard_output_path(path: str, index: int, count: int) -> str:
    """captions.jsonl -> captions.3-of-8.jsonl: one file per shard, none written twice."""
    if count == 1:
        return path
    output = Path(path)
    return str(output.with_name(f"{output.stem}.{index}-of-{count}{output.suffix}"))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        captioner = Captioner.load(args.model, device=args.device)
    except (CheckpointError, ValueError) as error:
        build_parser().error(str(error))
    return run(args, captioner)


def run(args: argparse.Namespace, captioner: Captioner) -> int:
    """Caption every photo `args` names with `captioner`; returns the exit status."""
    writer_class = WRITERS[args.format]
    stream, writer, done = _open_output(args, writer_class)
    reporter = _Reporter(args, total=_count_photos(args, writer_class, done))
    inputs = _Counted(_all_photos(args))
    photos = _still_to_do(inputs, args, writer_class, done, reporter.skip_done)
    batches = photo_batches(captioner, photos, batch_size=args.batch_size, workers=args.workers)
    try:
        for results in caption_batches(captioner, batches, DecodeOptions.from_args(args)):
            for result in results:
                _handle(result, writer, args, reporter)
            writer.flush()
            reporter.advance(len(results))
    except KeyboardInterrupt:
        reporter.error(f"interrupted; the finished rows are kept{_resume_hint(args)}")
        return 130
    except BrokenPipeError:
        # Whoever read stdout stopped (`captioner ... | head`): end quietly, as other tools do,
        # with what is left in the buffer sent nowhere instead of raising again at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        writer.close()
        if args.output is not None:
            stream.close()
        reporter.close()
    if inputs.count == 0:
        reporter.error("no photos found in the given paths")
        return 1
    reporter.summary()
    return 0 if reporter.all_written else 1


def _open_output(
    args: argparse.Namespace, writer_class: type[CaptionWriter]
) -> tuple[io.BufferedIOBase, CaptionWriter, set]:
    """The output stream, its writer, and the keys of photos it already holds (--resume)."""
    if args.output is None:
        sys.stdout.flush()
        return sys.stdout.buffer, writer_class(sys.stdout.buffer, beams=args.beams), set()
    path = args.output
    has_rows = os.path.isfile(path) and os.path.getsize(path) > 0
    try:
        if args.resume and has_rows:
            stream = open(path, "r+b")  # noqa: SIM115 (closed by run)
            try:
                scan = writer_class.scan(stream.read(), beams=args.beams)
            except (ValueError, UnicodeDecodeError) as error:
                stream.close()
                build_parser().error(f"cannot resume {path} as {args.format}: {error}")
            stream.truncate(scan.end)  # drop a row cut short when the last run was stopped
            stream.seek(scan.end)
            existing_rows = scan.rows if scan.end else None
            return (
                stream,
                writer_class(stream, beams=args.beams, existing_rows=existing_rows),
                scan.keys,
            )
        if has_rows and not args.overwrite and not args.resume:
            build_parser().error(
                f"{path} already exists: pass --resume to continue it, or --overwrite"
            )
        stream = open(path, "wb")  # noqa: SIM115
    except OSError as error:
        build_parser().error(f"cannot write {path}: {error.strerror or error}")
    return stream, writer_class(stream, beams=args.beams), set()


def _arguments(args: argparse.Namespace) -> Iterator[str]:
    for path in args.paths:
        if path == "-":
            yield from read_path_list(sys.stdin.buffer)
        else:
            yield path
    if args.files_from == "-":
        yield from read_path_list(sys.stdin.buffer)
    elif args.files_from is not None:
        with open(args.files_from, "rb") as file:
            yield from read_path_list(file)


def _all_photos(args: argparse.Namespace) -> Iterator[Photo]:
    return unique(expand(_arguments(args), recursive=args.recursive))


def _still_to_do(
    photos: Iterable[Photo],
    args: argparse.Namespace,
    writer_class: type[CaptionWriter],
    done: set,
    skip_done: Callable[[], object],
) -> Iterator[Photo]:
    """This run's share of the photos (--shard, torchrun), less those already in the output.

    A photo already in the output calls `skip_done` instead of coming through. A photo whose
    row would have the key of an earlier photo's (COCO: two names ending in the same number)
    comes through with that as its problem, so it is reported and counted as failed. The
    earlier photo is the one kept, in every shard and every resumed run: repeats are found in
    the whole input, before sharding, and the input is expanded in the same order every time.
    """
    keyed = _with_first_of_key(photos, writer_class)
    if args.shard is not None:
        keyed = shard(keyed, *args.shard)
    for photo, key, first in keyed:
        if first != photo.path:
            yield photo._replace(problem=writer_class.repeated_key(photo.path, first))
        elif key in done:
            skip_done()
        else:
            yield photo


def _with_first_of_key(
    photos: Iterable[Photo], writer_class: type[CaptionWriter]
) -> Iterator[tuple[Photo, Hashable, str]]:
    """Each photo with its photo_key and the path of the first photo that had that key."""
    first_with_key: dict[Hashable, str] = {}
    for photo in photos:
        key = writer_class.photo_key(photo.path)
        yield photo, key, first_with_key.setdefault(key, photo.path)


class _Counted:
    """Passes items through, counting them: was any photo found at all?"""

    def __init__(self, items: Iterable) -> None:
        self.items = items
        self.count = 0

    def __iter__(self) -> Iterator:
        for item in self.items:
            self.count += 1
            yield item


def _count_photos(args: argparse.Namespace, writer_class, done: set) -> int | None:
    """How many photos there are, for the progress bar's ETA: a walk of the file names only.

    Skipped when no progress bar is shown, and when paths come from stdin (read only once).
    """
    if not _shows_progress(args) or "-" in (*args.paths, args.files_from):
        return None
    photos = _still_to_do(_all_photos(args), args, writer_class, done, skip_done=lambda: None)
    return sum(1 for _ in photos)


def _handle(
    result: CaptionResult, writer: CaptionWriter, args: argparse.Namespace, reporter: _Reporter
) -> None:
    """Write the row, then the per-photo outputs; every problem is reported, none is fatal."""
    name = source_name(result.source)
    result = _with_finite_scores(result)
    writer.write(result)
    if result.error is not None:
        reporter.photo_failed(f"{name}: {result.error}")
        return
    reporter.captioned += 1
    if args.sidecar:
        try:
            write_sidecar(result.source, result.text, overwrite=args.overwrite)
        except FileExistsError:
            sidecar = source_name(sidecar_path(result.source))
            reporter.output_failed(
                f"{name}: {sidecar} already exists; kept it (--overwrite replaces)"
            )
        except OSError as error:
            reporter.output_failed(f"{name}: cannot write its caption file ({_reason(error)})")
    if args.write_metadata:
        try:
            write_caption_metadata(result.source, result.text, overwrite=args.overwrite)
        except FileExistsError:
            reporter.output_failed(
                f"{name}: already has a description; kept it (--overwrite replaces)"
            )
        except (ValueError, OSError) as error:  # both name the file and the reason
            reporter.output_failed(f"{name}: cannot store the caption in it ({_reason(error)})")
    if args.save_attention:
        try:
            _save_attention(result, args.save_attention)
        except (ImageError, OSError, ValueError) as error:
            reporter.output_failed(f"{name}: cannot save its attention grid ({_reason(error)})")


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


def attention_grid_path(directory: str | os.PathLike, photo_path: str) -> Path:
    """Where a photo's attention grid goes: its path below `directory`, plus .png.

    Relative to the current folder when the photo is inside it (photos/a.jpg ->
    DIR/photos/a.jpg.png), else its absolute path (/data/a.jpg -> DIR/data/a.jpg.png), so
    photos with the same name in different folders never overwrite each other's grids.
    """
    absolute = os.path.abspath(photo_path)
    relative = os.path.relpath(absolute)
    if relative == os.pardir or relative.startswith(os.pardir + os.sep):
        relative = os.path.splitdrive(absolute)[1].lstrip(os.sep)
    return Path(directory, relative + ".png")


def _save_attention(result: CaptionResult, directory: str) -> None:
    photo = load_image(result.source, min_size=ATTENTION_CELL_SIZE)
    grid = attention_grid(photo, result.tokens, result.alphas, cell_size=ATTENTION_CELL_SIZE)
    target = attention_grid_path(directory, result.source)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_atomically(target, lambda file: grid.save(file, format="PNG"))


def _reason(error: Exception) -> str:
    if isinstance(error, ImageError):
        return error.reason
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)


def _resume_hint(args: argparse.Namespace) -> str:
    if args.output is None:
        return ""
    return f" in {args.output}; run again with --resume to caption the rest"


def _shows_progress(args: argparse.Namespace) -> bool:
    return not args.quiet and sys.stderr.isatty()


class _Reporter:
    """Errors as `captioner: PATH: reason` lines on stderr; a progress bar when it is a TTY."""

    def __init__(self, args: argparse.Namespace, total: int | None) -> None:
        self.quiet = args.quiet
        self.captioned = 0  # photos: each is captioned, failed or already done, once
        self.failed = 0
        self.already_done = 0
        self.failed_outputs = 0  # sidecars, descriptions, attention grids not written
        self.start = time.perf_counter()
        self.bar = tqdm(
            total=total,
            unit=" photos",
            file=sys.stderr,
            dynamic_ncols=True,
            smoothing=0.05,
            disable=not _shows_progress(args),
        )

    def error(self, message: str) -> None:
        line = f"{PROGRAM}: {message}"
        if self.bar.disable:
            print(line, file=sys.stderr, flush=True)
        else:
            self.bar.write(line, file=sys.stderr)

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
        """`400 photos: 300 captioned, 52 failed, 48 already done; 3 extra outputs not written`."""
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
        print(
            f"{PROGRAM}: {line} in {seconds:.1f} s ({rate:.1f} photos/s)",
            file=sys.stderr,
        )


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


if __name__ == "__main__":  # `torchrun -m captioner.cli ...` and `python -m captioner.cli`
    sys.exit(main())
