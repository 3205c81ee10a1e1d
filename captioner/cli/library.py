"""`captioner-library`: search the caption library, export its captions, import batch outputs.

    captioner-library search QUERY [--filter checked|unchecked|mine|all] [--json]
    captioner-library export --format txt|metadata|csv|jsonl|coco [-o FILE] [--include-model]
    captioner-library import out.0-of-4.jsonl out.1-of-4.jsonl ... [--model-name NAME]

Every subcommand takes --library-path FILE (default: the user's library, the app's). Exit
status: 0 done, 1 something was not written or a problem was found (each on a line of
stderr), 2 usage error or a library that cannot be used (one line saying why). torch is never
imported.
"""

from __future__ import annotations

import argparse
import json
import sys

from captioner.library import FILTERS, Library, LibraryError, ModelKey, default_library_path
from captioner.photos.images import source_name

PROGRAM = "captioner-library"
IMPORTED_OPTIONS = "unknown"  # the batch command's JSONL does not record its decoding options


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--library-path",
        metavar="FILE",
        help=f"the caption library to use (default: {default_library_path()})",
    )
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description="Search, export and import the caption library."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    search = commands.add_parser(
        "search",
        parents=[common],
        help="print the photos whose captions match",
        description="Photos whose caption (yours or the model's) or seen nouns match every "
        "word of QUERY: whole words and prefixes, any case, accents ignored.",
    )
    search.add_argument("query", metavar="QUERY", help='words to find ("" for every photo)')
    search.add_argument("--filter", choices=FILTERS, default="all")
    search.add_argument("--json", action="store_true", help="one JSON object per line")

    export = commands.add_parser(
        "export",
        parents=[common],
        help="write captions to sidecars, photos or a file",
        description="Write your captions (with --include-model, the model's where you wrote "
        "none) beside the photos (txt: photo.txt), into them (metadata), or to a file.",
    )
    export.add_argument("--format", choices=("txt", "metadata", "csv", "jsonl", "coco"))
    export.add_argument("-o", "--output", metavar="FILE", help="for csv, jsonl and coco")
    export.add_argument(
        "--include-model",
        action="store_true",
        help="the model's caption for photos you have no caption for",
    )
    export.add_argument(
        "--overwrite",
        action="store_true",
        help="replace sidecars and descriptions the photos already have",
    )
    export.add_argument("--query", default="", help="only photos matching this search")
    export.add_argument("--filter", choices=FILTERS, default="all")

    imports = commands.add_parser(
        "import",
        parents=[common],
        help="add the batch command's JSONL outputs",
        description="Add the captions of `captioner ... -o out.jsonl` runs (torchrun shards "
        "out.K-of-N.jsonl too) to the library as the model's captions.",
    )
    imports.add_argument("files", nargs="+", metavar="FILE")
    imports.add_argument(
        "--model-name",
        default="imported",
        help="the model that wrote them, as the library shows it (default: imported)",
    )
    imports.add_argument(
        "--base",
        metavar="DIR",
        help="the folder the run was started in, for relative paths (default: this one)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "export" and args.format is None:
        build_parser().error("export needs --format txt, metadata, csv, jsonl or coco")
    if args.command == "export" and args.format in ("csv", "jsonl", "coco") and not args.output:
        build_parser().error(f"export --format {args.format} needs -o FILE")
    try:
        # Searching and exporting read an existing library; only an import may start one.
        with Library.open(args.library_path, create=args.command == "import") as library:
            if args.command == "search":
                return _search(library, args)
            if args.command == "export":
                return _export(library, args)
            return _import(library, args)
    except LibraryError as error:
        print(f"{PROGRAM}: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"{PROGRAM}: {error.filename}: {error.strerror or error}", file=sys.stderr)
        return 2


def _search(library: Library, args: argparse.Namespace) -> int:
    for entry in library.search(args.query, filter=args.filter):
        if args.json:
            row = {
                "path": source_name(entry.path),
                "caption": entry.caption,
                "by": entry.state,
                "model_caption": entry.model.text if entry.model is not None else None,
                "nouns": list(entry.model.nouns) if entry.model is not None else [],
            }
            print(json.dumps(row, ensure_ascii=False))
        else:
            print(f"{source_name(entry.path)}\t{entry.caption or ''}")
    return 0


def _export(library: Library, args: argparse.Namespace) -> int:
    from captioner.library.exchange import export_captions  # loads Exiv2 and Pillow

    report = export_captions(
        library,
        args.format,
        args.output,
        include_model=args.include_model,
        overwrite=args.overwrite,
        query=args.query,
        filter=args.filter,
    )
    for line in report.kept:
        print(f"{PROGRAM}: {line}", file=sys.stderr)
    message = f"{PROGRAM}: {report.written} captions written"
    if report.images_root is not None:
        message += f"; train on them with --data {args.output} --images {report.images_root}"
    print(message, file=sys.stderr)
    return 1 if report.kept else 0


def _import(library: Library, args: argparse.Namespace) -> int:
    from captioner.library.exchange import import_batch_outputs

    model = ModelKey(f"import:{args.model_name}", IMPORTED_OPTIONS, args.model_name)
    report = import_batch_outputs(library, args.files, model, base=args.base)
    for line in report.problems:
        print(f"{PROGRAM}: {line}", file=sys.stderr)
    print(
        f"{PROGRAM}: {report.added} captions imported; "
        f"{report.failed_photos} photos the run could not caption",
        file=sys.stderr,
    )
    return 1 if report.problems else 0
