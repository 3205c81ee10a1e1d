"""The caption library from the command line: `captioner PATH... --library` and
`captioner-library search / export / import`."""

from __future__ import annotations

import contextlib
import io
import json
import pathlib
import subprocess
import sys

import pytest

from captioner.cli.batch.command import main as batch_main
from captioner.cli.library import main as library_main
from captioner.library import Library
from captioner.photos.metadata import read_caption_metadata, write_caption_metadata
from training.readers import read_samples

CONSOLE_SCRIPT = pathlib.Path(sys.executable).parent / "captioner-library"


@pytest.fixture
def album(tmp_path, photos) -> pathlib.Path:
    folder = tmp_path / "album"
    folder.mkdir()
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        photos[name].resize((160, 120)).save(folder / f"{name}.jpg", quality=90)
    return folder


def caption(model_dir, *arguments) -> tuple[int, str]:
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        status = batch_main([*map(str, arguments), "--model", str(model_dir), "--workers", "0"])
    return status, stderr.getvalue()


def library_command(*arguments) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = library_main([*map(str, arguments)])
    return status, stdout.getvalue(), stderr.getvalue()


# --- the batch command --------------------------------------------------------------------------


def test_batch_results_go_to_the_library_and_a_second_run_skips_them(
    album, tmp_path, tiny_model_dir
):
    library_path = tmp_path / "library.sqlite3"
    status, stderr = caption(tiny_model_dir, album, "--library-path", library_path)
    assert status == 0 and "4 captioned" in stderr
    paths = sorted(str(path) for path in album.glob("*.jpg"))
    with Library.open(library_path) as library:
        entries = library.lookup(paths)
        assert all(entry.model is not None and entry.person is None for entry in entries.values())
        library.set_caption(paths[0], "my own words")
    status, stderr = caption(tiny_model_dir, album, "--library-path", library_path)
    assert status == 0 and "0 captioned" in stderr and "4 already done" in stderr
    status, stderr = caption(
        tiny_model_dir, album, "--library-path", library_path, "--beam-size", "2"
    )
    assert "4 captioned" in stderr  # other decoding options: other captions
    with Library.open(library_path) as library:
        assert library.lookup([paths[0]])[paths[0]].caption == "my own words"


def test_a_stopped_library_run_carries_on_without_resume(album, tmp_path, tiny_model_dir):
    library_path = tmp_path / "library.sqlite3"
    first = sorted(album.glob("*.jpg"))[:2]
    caption(tiny_model_dir, *first, "--library-path", library_path)  # as if killed after 2
    output = tmp_path / "rows.jsonl"
    status, stderr = caption(tiny_model_dir, album, "--library-path", library_path, "-o", output)
    assert status == 0 and "2 captioned" in stderr and "2 already done" in stderr
    assert len(output.read_text().splitlines()) == 2  # -o gets this run's rows as well


def test_library_alone_writes_no_rows_to_stdout(album, tmp_path, tiny_model_dir, capsys):
    library_path = tmp_path / "library.sqlite3"
    assert caption(tiny_model_dir, album, "--library-path", library_path, "-q")[0] == 0
    assert capsys.readouterr().out == ""


