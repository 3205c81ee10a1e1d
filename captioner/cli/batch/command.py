"""The `captioner` command line: arguments checked into a BatchRun, errors into exit statuses.

Exit status: 0 every photo captioned or already done and every extra output written, 1 anything
failed or was kept, 2 usage error (printed with the usage, as argparse does), 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

from captioner.api import Captioner
from captioner.cli.args import (
    add_decode_arguments,
    add_engine_arguments,
    decode_options,
    plain_warnings,
    positive_int,
)
from captioner.cli.batch.config import SIDECAR_NAMES, BatchRun
from captioner.cli.batch.output import OutputError
from captioner.cli.batch.report import PROGRAM
from captioner.cli.batch.run import run
from captioner.cli.batch.writers import WRITERS
from captioner.device import resolve_device
from captioner.distributed import Distributed
from captioner.library import LibraryError, default_library_path
from captioner.onnx_backend import OnnxUnavailableError
from captioner.registry import CheckpointError

EXAMPLES = """\
examples:
  captioner -r ~/Pictures -o captions.jsonl          # every photo below ~/Pictures
  captioner -r ~/Pictures -o captions.jsonl --resume # after a crash: finish the rest
  captioner 'scans/*.tif' --sidecar                  # scans/a.tif -> scans/a.txt
  captioner phone/ --sidecar --sidecar-name full     # phone/a.heic -> phone/a.heic.txt
  find /data -name '*.jpg' | captioner - --format csv -o captions.csv
  torchrun --nproc-per-node 8 -m captioner.batch -r /data -o out.jsonl  # out.0-of-8.jsonl ...
  captioner -r ~/Pictures --library                  # into the app's library; rerun to finish

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
        metavar="DIR|NAME|hf:OWNER/NAME",
        help="a model directory, a model shipped with captioner: default (names everyday "
        "things), shapes (generated shapes scenes), or a Hugging Face Hub model, "
        "hf:OWNER/NAME[@REVISION] (downloaded once, then cached); an existing path wins over "
        "a name (default: default)",
    )
    add_engine_arguments(model)
    add_decode_arguments(model)

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
        "--sidecar-name",
        choices=SIDECAR_NAMES,
        help="with --sidecar: stem writes photo.txt (the default; photos that differ only in "
        "their extension, like IMG_1.JPG and IMG_1.HEIC, get none), full writes photo.jpg.txt",
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
        help="save a PNG per photo with each word's heatmap: where a copied noun was read, "
        "the attention before any other word",
    )
    output.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing sidecar files and descriptions already in photos "
        "(--write-metadata), and --output when not resuming",
    )
    output.add_argument(
        "--library",
        action="store_true",
        help="also keep the captions in the caption library the app shows "
        f"({default_library_path()}); photos it has from the same model and options are "
        "skipped, so a stopped run carries on where it was; without -o, rows go only there",
    )
    output.add_argument(
        "--library-path",
        metavar="FILE",
        help="as --library, with the caption library in FILE",
    )
    output.add_argument(
        "-q", "--quiet", action="store_true", help="print nothing on stderr but errors"
    )
    return parser


def _shard_argument(text: str) -> tuple[int, int]:
    index, slash, count = text.partition("/")
    if not (slash and index.isdigit() and count.isdigit()) or not 0 <= int(index) < int(count):
        raise argparse.ArgumentTypeError(f"expected I/N with 0 <= I < N, like 0/4; got {text!r}")
    return int(index), int(count)


def parse_args(argv: list[str] | None = None) -> BatchRun:
    """The run the command line asks for; usage errors exit with status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.paths and not args.files_from:
        parser.error("no photos given: pass files, folders or patterns, or --files-from FILE")
    if args.sidecar_name is not None and not args.sidecar:
        parser.error("--sidecar-name is for --sidecar: pass both")
    if args.files_from not in (None, "-") and not os.access(args.files_from, os.R_OK):
        parser.error(f"--files-from {args.files_from}: no such file, or it cannot be read")
    try:
        config = BatchRun(
            paths=tuple(args.paths),
            files_from=args.files_from,
            recursive=args.recursive,
            shard=args.shard,
            model=args.model,
            device=args.device,
            backend=args.backend,
            precision=args.precision,
            decoding=decode_options(args),
            batch_size=args.batch_size,
            workers=args.workers,
            format=args.format,
            output=None if args.output == "-" else args.output,
            resume=args.resume,
            beams=args.beams,
            sidecar=args.sidecar,
            sidecar_name=args.sidecar_name or "stem",
            write_metadata=args.write_metadata,
            save_attention=args.save_attention,
            overwrite=args.overwrite,
            quiet=args.quiet,
            library=args.library_path or (str(default_library_path()) if args.library else None),
        )
        return _this_process_share(config, Distributed.from_environment())
    except ValueError as error:
        parser.error(str(error))


def _this_process_share(config: BatchRun, world: Distributed) -> BatchRun:
    """Under torchrun, this process's share: every N-th photo, its own GPU, its own file.

    Raises ValueError for what cannot be combined with torchrun.
    """
    if not world.launched:
        return config
    if config.shard is not None:
        raise ValueError("--shard cannot be combined with torchrun (RANK and WORLD_SIZE are set)")
    if config.output is None and config.library is None:
        raise ValueError(
            "under torchrun every rank writes its own file: pass -o FILE (or --library)"
        )
    device = world.local_device(resolve_device(config.device))
    return dataclasses.replace(config, shard=(world.rank, world.world_size), device=str(device))


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    plain_warnings("captioner")
    start = time.perf_counter()
    try:
        captioner = Captioner.load(
            config.model, device=config.device, backend=config.backend, precision=config.precision
        )
    except (CheckpointError, ValueError, OnnxUnavailableError) as error:
        build_parser().error(str(error))
    try:
        return run(config, captioner, load_seconds=time.perf_counter() - start)
    except (OutputError, LibraryError) as error:
        build_parser().error(str(error))
