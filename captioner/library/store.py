"""`Library`: the one way into the caption library's SQLite file.

Every write is one transaction, begun IMMEDIATE (so two writers queue for the write lock up
to BUSY_TIMEOUT_S instead of one failing with "database is locked" half-way) and committed,
with synchronous=FULL in WAL mode, before the call returns: an edit the caller was told about
survives the process being killed and the machine losing power.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import captioner.library.schema as schema
from captioner.library.files import (
    default_library_path,
    file_state,
    path_key,
    path_text,
    stat_state,
)
from captioner.library.records import (
    SOURCES,
    Caption,
    CaptionRefused,
    Entry,
    FileState,
    LibraryCorrupt,
    LibraryError,
    LibraryReadOnly,
    LibraryUnavailable,
    ModelCaption,
    ModelKey,
    ModelResult,
    TaughtRecord,
    checked_caption,
)

BUSY_TIMEOUT_S = 10.0  # how long a writer waits for another process's transaction
FILTERS = ("all", "checked", "unchecked", "mine")
_SQLITE_HEADER = b"SQLite format 3\x00"
_CHUNK = 500
# Photos with the same bytes looked at for one that moved: a few. Each costs a stat(), and a
# folder of a thousand identical files (blank scans) must not cost a million.
MOVED_CANDIDATES = 8  # values per IN (...): well below every SQLite's limit on bound parameters

# The person's caption, per filter; "mine" leaves out the model's words merely confirmed.
_FILTER_SQL = {
    "all": "1",
    "checked": "e.caption IS NOT NULL",
    "unchecked": "e.caption IS NULL",
    "mine": "e.caption IS NOT NULL AND e.source NOT IN ('accepted', 'alternative')",
}
_PHOTO_COLUMNS = (
    "p.id, p.path, p.size, p.mtime_ns, p.sha256, e.id, e.caption, e.source, e.time "
    "FROM photos p LEFT JOIN edits e ON e.id = p.edit_id"
)
# A query with any of these is FTS5 syntax the person typed on purpose: it is tried as it is.
_FTS_SYNTAX = re.compile(r'["()*:^]|\b(AND|OR|NOT|NEAR)\b')


class Library:
    """An open caption library. Use as a context manager, or call close().

    Safe to share between threads (calls are serialised); each process opens its own.
    """

    def __init__(
        self, path: Path, connection: sqlite3.Connection, *, notice: str | None = None
    ) -> None:
        self.path = path
        self._db = connection
        self._lock = threading.RLock()
        # Why the library is read-only, for the app's banner; None when it can be written.
        self.notice = notice

    # --- opening and closing ------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike | None = None, *, create: bool = True) -> Library:
        """The library at `path` (default: `default_library_path()`), brought up to date.

        create: make a new library when there is none (else LibraryError). A library written
        by a newer captioner, or a file this user cannot write, opens read-only (`read_only`,
        `notice` says why). Raises LibraryCorrupt for a file that is not a caption library
        (left untouched), LibraryUnavailable when it cannot be opened now.
        """
        path = Path(path) if path is not None else default_library_path()
        name = str(path)
        if path.is_dir():
            raise LibraryError(f"{name}: is a folder, not a caption library file")
        exists = path.exists()
        if exists:
            _check_header(path)
        elif not create:
            raise LibraryError(f"{name}: no caption library there")
        else:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise LibraryUnavailable(
                    f"{name}: cannot create its folder ({error.strerror or error})"
                ) from None
        # SQLite writes -wal and -shm files beside the library: it needs the folder too.
        writable = os.access(path.parent, os.W_OK) and (not exists or os.access(path, os.W_OK))
        notice = None if writable else f"{name}: the file cannot be written; opened read-only"
        connection = _connect(path, read_only=not writable)
        try:
            if not schema.is_ours(connection):
                raise LibraryCorrupt(
                    name, "not a caption library (another program's database); left as it is"
                )
            found = schema.version(connection)
            if found > schema.LATEST:
                connection.close()
                notice = (
                    f"{name}: written by a newer captioner (library version {found}; this one "
                    f"reads up to {schema.LATEST}); opened read-only"
                )
                connection = _connect(path, read_only=True)
            elif writable:
                connection.execute("PRAGMA journal_mode = WAL")
                if found < schema.LATEST:
                    schema.migrate(connection)
            elif found < schema.LATEST:
                raise LibraryReadOnly(
                    f"{name}: an older library that cannot be written, so cannot be brought up "
                    "to date; make it writable"
                )
        except sqlite3.Error as error:
            connection.close()
            raise _translated(error, name) from None
        except LibraryError:
            connection.close()
            raise
        return cls(path, connection, notice=notice)

    @property
    def read_only(self) -> bool:
        return self.notice is not None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @staticmethod
    def set_aside(path: str | os.PathLike) -> Path:
        """Rename a damaged or foreign library file (and its -wal and -shm) out of the way,
        never deleting it, so a new library can be started at `path`; returns its new name.
        Call it only when the person agreed."""
        path = Path(path)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = path.with_name(f"{path.name}.set-aside-{stamp}")
        number = 1
        while target.exists():
            number += 1
            target = path.with_name(f"{path.name}.set-aside-{stamp}-{number}")
        os.rename(path, target)
        for suffix in ("-wal", "-shm"):
            companion = path.with_name(path.name + suffix)
            if companion.exists():
                os.rename(companion, target.with_name(target.name + suffix))
        return target

    # --- reading ------------------------------------------------------------------------------

    def lookup(
        self, paths: Iterable[str | bytes | os.PathLike], *, model: ModelKey | None = None
    ) -> dict[str, Entry]:
        """Every path's Entry, keyed by the path as given (os.fsdecode'd), in the order given,
        with `on_disk` telling whether the photo is still there as captioned. model: that
        model's caption (None if it has none), else the newest caption of any model."""
        given = {path_key(path): os.fsdecode(path) for path in paths}
        with self._reading():
            rows = []
            for chunk in _chunks(list(given)):
                marks = ",".join("?" * len(chunk))
                rows += self._db.execute(
                    f"SELECT {_PHOTO_COLUMNS} WHERE p.path IN ({marks})", chunk
                ).fetchall()
            entries = self._entries(rows, model)
        found = {}
        for row, entry in zip(rows, entries, strict=True):
            name = given[row[1]]
            found[name] = _with_disk_state(dataclasses.replace(entry, path=name), row[2], row[3])
        unknown = Entry("", None, None, on_disk="unknown")
        return {
            name: found.get(name) or dataclasses.replace(unknown, path=name)
            for name in given.values()
        }

    def find_by_hash(self, sha256: bytes) -> list[Entry]:
        """The photos whose bytes hash to `sha256` (a photo and its copies)."""
        with self._reading():
            rows = self._db.execute(
                f"SELECT {_PHOTO_COLUMNS} WHERE p.sha256 = ? ORDER BY p.path", (sha256,)
            ).fetchall()
            return self._entries(rows, None)

    def captioned_by(self, paths: Sequence[str], model: ModelKey) -> set[str]:
        """Those of `paths` that `model` has captioned, their files unchanged since."""
        keys = {path_key(path): path for path in paths}
        done = set()
        with self._reading():
            for chunk in _chunks(list(keys)):
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    "SELECT p.path, p.size, p.mtime_ns FROM photos p "
                    "JOIN model_captions c ON c.photo_id = p.id "
                    "JOIN models m ON m.id = c.model_id "
                    f"WHERE m.identity = ? AND m.options = ? AND p.path IN ({marks})",
                    (model.identity, model.options, *chunk),
                ).fetchall()
                for key, size, mtime_ns in rows:
                    state = stat_state(keys[key])
                    if state is not None and (state.size, state.mtime_ns) == (size, mtime_ns):
                        done.add(keys[key])
        return done

    def history(self, path: str | bytes | os.PathLike) -> list[Caption]:
        """Every edit of the photo's caption, oldest first (undos included)."""
        with self._reading():
            return [
                Caption(text, source, when, number)
                for number, text, source, when, _ in self._edits(path)
            ]

    def search(
        self,
        query: str = "",
        *,
        filter: str = "all",
        limit: int | None = None,
        captions: bool = True,
    ) -> list[Entry]:
        """The photos whose person's caption, model captions or seen nouns match every word
        of `query` (whole words and prefixes, any case, accents ignored), by path; an empty
        query matches every photo. filter: "checked" (the person has a caption), "unchecked",
        "mine" (written, not just accepted), "all". FTS5 syntax ("dog OR cat", "bicy*") works;
        a query FTS5 cannot parse is searched for as plain words. captions=False leaves out
        the model's captions (faster for many matches)."""
        with self._reading():
            rows = self._select(_PHOTO_COLUMNS, query, filter, limit)
            return self._entries(rows, None, with_model=captions)

    def matching_paths(self, query: str = "", *, filter: str = "all") -> list[str]:
        """The paths `search` would give, read from the photos table alone: the app's search
        box filters the list it already shows, and so stays fast for a query of one letter."""
        columns = "p.path FROM photos p LEFT JOIN edits e ON e.id = p.edit_id"
        with self._reading():
            return [path_text(row[0]) for row in self._select(columns, query, filter)]

    def _select(
        self, columns: str, query: str, filter: str, limit: int | None = None
    ) -> list[tuple]:
        """SELECT `columns` (photos p, edits e) of the photos matching `query` and `filter`,
        by path. The caller holds the reading lock."""
        if filter not in FILTERS:
            raise ValueError(f"filter must be one of {', '.join(FILTERS)}, not {filter!r}")
        sql = f"SELECT {columns} WHERE {_FILTER_SQL[filter]}"
        if query.strip():
            sql += " AND p.id IN (SELECT rowid FROM search WHERE search MATCH ?)"
        sql += " ORDER BY p.path"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        if not query.strip():
            return self._db.execute(sql).fetchall()
        return self._matching(sql, query)

    def photo_count(self) -> int:
        """How many photos the library knows (missing ones included)."""
        with self._reading():
            return self._db.execute("SELECT count(*) FROM photos").fetchone()[0]

    # --- writing ------------------------------------------------------------------------------

    def add_model_results(self, results: Iterable[ModelResult], model: ModelKey) -> int:
        """Store a model's captions (one transaction for all of them); returns how many.

        A photo new to the library whose bytes match a photo that is no longer where the
        library saw it is taken for that photo, moved: it keeps its captions. The person's
        captions are never touched. Raises CaptionRefused (nothing stored) for a bad caption.
        """
        now = time.time()
        with self._writing() as db:
            db.execute(
                "INSERT OR IGNORE INTO models (identity, options, name) VALUES (?, ?, ?)",
                (model.identity, model.options, model.name),
            )
            model_id = db.execute(
                "SELECT id FROM models WHERE identity = ? AND options = ?",
                (model.identity, model.options),
            ).fetchone()[0]
            photo_ids = []
            for result in results:
                try:
                    text = checked_caption(result.text)
                except CaptionRefused as error:
                    raise CaptionRefused(f"{os.fsdecode(result.path)}: {error}") from None
                photo_id = self._photo_id(result.path, result.file)
                alternatives = [[checked_caption(t), s] for t, s in result.alternatives]
                db.execute(
                    "INSERT OR REPLACE INTO model_captions (photo_id, model_id, caption, score, "
                    "nouns, alternatives, time) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        photo_id,
                        model_id,
                        text,
                        result.score,
                        " ".join(result.nouns),
                        json.dumps(alternatives, ensure_ascii=False) if alternatives else None,
                        now,
                    ),
                )
                photo_ids.append(photo_id)
            self._reindex(photo_ids)
        return len(photo_ids)

    def set_caption(
        self, path: str | bytes | os.PathLike, text: str, *, source: str = "typed"
    ) -> Caption:
        """Make `text` the person's caption of the photo; the old one stays in the history.

        source: "typed", "accepted" (the model's caption confirmed), "alternative" (another of
        the model's beams chosen), or where an existing caption was found ("sidecar", "xmp",
        "exif", "iptc"). Raises CaptionRefused for an empty caption, control characters or
        more than MAX_CAPTION_CHARS characters.
        """
        if source not in SOURCES or source == "undo":
            raise ValueError(f"source must be one of {', '.join(SOURCES[:-1])}, not {source!r}")
        text = checked_caption(text)
        if not text:
            raise CaptionRefused("a caption cannot be empty; undo takes an edit back")
        with self._writing():
            return self._add_edit(self._photo_id(path, None), text, source, None)

    def accept(self, path: str | bytes | os.PathLike, text: str | None = None) -> Caption:
        """Confirm the model's caption as right: `text` (the caption the person saw), else
        the newest model caption the library holds for the photo."""
        if text is None:
            model = self.lookup([path])[os.fsdecode(path)].model
            if model is None:
                raise LibraryError(f"{os.fsdecode(path)}: no model caption to accept")
            text = model.text
        return self.set_caption(path, text, source="accepted")

    def undo(self, path: str | bytes | os.PathLike) -> Caption:
        """Take back the photo's last edit not yet undone, as a new history entry restoring
        the caption before it (text None: no caption, as before the first edit). Repeated,
        it steps further back. Raises LibraryError when there is nothing to undo."""
        with self._writing():
            standing: list[tuple] = []  # the edits in force, oldest first
            for edit in self._edits(path):
                if edit[4] is None:
                    standing.append(edit)
                else:
                    standing.pop()
            if not standing:
                raise LibraryError(f"{os.fsdecode(path)}: no caption edit to undo")
            undone = standing.pop()
            text, source = (standing[-1][1], standing[-1][2]) if standing else (None, "undo")
            return self._add_edit(self._photo_id(path, None), text, source, undone[0])

    def adopt_existing(self, path: str | bytes | os.PathLike) -> Caption | None:
        """Take a caption the person already has for the photo into the library as theirs:
        its sidecar photo.txt, else the description in the photo (XMP, EXIF, IPTC). Only
        when the library holds no caption of theirs for it: theirs is never replaced. Returns
        the caption taken, or None. Raises CaptionRefused (naming the file) for one that
        cannot be a caption."""
        # Imported here: the metadata reader loads Exiv2 and Pillow, which lookup and search
        # (the app's start-up) do not need.
        from captioner.photos.metadata import (
            existing_description,
            read_caption_metadata,
            sidecar_path,
        )

        name = os.fsdecode(path)
        person = self.lookup([path])[name].person
        if person is not None and person.text is not None:
            return None
        found = _sidecar_text(sidecar_path(path))
        if found is not None:
            where, text, source = sidecar_path(path), found, "sidecar"
        else:
            try:
                stored = read_caption_metadata(path)
                described = existing_description(path)
            except (ValueError, OSError):  # not a format with metadata, or unreadable
                return None
            if not described:
                return None
            source = next((kind for kind, text in stored.items() if text == described), "iptc")
            where, text = name, described
        text = " ".join(text.split())  # a multi-line sidecar becomes one line
        if not text:
            return None
        try:
            return self.set_caption(path, text, source=source)
        except CaptionRefused as error:
            raise CaptionRefused(f"{where}: {error}") from None

    # --- taught words -------------------------------------------------------------------------

    def add_taught(self, records: Iterable[TaughtRecord]) -> list[TaughtRecord]:
        """Store examples of taught words; returns them with their `id` and `time`."""
        now, stored = time.time(), []
        with self._writing() as db:
            for record in records:
                source = os.fsencode(record.source) if record.source is not None else None
                box = json.dumps(list(record.box)) if record.box is not None else None
                row = (record.word, record.encoder, record.vector, record.background)
                row_id = db.execute(
                    "INSERT INTO taught_examples (word, encoder, vector, background, source, "
                    "box, time) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (*row, source, box, now),
                ).lastrowid
                stored.append(dataclasses.replace(record, time=now, id=row_id))
        return stored

    def taught(self, word: str | None = None) -> list[TaughtRecord]:
        """Every taught example (or `word`'s), oldest first, whatever encoder it is from."""
        sql = "SELECT id, word, encoder, vector, background, source, box, time FROM taught_examples"
        with self._reading():
            rows = self._db.execute(
                sql + (" WHERE word = ?" if word is not None else "") + " ORDER BY id",
                (word,) if word is not None else (),
            ).fetchall()
        return [
            TaughtRecord(
                word=name,
                encoder=encoder,
                vector=vector,
                background=background,
                source=os.fsdecode(source) if source is not None else None,
                box=tuple(json.loads(box)) if box is not None else None,
                time=when,
                id=row_id,
            )
            for row_id, name, encoder, vector, background, source, box, when in rows
        ]

    def forget_taught(self, word: str, source: str | os.PathLike | None = None) -> int:
        """Forget a taught word, or only its examples from the photo `source`; returns the
        number of examples removed."""
        sql, parameters = "DELETE FROM taught_examples WHERE word = ?", [word]
        if source is not None:
            sql += " AND source = ?"
            parameters.append(os.fsencode(os.fspath(source)))
        with self._writing() as db:
            return db.execute(sql, parameters).rowcount

    # --- inside -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        with self._lock:
            try:
                yield
            except sqlite3.Error as error:
                raise _translated(error, str(self.path)) from None

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed when the block ends, rolled back if it raises."""
        if self.notice is not None:
            raise LibraryReadOnly(self.notice)
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:
                raise _translated(error, str(self.path)) from None
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as error:
                with contextlib.suppress(sqlite3.Error):  # the failed commit may have ended it
                    self._db.execute("ROLLBACK")
                if isinstance(error, sqlite3.Error):
                    raise _translated(error, str(self.path)) from None
                raise

    def _photo_id(self, path: str | bytes | os.PathLike, state: FileState | None) -> int:
        """The photo's row, made or updated from `state` (None: read from the file now).

        A path new to the library whose bytes hash like a photo no longer at its old path is
        that photo, moved: its row gets the new path, and so keeps every caption.
        """
        key = path_key(path)
        row = self._db.execute(
            "SELECT id, size, mtime_ns, sha256 FROM photos WHERE path = ?", (key,)
        ).fetchone()
        if state is None:
            state = stat_state(key)
            unchanged = row is not None and row[3] is not None and state is not None
            if not (unchanged and (state.size, state.mtime_ns) == (row[1], row[2])):
                state = file_state(key) or state
        if row is not None:
            if state is not None and (state.size, state.mtime_ns, state.sha256) != row[1:]:
                self._db.execute(
                    "UPDATE photos SET size = ?, mtime_ns = ?, sha256 = coalesce(?, sha256) "
                    "WHERE id = ?",
                    (state.size, state.mtime_ns, state.sha256, row[0]),
                )
            return row[0]
        if state is not None and state.sha256 is not None:
            for photo_id, old in self._db.execute(
                "SELECT id, path FROM photos WHERE sha256 = ? LIMIT ?",
                (state.sha256, MOVED_CANDIDATES),
            ).fetchall():
                if stat_state(old) is None:
                    self._db.execute(
                        "UPDATE photos SET path = ?, size = ?, mtime_ns = ? WHERE id = ?",
                        (key, state.size, state.mtime_ns, photo_id),
                    )
                    return photo_id
        values = (state.size, state.mtime_ns, state.sha256) if state else (None, None, None)
        return self._db.execute(
            "INSERT INTO photos (path, size, mtime_ns, sha256) VALUES (?, ?, ?, ?)",
            (key, *values),
        ).lastrowid

    def _add_edit(
        self, photo_id: int, text: str | None, source: str, undoes: int | None
    ) -> Caption:
        now = time.time()
        edit_id = self._db.execute(
            "INSERT INTO edits (photo_id, caption, source, time, undoes) VALUES (?, ?, ?, ?, ?)",
            (photo_id, text, source, now, undoes),
        ).lastrowid
        self._db.execute("UPDATE photos SET edit_id = ? WHERE id = ?", (edit_id, photo_id))
        self._reindex([photo_id])
        return Caption(text, source, now, edit_id)

    def _edits(self, path: str | bytes | os.PathLike) -> list[tuple]:
        return self._db.execute(
            "SELECT e.id, e.caption, e.source, e.time, e.undoes FROM edits e "
            "JOIN photos p ON p.id = e.photo_id WHERE p.path = ? ORDER BY e.id",
            (path_key(path),),
        ).fetchall()

    def _reindex(self, photo_ids: list[int]) -> None:
        """The photos' rows in the search index, from what the library now holds for them."""
        for chunk in _chunks(sorted(set(photo_ids))):
            marks = ",".join("?" * len(chunk))
            self._db.execute(f"DELETE FROM search WHERE rowid IN ({marks})", chunk)
            self._db.execute(
                "INSERT INTO search (rowid, person, model, nouns) SELECT p.id, "
                "(SELECT caption FROM edits WHERE edits.id = p.edit_id), "
                "(SELECT group_concat(caption, ' / ') FROM model_captions WHERE photo_id = p.id),"
                " (SELECT group_concat(nouns, ' ') FROM model_captions WHERE photo_id = p.id) "
                f"FROM photos p WHERE p.id IN ({marks})",
                chunk,
            )

    def _matching(self, sql: str, query: str) -> list[tuple]:
        """Rows for `query`: as FTS5 syntax when it uses some, else as words and prefixes;
        when FTS5 cannot parse it, as quoted words. Never an error for what was typed."""
        attempts = [query] if _FTS_SYNTAX.search(query) else []
        attempts.append(_as_prefixes(query))
        for expression in attempts:
            try:
                return self._db.execute(sql, (expression,)).fetchall()
            except sqlite3.OperationalError as error:
                # A query FTS5 cannot parse is SQLITE_ERROR; a busy or damaged file is not.
                if getattr(error, "sqlite_errorname", "") != "SQLITE_ERROR":
                    raise
        return []

    def _entries(
        self, rows: list[tuple], model: ModelKey | None, *, with_model: bool = True
    ) -> list[Entry]:
        """Entries for photo rows (_PHOTO_COLUMNS), each with one model caption (`model`'s,
        else the newest) unless with_model is False."""
        captions: dict[int, ModelCaption] = {}
        ids = [row[0] for row in rows] if with_model else []
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            sql = (
                "SELECT c.photo_id, c.caption, c.score, c.nouns, c.alternatives, c.time, "
                "m.identity, m.options, m.name FROM model_captions c "
                f"JOIN models m ON m.id = c.model_id WHERE c.photo_id IN ({marks})"
            )
            parameters = list(chunk)
            if model is not None:
                sql += " AND m.identity = ? AND m.options = ?"
                parameters += [model.identity, model.options]
            for photo_id, text, score, nouns, alternatives, when, *key in self._db.execute(
                sql, parameters
            ):
                if photo_id in captions and captions[photo_id].time >= when:
                    continue
                captions[photo_id] = ModelCaption(
                    text,
                    score,
                    tuple(nouns.split()),
                    tuple((t, s) for t, s in json.loads(alternatives or "[]")),
                    ModelKey(key[0], key[1], key[2]),
                    when,
                )
        return [
            Entry(
                path_text(row[1]),
                Caption(row[6], row[7], row[8], row[5]) if row[5] is not None else None,
                captions.get(row[0]),
                sha256=row[4],
            )
            for row in rows
        ]


