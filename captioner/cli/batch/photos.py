"""Which photos this process captions: its share of the inputs, less those already done."""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import BinaryIO

from captioner.cli.batch.config import BatchRun
from captioner.cli.batch.writers import CaptionWriter
from captioner.library import Library, ModelKey
from captioner.photos.inputs import Photo, expand, unique

LIBRARY_CHUNK = 256  # photos per question to the library: what is already captioned?


def all_photos(config: BatchRun) -> Iterator[Photo]:
    """Every photo the paths name, in the same order every time, each once."""
    return unique(expand(_arguments(config), recursive=config.recursive))


def _arguments(config: BatchRun) -> Iterator[str]:
    for path in config.paths:
        if path == "-":
            yield from _read_path_list(sys.stdin.buffer)
        else:
            yield path
    if config.files_from == "-":
        yield from _read_path_list(sys.stdin.buffer)
    elif config.files_from is not None:
        with open(config.files_from, "rb") as file:
            yield from _read_path_list(file)


def _read_path_list(file: BinaryIO) -> Iterator[str]:
    """One path per line (as `find` prints them); read as bytes so any file name survives."""
    for line in file:
        line = line.removesuffix(b"\n").removesuffix(b"\r")
        if line:
            yield os.fsdecode(line)


def still_to_do(
    photos: Iterable[Photo],
    config: BatchRun,
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
    if config.shard is not None:
        index, count = config.shard
        keyed = itertools.islice(keyed, index, None, count)  # shards 0..count-1 partition it
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


def not_in_library(
    photos: Iterable[Photo],
    library: Library | None,
    model: ModelKey | None,
    skip_done: Callable[[], object],
) -> Iterator[Photo]:
    """The photos, less those the library has from `model` (its identity and options), their
    files unchanged since: each of those calls `skip_done` instead. Asked a chunk at a time,
    so a folder of thousands costs a few queries, and captioning starts at once."""
    if library is None or model is None:
        yield from photos
        return
    iterator = iter(photos)
    while chunk := list(itertools.islice(iterator, LIBRARY_CHUNK)):
        done = library.captioned_by([photo.path for photo in chunk], model)
        for photo in chunk:
            if photo.path in done and photo.problem is None:
                skip_done()
            else:
                yield photo


def count_photos(
    config: BatchRun,
    writer_class: type[CaptionWriter],
    done: set,
    library: Library | None = None,
    model: ModelKey | None = None,
) -> int | None:
    """How many photos there are, for the progress bar's ETA: a walk of the file names only
    (and, with a library, a look at which it has).

    None when paths come from stdin, which can be read only once.
    """
    if config.reads_stdin:
        return None
    photos = still_to_do(all_photos(config), config, writer_class, done, skip_done=lambda: None)
    return sum(1 for _ in not_in_library(photos, library, model, skip_done=lambda: None))


class Counted:
    """Passes items through, counting them: was any photo found at all?"""

    def __init__(self, items: Iterable) -> None:
        self.items = items
        self.count = 0

    def __iter__(self) -> Iterator:
        for item in self.items:
            self.count += 1
            yield item