def test_library_flag_uses_the_users_data_folder(album, tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert caption(tiny_model_dir, album, "--library", "-q")[0] == 0
    with Library.open(tmp_path / "data" / "captioner" / "library.sqlite3") as library:
        assert library.photo_count() == 4


def test_a_foreign_file_as_library_is_a_usage_error_and_kept(
    album, tmp_path, tiny_model_dir, capsys
):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a library")
    with pytest.raises(SystemExit, match="2"):
        batch_main([str(album), "--library-path", str(notes), "--model", str(tiny_model_dir)])
    assert "not a caption library" in capsys.readouterr().err
    assert notes.read_text() == "not a library"


@pytest.fixture
def filled(album, tmp_path, tiny_model_dir) -> tuple[pathlib.Path, list[str]]:
    """A library with the album's model captions, one of them corrected by the person."""
    library_path = tmp_path / "library.sqlite3"
    caption(tiny_model_dir, album, "--library-path", library_path)
    paths = sorted(str(path) for path in album.glob("*.jpg"))
    with Library.open(library_path) as library:
        library.set_caption(paths[0], "Neil's zebra café")
    return library_path, paths


def test_search_prints_matching_paths_and_json(filled):
    library_path, paths = filled
    status, out, _ = library_command("search", "CAFE", "--library-path", library_path)
    assert status == 0 and out == f"{paths[0]}\tNeil's zebra café\n"
    status, out, _ = library_command("search", "", "--library-path", library_path, "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [row["path"] for row in rows] == paths
    assert rows[0]["by"] == "mine" and {row["by"] for row in rows[1:]} == {"model"}
    _, out, _ = library_command("search", '"(zeb', "--library-path", library_path)
    assert out.startswith(paths[0])  # unparseable: searched as words


def test_search_of_a_missing_or_foreign_library_is_one_line(tmp_path):
    status, _, err = library_command("search", "x", "--library-path", tmp_path / "none")
    assert status == 2 and err.count("\n") == 1 and "no caption library there" in err
    assert not (tmp_path / "none").exists()
    (tmp_path / "foreign").write_bytes(b"\x00" * 100)
    status, _, err = library_command("search", "x", "--library-path", tmp_path / "foreign")
    assert status == 2 and err.count("\n") == 1 and "not a caption library" in err


def test_export_files_in_every_format(filled, tmp_path):
    library_path, paths = filled
    out = tmp_path / "out"
    out.mkdir()
    for fmt in ("csv", "jsonl", "coco"):
        status, _, err = library_command(
            "export", "--format", fmt, "-o", out / f"c.{fmt}", "--library-path", library_path
        )
        assert status == 0, err
    assert (out / "c.jsonl").read_text().count("\n") == 1  # the person's captions only
    assert "Neil's zebra café" in (out / "c.csv").read_text(encoding="utf-8")
    library_command(
        "export", "--format", "coco", "-o", out / "all.json", "--include-model",
        "--library-path", library_path,
    )  # fmt: skip
    samples = read_samples(out / "all.json", pathlib.Path(paths[0]).parent).samples
    assert len(samples) == 4 and "Neil's zebra café" in [s.captions[0] for s in samples]


def test_export_sidecars_and_metadata_keep_what_is_there(filled):
    library_path, paths = filled
    pathlib.Path(paths[1]).with_suffix(".txt").write_text("theirs\n")
    write_caption_metadata(paths[2], "typed in digiKam")
    arguments = ["--include-model", "--library-path", library_path]
    status, _, err = library_command("export", "--format", "txt", *arguments)
    assert status == 1 and "kept its caption file" in err
    assert pathlib.Path(paths[0]).with_suffix(".txt").read_text() == "Neil's zebra café\n"
    assert pathlib.Path(paths[1]).with_suffix(".txt").read_text() == "theirs\n"
    status, _, err = library_command("export", "--format", "metadata", *arguments)
    assert status == 1 and "kept its description" in err
    assert read_caption_metadata(paths[2])["xmp"] == "typed in digiKam"
    assert read_caption_metadata(paths[0])["xmp"] == "Neil's zebra café"
    status, _, _ = library_command("export", "--format", "metadata", "--overwrite", *arguments)
    assert status == 0 and read_caption_metadata(paths[2])["xmp"] != "typed in digiKam"


def test_import_of_torchrun_shards(album, tmp_path, tiny_model_dir):
    paths = sorted(album.glob("*.jpg"))
    for index in range(2):  # shards 0 and 1 of 3: out.0-of-3.jsonl, out.1-of-3.jsonl
        caption(tiny_model_dir, *paths, "--shard", f"{index}/3", "-o", tmp_path / "out.jsonl")
    library_path = tmp_path / "library.sqlite3"
    shards = [tmp_path / f"out.{index}-of-3.jsonl" for index in range(2)]
    status, _, err = library_command("import", *shards, "--library-path", library_path)
    assert status == 1 and "out.2-of-3.jsonl: a shard of the run not imported" in err
    assert "3 captions imported" in err
    with Library.open(library_path) as library:
        entries = library.lookup(map(str, paths))
        imported = [entry for entry in entries.values() if entry.model is not None]
        assert len(imported) == 3 and all(entry.on_disk == "ok" for entry in imported)
        assert {entry.model.model.name for entry in imported} == {"imported"}


def test_the_console_script_is_installed_and_loads_no_torch(filled):
    library_path, paths = filled
    code = (
        "import sys; from captioner.cli.library import main; status = main(sys.argv[1:]); "
        "sys.exit(status or ('torch' in sys.modules) * 3)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "search", "zebra", "--library-path", library_path],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert CONSOLE_SCRIPT.exists()
