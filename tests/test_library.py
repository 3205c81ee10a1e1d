"""The caption library (captioner.library): captions kept per photo and model, the person's
edits with their history, search, moved and missing photos, bad files, and nothing lost when a
process is killed or two write at once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from captioner.library import (
    CaptionRefused,
    Library,
    LibraryCorrupt,
    LibraryError,
    LibraryReadOnly,
    LibraryUnavailable,
    ModelKey,
    ModelResult,
    default_library_path,
    files,
    schema,
)
from captioner.library.records import MAX_CAPTION_CHARS, options_key
from captioner.options import DecodeOptions
from captioner.photos.metadata import write_caption_metadata
from captioner.results import CaptionResult

MODEL = ModelKey("model-a", options_key(DecodeOptions()), "a")
OTHER_OPTIONS = ModelKey("model-a", options_key(DecodeOptions(beam_size=1)), "a")
RUNNING_AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def photo_file(folder: Path, name: str, content: bytes | None = None) -> str:
    path = folder / name
    path.write_bytes(content if content is not None else name.encode() * 10)
    return str(path)


@pytest.fixture
def library(tmp_path):
    with Library.open(tmp_path / "library.sqlite3") as opened:
        yield opened


def result(path: str, text: str, nouns=(), alternatives=()) -> ModelResult:
    return ModelResult(path, text, -1.5, tuple(nouns), tuple(alternatives))


# --- where it lives -----------------------------------------------------------------------------


def test_default_path_is_the_platforms_data_folder(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_library_path() == tmp_path / "data" / "captioner" / "library.sqlite3"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/is/ignored")
    assert default_library_path() == Path.home() / ".local/share/captioner/library.sqlite3"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert default_library_path().parent == Path.home() / "Library/Application Support/captioner"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("APPDATA", str(tmp_path / "Roaming"))
    assert default_library_path() == tmp_path / "Roaming" / "captioner" / "library.sqlite3"


def test_importing_it_loads_neither_torch_nor_qt():
    code = "import sys, captioner.library; sys.exit(bool({'torch', 'PySide6'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# --- model captions and lookup ------------------------------------------------------------------


def test_lookup_gives_every_caption_and_where_each_photo_stands(library, tmp_path):
    kept, changed, gone = (photo_file(tmp_path, n) for n in ("kept.jpg", "changed.jpg", "gone.jpg"))
    library.add_model_results(
        [result(kept, "a dog", ["dog"], [("a dog and a bicycle", -2.0)])], MODEL
    )
    library.add_model_results([result(changed, "a cat"), result(gone, "a cow")], MODEL)
    Path(changed).write_bytes(b"different bytes now")
    os.remove(gone)
    entries = library.lookup([kept, changed, gone, str(tmp_path / "new.jpg")])
    assert {path: entry.on_disk for path, entry in entries.items()} == {
        kept: "ok",
        changed: "changed",
        gone: "missing",
        str(tmp_path / "new.jpg"): "unknown",
    }
    assert entries[gone].caption == "a cow"  # kept, though the photo is gone
    model = entries[kept].model
    assert (model.text, model.nouns, model.model) == ("a dog", ("dog",), MODEL)
    assert model.alternatives == (("a dog and a bicycle", -2.0),)
    assert entries[kept].state == "model" and entries[kept].person is None


def test_captions_are_kept_per_model_and_decoding_options(library, tmp_path):
    path = photo_file(tmp_path, "a.jpg")
    library.add_model_results([result(path, "beam five")], MODEL)
    library.add_model_results([result(path, "greedy")], OTHER_OPTIONS)
    assert library.lookup([path], model=MODEL)[path].model.text == "beam five"
    assert library.lookup([path], model=OTHER_OPTIONS)[path].model.text == "greedy"
    assert library.captioned_by([path], MODEL) == {path}
    assert library.captioned_by([path], ModelKey("model-b", MODEL.options)) == set()
    Path(path).write_bytes(b"edited photo")
    assert library.captioned_by([path], MODEL) == set()  # changed on disk: caption it again


def test_options_key_is_stable_across_int_and_float():
    assert options_key(DecodeOptions(length_penalty=0)) == options_key(DecodeOptions())
    assert options_key(DecodeOptions(beam_size=3)) != options_key(DecodeOptions())


def test_an_option_added_later_keeps_the_keys_of_captions_stored_before_it():
    """The key libraries stored before DecodeOptions.name_things existed: its default must
    find them, any other value must not."""
    before = (
        '{"beam_size":5,"consensus_samples":0,"length_penalty":0.0,"max_length":20,'
        '"no_repeat_ngram_size":0}'
    )
    assert options_key(DecodeOptions()) == before
    assert options_key(DecodeOptions(name_things=2)) != before


def test_a_moved_photo_keeps_its_captions(library, tmp_path):
    old = photo_file(tmp_path, "old.jpg", b"the same bytes")
    library.add_model_results([result(old, "a boat")], MODEL)
    library.set_caption(old, "our boat")
    moved = tmp_path / "sub" / "new name.jpg"
    moved.parent.mkdir()
    os.rename(old, moved)
    library.add_model_results([result(str(moved), "a ship")], MODEL)
    entry = library.lookup([str(moved)])[str(moved)]
    assert entry.person.text == "our boat" and entry.model.text == "a ship"
    assert [caption.text for caption in library.history(moved)] == ["our boat"]
    assert library.lookup([old])[old].on_disk == "unknown"
    assert [e.path for e in library.find_by_hash(entry.sha256)] == [str(moved)]


def test_a_photo_not_utf8_named_keeps_its_bytes(library, tmp_path):
    name = os.fsdecode(bytes(tmp_path) + b"/caf\xe9.jpg")
    Path(name).write_bytes(b"pixels")
    library.set_caption(name, "a café")
    entry = library.lookup([name])[name]
    assert entry.person.text == "a café" and entry.on_disk == "ok"
    assert os.fsencode(library.search("cafe")[0].path) == os.fsencode(name)


def test_caption_results_keep_the_nouns_of_every_beam_and_no_maps(tmp_path):
    def beam(text: str, score: float) -> CaptionResult:
        tokens = text.split()
        alphas = np.full((len(tokens), 7, 7), 1 / 49)
        return CaptionResult(text, tokens, score, score, alphas, np.zeros(len(tokens)))

    beams = [beam("a dog on the grass", -1.0), beam("a dog and a bicycle", -2.0)]
    best = CaptionResult(**{**beams[0].__dict__, "beams": beams, "source": "x.jpg"})
    converted = ModelResult.from_caption_result(best)
    assert converted.nouns == ("dog", "bicycle")  # the everyday nouns; "grass" is none
    assert converted.alternatives == (("a dog and a bicycle", -2.0),)
    assert not any(isinstance(value, np.ndarray) for value in converted.__dict__.values())


# --- the person's caption -----------------------------------------------------------------------


def test_every_edit_is_kept_and_undo_steps_back(library, tmp_path):
    path = photo_file(tmp_path, "a.jpg")
    library.add_model_results([result(path, "a large llama")], MODEL)
    library.accept(path)
    library.set_caption(path, "a person", source="typed")
    library.set_caption(path, "a person waving", source="typed")
    assert library.lookup([path])[path].state == "mine"
    assert library.undo(path).text == "a person"
    assert library.undo(path).text == "a large llama"
    assert library.lookup([path])[path].state == "accepted"
    back = library.undo(path)
    assert back.text is None and library.lookup([path])[path].state == "model"
    with pytest.raises(LibraryError, match="no caption edit to undo"):
        library.undo(path)
    history = library.history(path)
    assert [(c.text, c.source) for c in history] == [
        ("a large llama", "accepted"),
        ("a person", "typed"),
        ("a person waving", "typed"),
        ("a person", "typed"),
        ("a large llama", "accepted"),
        (None, "undo"),
    ]
    assert [c.id for c in history] == sorted(c.id for c in history)


def test_model_results_never_replace_the_persons_caption(library, tmp_path):
    path = photo_file(tmp_path, "a.jpg")
    library.set_caption(path, "Rex, asleep", source="typed")
    library.add_model_results([result(path, "a dog")], OTHER_OPTIONS)
    entry = library.lookup([path])[path]
    assert (entry.caption, entry.model.text) == ("Rex, asleep", "a dog")


def test_a_sidecar_or_description_the_person_has_becomes_theirs(library, tmp_path):
    with_sidecar = photo_file(tmp_path, "a.jpg")
    (tmp_path / "a.txt").write_text("tags, from taggui\n", encoding="utf-8")
    assert library.adopt_existing(with_sidecar).source == "sidecar"
    described = tmp_path / "b.jpg"
    Image.new("RGB", (8, 8)).save(described)
    write_caption_metadata(described, "Grandma's garden")
    assert library.adopt_existing(described).source == "xmp"
    library.add_model_results([result(str(described), "a large waffle iron")], MODEL)
    assert library.lookup([str(described)])[str(described)].caption == "Grandma's garden"
    library.set_caption(with_sidecar, "my own words")
    assert library.adopt_existing(with_sidecar) is None  # theirs is never replaced
    assert library.lookup([with_sidecar])[with_sidecar].caption == "my own words"
    assert library.adopt_existing(photo_file(tmp_path, "plain.jpg")) is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("line one\nline two", "control characters"),
        ("bell \x07", "control characters"),
        ("x" * (MAX_CAPTION_CHARS + 1), "at most"),
        ("   ", "cannot be empty"),
    ],
)
def test_captions_that_cannot_be_are_refused_with_a_message(library, tmp_path, text, message):
    path = photo_file(tmp_path, "a.jpg")
    with pytest.raises(CaptionRefused, match=message):
        library.set_caption(path, text)
    if text.strip():
        with pytest.raises(CaptionRefused, match=message):
            library.add_model_results([result(path, text)], MODEL)
    assert library.history(path) == [] and library.lookup([path])[path].on_disk == "unknown"


# --- search -------------------------------------------------------------------------------------


@pytest.fixture
def searchable(library, tmp_path):
    paths = {name: photo_file(tmp_path, f"{name}.jpg") for name in ("dog", "cafe", "mine", "ok")}
    library.add_model_results(
        [
            result(paths["dog"], "a dog on the grass", ["dog", "grass", "bicycle"]),
            result(paths["cafe"], "a small café", ["café"]),
            result(paths["mine"], "a large llama", ["llama"]),
            result(paths["ok"], "a red bicycle", ["bicycle"]),
        ],
        MODEL,
    )
    library.set_caption(paths["mine"], "Aunt Ágnes on her Horse")
    library.accept(paths["ok"])
    return library, paths


def found(library: Library, query: str, **options) -> set[str]:
    return {Path(entry.path).stem for entry in library.search(query, **options)}


def test_search_finds_words_prefixes_and_seen_nouns_in_any_case_and_accent(searchable):
    library, _ = searchable
    assert found(library, "bicycle") == {"dog", "ok"}  # the dog photo by its seen nouns
    assert found(library, "BIC") == {"dog", "ok"}
    assert found(library, "cafe") == {"cafe"}
    assert found(library, "agnes horse") == {"mine"}
    assert found(library, "llama") == {"mine"}  # the model's words still find it
    assert found(library, "dog OR llama") == {"dog", "mine"}
    assert found(library, "elephant") == set()


@pytest.mark.parametrize("query", ['"unbalanced', "(((", "col:umn", "AND", "*", "dog NOT", "^"])
def test_a_query_fts5_cannot_parse_is_searched_as_words(searchable, query):
    library, _ = searchable
    assert isinstance(library.search(query), list)


def test_filters_checked_unchecked_and_mine(searchable):
    library, _ = searchable
    assert found(library, "", filter="checked") == {"mine", "ok"}
    assert found(library, "", filter="unchecked") == {"dog", "cafe"}
    assert found(library, "", filter="mine") == {"mine"}
    assert found(library, "bicycle", filter="unchecked") == {"dog"}
    assert {Path(p).stem for p in library.matching_paths("bic", filter="checked")} == {"ok"}
    with pytest.raises(ValueError, match="filter"):
        library.search("", filter="everything")


# --- bad files ----------------------------------------------------------------------------------


def test_a_foreign_file_is_refused_and_kept_until_set_aside(tmp_path):
    text_file = tmp_path / "notes.txt"
    text_file.write_bytes(b"my shopping list\n")
    with pytest.raises(LibraryCorrupt, match="not a caption library") as refused:
        Library.open(text_file)
    assert refused.value.path == str(text_file)
    assert text_file.read_bytes() == b"my shopping list\n"
    other = tmp_path / "other.sqlite3"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE accounts (name TEXT)")
    before = other.read_bytes()
    with pytest.raises(LibraryCorrupt, match="another program"):
        Library.open(other)
    assert other.read_bytes() == before
    aside = Library.set_aside(text_file)
    assert aside.read_bytes() == b"my shopping list\n" and not text_file.exists()
    with Library.open(text_file) as fresh:
        assert fresh.photo_count() == 0


def test_a_damaged_library_is_a_clear_error(tmp_path):
    path = tmp_path / "library.sqlite3"
    with Library.open(path) as library:
        library.add_model_results(
            [result(photo_file(tmp_path, f"{i}.jpg"), "a cat") for i in range(200)], MODEL
        )
    data = bytearray(path.read_bytes())
    data[4096:] = b"\xff" * (len(data) - 4096)  # every page past the first overwritten
    path.write_bytes(bytes(data))
    with pytest.raises(LibraryCorrupt, match="damaged"), Library.open(path) as library:
        library.search("cat")


def test_a_missing_library_is_an_error_when_not_to_be_created(tmp_path):
    with pytest.raises(LibraryError, match="no caption library there"):
        Library.open(tmp_path / "none.sqlite3", create=False)
    assert not (tmp_path / "none.sqlite3").exists()


def test_a_library_from_a_newer_version_opens_read_only(tmp_path):
    path = tmp_path / "library.sqlite3"
    photo = photo_file(tmp_path, "a.jpg")
    with Library.open(path) as library:
        library.set_caption(photo, "kept")
    with sqlite3.connect(path) as connection:
        connection.execute(f"PRAGMA user_version = {schema.LATEST + 1}")
    with Library.open(path) as library:
        assert library.read_only and "newer captioner" in library.notice
        assert library.lookup([photo])[photo].caption == "kept"
        with pytest.raises(LibraryReadOnly, match="newer"):
            library.set_caption(photo, "changed")
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == schema.LATEST + 1


@pytest.mark.skipif(RUNNING_AS_ROOT, reason="root writes read-only files")
def test_a_read_only_library_says_so_and_refuses_writes(tmp_path):
    path = tmp_path / "library.sqlite3"
    photo = photo_file(tmp_path, "a.jpg")
    with Library.open(path) as library:
        library.set_caption(photo, "kept")
    os.chmod(path, 0o444)
    with Library.open(path) as library:
        assert library.read_only
        assert library.lookup([photo])[photo].caption == "kept"
        with pytest.raises(LibraryUnavailable):
            library.set_caption(photo, "changed")


def test_a_full_disk_is_unavailable_and_loses_nothing_written_before(library, tmp_path):
    photo = photo_file(tmp_path, "a.jpg")
    library.set_caption(photo, "first")
    pages = library._db.execute("PRAGMA page_count").fetchone()[0]
    library._db.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full from now on
    many = [result(photo_file(tmp_path, f"{i}.jpg"), "a cat " * 50) for i in range(300)]
    with pytest.raises(LibraryUnavailable, match="full"):
        library.add_model_results(many, MODEL)
    library._db.execute("PRAGMA max_page_count = 1073741823")  # room again: retry works
    assert library.lookup([photo])[photo].caption == "first"
    assert library.add_model_results(many, MODEL) == 300


def test_a_first_version_library_is_migrated_with_its_captions_searchable(tmp_path):
    path = tmp_path / "library.sqlite3"
    photo = photo_file(tmp_path, "a.jpg")
    connection = sqlite3.connect(path, isolation_level=None)
    schema.migrate(connection, target=1)  # as the first version wrote it
    connection.execute(
        "INSERT INTO photos (id, path, size, mtime_ns) VALUES (1, ?, 0, 0)",
        (files.path_key(photo),),
    )
    connection.execute("INSERT INTO edits VALUES (1, 1, 'my old zebra', 'typed', 0, NULL)")
    connection.execute("UPDATE photos SET edit_id = 1")
    connection.close()
    with Library.open(path) as library:
        assert [Path(e.path).name for e in library.search("zebra")] == ["a.jpg"]
        assert library.history(photo)[0].text == "my old zebra"
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == schema.LATEST


# --- nothing lost -------------------------------------------------------------------------------

EDITS_THEN_WAIT = """
import sys, time
from captioner.library import Library
library = Library.open(sys.argv[1])
for number in range(100):
    library.set_caption(f"{sys.argv[2]}/{number}.jpg", f"caption number {number}")
