"""Hostile photo paths (#21): link loops under a pattern; FIFOs and devices in a photo's place."""

from __future__ import annotations

import contextlib
import os
import pathlib
import sys
import threading

import pytest
from PIL import Image

from captioner.photos.images import ImageError, image_size, load_image
from captioner.photos.inputs import Photo, expand, unique, walk

# --- listing: a pattern's `**` goes where the walker goes -----------------------------------


@pytest.fixture
def loop(tmp_path):
    """A folder holding a photo and two links to itself: a tree with no end to follow links in."""
    folder = tmp_path / "loop"
    folder.mkdir()
    (folder / "x.jpg").write_bytes(b"")  # listing looks at names only
    (folder / "a").symlink_to(".")
    (folder / "b").symlink_to(".")
    return folder


class ListedThroughALink(Exception):
    """Not an OSError, so glob cannot swallow it: a listing went through a link to a folder."""


@pytest.fixture
def no_listing_through_links(loop, monkeypatch):
    """Fail at once when anything lists a folder through one of the links (glob did, forever)."""
    scandir = os.scandir

    def guarded_scandir(path="."):
        parts = pathlib.Path(os.path.abspath(path)).parts
        if "a" in parts or "b" in parts:
            raise ListedThroughALink(path)
        return scandir(path)

    monkeypatch.setattr(os, "scandir", guarded_scandir)


@pytest.mark.timeout(60)  # the guard fails it at once; this only stops a hang if it is bypassed
@pytest.mark.parametrize("recursive", [False, True])
def test_a_double_star_pattern_does_not_follow_links_to_folders(
    loop, no_listing_through_links, recursive
):
    photos = list(expand([f"{loop}/**/*.jpg"], recursive=recursive))
    assert photos == [Photo(str(loop / "x.jpg"))]
    assert photos == list(walk(str(loop), recursive=True))


@pytest.mark.timeout(60)
def test_a_double_star_matches_no_link_to_a_folder(loop, no_listing_through_links):
    """`**` alone names folders and files; the links are neither, as in a walk."""
    for pattern in [f"{loop}/**", f"{loop}/**/"]:
        assert list(unique(expand([pattern], recursive=False))) == [Photo(str(loop / "x.jpg"))]


def test_a_pattern_naming_a_link_still_goes_through_it(loop):
    """Without `**` a pattern is as the shell's: `*` matches the links, and each level is named."""
    paths = [photo.path for photo in expand([f"{loop}/*/*.jpg"], recursive=False)]
    assert paths == [str(loop / "a" / "x.jpg"), str(loop / "b" / "x.jpg")]


def test_a_double_star_skips_hidden_folders_and_spans_real_ones(tmp_path):
    for name in ["top.jpg", "sub/deeper/low.jpg", ".hidden/secret.jpg", "sub/.x.jpg"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "far.jpg").write_bytes(b"")
    (tmp_path / "sub" / "elsewhere").symlink_to(outside)
    paths = [photo.path for photo in expand([f"{tmp_path}/**/*.jpg"], recursive=False)]
    assert paths == [str(tmp_path / "sub/deeper/low.jpg"), str(tmp_path / "top.jpg")]
    assert paths == [photo.path for photo in walk(str(tmp_path), recursive=True)]


@pytest.fixture
def deep_tree(tmp_path):
    """A photo below more nested folders than Python has stack frames for (a few KB of path).

    Removed here, a level at a time: pytest's own clean-up would recurse as deep and fail.
    """
    depth = sys.getrecursionlimit() + 100
    levels = [os.path.join(tmp_path, *["d"] * level) for level in range(1, depth + 1)]
    descriptor = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    for _ in levels:
        os.mkdir("d", dir_fd=descriptor)
        inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=descriptor)
        os.close(descriptor)
        descriptor = inner
    os.close(os.open("x.jpg", os.O_WRONLY | os.O_CREAT, dir_fd=descriptor))
    os.close(descriptor)
    photo = os.path.join(levels[-1], "x.jpg")
    yield photo
    os.remove(photo)
    for level in reversed(levels):
        os.rmdir(level)


def test_a_tree_deeper_than_the_recursion_limit_is_walked(tmp_path, deep_tree):
    assert list(walk(str(tmp_path), recursive=True)) == [Photo(deep_tree)]
    assert list(expand([f"{tmp_path}/**/*.jpg"], recursive=False)) == [Photo(deep_tree)]


# --- opening: nothing but a regular file is read ----------------------------------------------


def call_with_a_deadline(function, *args) -> BaseException | object:
    """function(*args) in a thread; what it returned or raised. A call still blocked after
    half a minute fails the test instead of hanging it (the fix returns within milliseconds)."""
    outcome: list = []

    def run():
        try:
            outcome.append(function(*args))
        except BaseException as error:  # handed back to the test
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), f"{function.__name__} is still blocked on the file"
    return outcome[0]


def unblock_a_reader(fifo: pathlib.Path) -> None:
    """Let a reader blocked in opening `fifo` go, so a failing test leaves no stuck thread."""
    with contextlib.suppress(OSError):  # nobody is waiting to read it
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def make_fifo(path: pathlib.Path) -> None:
    os.mkfifo(path)


def link_to_dev_zero(path: pathlib.Path) -> None:
    path.symlink_to("/dev/zero")


def link_to_a_fifo(path: pathlib.Path) -> None:
    os.mkfifo(path.with_name("pipe"))
    path.symlink_to("pipe")


def make_folder(path: pathlib.Path) -> None:
    path.mkdir()


SWAPS = {
    make_fifo: "is not a regular file but a FIFO (named pipe)",
    link_to_a_fifo: "is not a regular file but a FIFO (named pipe)",
    link_to_dev_zero: "is not a regular file but a character device",
    make_folder: "is a directory, not an image file",
}


@pytest.mark.parametrize("reader", [load_image, image_size])
@pytest.mark.parametrize("swap", SWAPS, ids=lambda swap: swap.__name__)
def test_a_photo_swapped_after_the_check_is_refused_without_blocking(
    tmp_path, monkeypatch, reader, swap
):
    """Another process replaces the photo between the check of its path and its opening."""
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (8, 8)).save(photo)
    stat = os.stat
    swapped = []

    def stat_then_swap(path, *args, **kwargs):
        result = stat(path, *args, **kwargs)
        if os.fspath(path) == str(photo) and not swapped:  # the check saw a photo: swap it
            swapped.append(photo)
            photo.unlink()
            swap(photo)
        return result

    monkeypatch.setattr(os, "stat", stat_then_swap)
    try:
        error = call_with_a_deadline(reader, photo)
    finally:
        unblock_a_reader(tmp_path / "pipe" if swap is link_to_a_fifo else photo)
    assert swapped and isinstance(error, ImageError)
    assert error.reason == SWAPS[swap]
    assert str(error) == f"{photo}: {SWAPS[swap]}"


@pytest.mark.parametrize("reader", [load_image, image_size])
@pytest.mark.parametrize("make", SWAPS, ids=lambda make: make.__name__)
def test_a_fifo_device_or_folder_named_as_a_photo_is_refused_unopened(tmp_path, reader, make):
    photo = tmp_path / "photo.jpg"
    make(photo)
    try:
        error = call_with_a_deadline(reader, photo)
    finally:
        unblock_a_reader(tmp_path / "pipe" if make is link_to_a_fifo else photo)
    assert isinstance(error, ImageError) and error.reason == SWAPS[make]


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_a_device_given_directly_is_refused(device):
    error = call_with_a_deadline(load_image, device)
    assert isinstance(error, ImageError)
    assert str(error) == f"{device}: is not a regular file but a character device"
