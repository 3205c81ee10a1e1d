"""captioner.inputs: one folder walker and one extension list for the batch command and the app."""

from __future__ import annotations

import subprocess
import sys

import pytest

from captioner.photos.inputs import expand, unique
from gui.files import collect_images

NAMES = ["b.jpg", "a.JPG", "C.png", "A.jpg", "Z.webp", "sub/y.gif", "sub/X.tif", "notes.txt"]
ORDER = ["A.jpg", "a.JPG", "b.jpg", "C.png", "sub/X.tif", "sub/y.gif", "Z.webp"]


@pytest.fixture
def folder(tmp_path):
    for name in [*NAMES, ".hidden.jpg", ".cache/inside.jpg"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")  # the walk looks at names only
    return tmp_path


def batch_listing(folder, recursive: bool) -> list[str]:
    return [photo.path for photo in unique(expand([str(folder)], recursive=recursive))]


def test_a_folder_lists_by_name_case_insensitively_with_subfolders_in_place(folder):
    assert batch_listing(folder, recursive=True) == [str(folder / name) for name in ORDER]
    assert batch_listing(folder, recursive=False) == [
        str(folder / name) for name in ORDER if "/" not in name
    ]


@pytest.mark.parametrize("recursive", [True, False])
def test_the_batch_command_and_the_app_list_a_folder_alike(folder, recursive):
    assert collect_images([str(folder)], recursive=recursive) == batch_listing(folder, recursive)


def test_a_pattern_lists_its_matches_in_the_walk_order(folder):
    pattern = [photo.path for photo in expand([f"{folder}/**/*.*"], recursive=False)]
    photos = [path for path in pattern if not path.endswith(".txt")]
    assert photos == batch_listing(folder, recursive=True)


def test_the_app_lists_files_without_importing_torch():
    code = "import sys, gui.files; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