print("done", flush=True)
time.sleep(600)
"""


def test_edits_survive_the_process_being_killed(tmp_path):
    path = tmp_path / "library.sqlite3"
    child = subprocess.Popen(
        [sys.executable, "-c", EDITS_THEN_WAIT, str(path), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline() == "done\n"
    child.send_signal(signal.SIGKILL)
    child.wait()
    with Library.open(path) as library:
        entries = library.lookup(f"{tmp_path}/{number}.jpg" for number in range(100))
        assert [entry.caption for entry in entries.values()] == [
            f"caption number {number}" for number in range(100)
        ]


WRITER = textwrap.dedent(
    """
    import sys
    from captioner.library import Library, ModelKey, ModelResult
    library = Library.open(sys.argv[1])
    folder, role = sys.argv[2], sys.argv[3]
    for round in range(40):
        if role == "model":
            paths = [f"{folder}/{round}-{i}.jpg" for i in range(25)]
            results = [ModelResult(path, f"a cat {i}", -1.0) for i, path in enumerate(paths)]
            library.add_model_results(results, ModelKey("m", "o"))
        else:
            for i in range(5):
                library.set_caption(f"{folder}/{round}-{i}.jpg", f"mine {round} {i}")
    """
)


def test_two_processes_write_at_once_and_nothing_is_lost(tmp_path):
    path = tmp_path / "library.sqlite3"
    Library.open(path).close()
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(tmp_path), role],
            stderr=subprocess.PIPE,
            text=True,
        )
        for role in ("model", "person")
    ]
    for writer in writers:
        stderr = writer.communicate(timeout=300)[1]
        assert writer.returncode == 0, stderr
        assert "locked" not in stderr
    with Library.open(path) as library:
        assert library.photo_count() == 40 * 25
        assert len(library.search("", filter="mine")) == 40 * 5
        assert len(library.search("cat")) == 40 * 25
        entry = library.lookup([f"{tmp_path}/7-3.jpg"])[f"{tmp_path}/7-3.jpg"]
        assert (entry.caption, entry.model.text) == ("mine 7 3", "a cat 3")