def _connect(path: Path, *, read_only: bool) -> sqlite3.Connection:
    uri = path.absolute().as_uri() + ("?mode=ro" if read_only else "?mode=rwc")
    try:
        # isolation_level=None: transactions are begun and ended explicitly (_writing).
        connection = sqlite3.connect(
            uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        if not read_only:
            connection.execute("PRAGMA synchronous = FULL")
    except sqlite3.Error as error:
        raise _translated(error, str(path)) from None
    return connection


def _check_header(path: Path) -> None:
    """A file that is not SQLite at all is refused before SQLite opens (and could change) it."""
    try:
        with open(path, "rb") as file:
            head = file.read(len(_SQLITE_HEADER))
    except OSError as error:
        raise LibraryError(f"{path}: cannot read it ({error.strerror or error})") from None
    if head and head != _SQLITE_HEADER:
        raise LibraryCorrupt(str(path), "not a caption library (not an SQLite file); left as it is")


def _translated(error: sqlite3.Error, name: str) -> LibraryError:
    """SQLite's error as the LibraryError the caller can act on."""
    code = getattr(error, "sqlite_errorname", "")
    reason = str(error)
    if code.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in reason:
        return LibraryCorrupt(name, f"damaged or not a caption library ({reason}); left as it is")
    if code.startswith(("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_BUSY")):
        return LibraryUnavailable(f"{name}: cannot be written now ({reason})")
    if code.startswith(("SQLITE_READONLY", "SQLITE_LOCKED", "SQLITE_PERM")):
        return LibraryUnavailable(f"{name}: cannot be written now ({reason})")
    return LibraryError(f"{name}: {reason}")


def _as_prefixes(query: str) -> str:
    """Each word of `query` as a quoted FTS5 prefix: "bic" finds bicycle; quotes doubled."""
    return " ".join('"' + word.replace('"', '""') + '"*' for word in query.split())


def _sidecar_text(path: Path) -> str | None:
    try:
        data = path.read_bytes() if path.is_file() else None
    except OSError:
        return None
    if data is None:
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # older tools wrote their platform's 8-bit encoding


def _with_disk_state(entry: Entry, size: int | None, mtime_ns: int | None) -> Entry:
    """The entry with `on_disk`: its file now against the size and time the library saw."""
    state = stat_state(entry.path)
    if state is None:
        on_disk = "missing"
    elif (state.size, state.mtime_ns) != (size, mtime_ns):
        on_disk = "changed"
    else:
        on_disk = "ok"
    return dataclasses.replace(entry, on_disk=on_disk)


def _chunks(values: list) -> Iterator[list]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]
