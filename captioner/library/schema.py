"""The library's tables, and the migrations that bring an older library up to date.

`PRAGMA user_version` is the number of migrations applied; MIGRATIONS[i] takes a library from
version i to i + 1. A migration is only ever appended, never edited: libraries written by
every earlier version must still open. `PRAGMA application_id` marks the file as ours, so
another program's SQLite database given as the library is refused rather than added to.
"""

from __future__ import annotations

import sqlite3

APPLICATION_ID = 0x43415054  # "CAPT"

# Version 1: photos, models, their captions and the person's edits.
_PHOTOS_AND_CAPTIONS = """
CREATE TABLE photos (
    id INTEGER PRIMARY KEY,
    path BLOB NOT NULL UNIQUE,       -- os.fsencode of the absolute path
    size INTEGER,
    mtime_ns INTEGER,
    sha256 BLOB,                     -- NULL until the photo is read
    edit_id INTEGER                  -- the person's current caption: the edit it came from
);
CREATE INDEX photos_by_sha256 ON photos (sha256) WHERE sha256 IS NOT NULL;
CREATE TABLE models (
    id INTEGER PRIMARY KEY,
    identity TEXT NOT NULL,          -- hash of the model's config and weights
    options TEXT NOT NULL,           -- the decoding options, records.options_key
    name TEXT NOT NULL,
    UNIQUE (identity, options)
);
CREATE TABLE model_captions (
    photo_id INTEGER NOT NULL REFERENCES photos (id),
    model_id INTEGER NOT NULL REFERENCES models (id),
    caption TEXT NOT NULL,
    score REAL,
    nouns TEXT NOT NULL DEFAULT '',  -- space-separated
    alternatives TEXT,               -- JSON [[text, score], ...], best first
    time REAL NOT NULL,
    PRIMARY KEY (photo_id, model_id)
) WITHOUT ROWID;
CREATE TABLE edits (
    id INTEGER PRIMARY KEY,
    photo_id INTEGER NOT NULL REFERENCES photos (id),
    caption TEXT,                    -- NULL: no caption (undone back past the first edit)
    source TEXT NOT NULL,
    time REAL NOT NULL,
    undoes INTEGER REFERENCES edits (id)  -- set on an undo: the edit it takes back
);
CREATE INDEX edits_by_photo ON edits (photo_id, id);
"""

# Version 2: the search index, one row per photo (rowid = photos.id), filled from what the
# library already holds. Regular (not contentless) FTS5: a row can then be replaced by rowid
# alone; contentless_delete needs SQLite 3.43, newer than many systems have.
_SEARCH = """
CREATE VIRTUAL TABLE search USING fts5 (
    person, model, nouns,
    tokenize = 'unicode61 remove_diacritics 2',
    columnsize = 0
);
INSERT INTO search (rowid, person, model, nouns)
SELECT photos.id,
       (SELECT caption FROM edits WHERE edits.id = photos.edit_id),
       (SELECT group_concat(caption, ' / ') FROM model_captions WHERE photo_id = photos.id),
       (SELECT group_concat(nouns, ' ') FROM model_captions WHERE photo_id = photos.id)
FROM photos;
"""

# Version 3: taught words (captioner/taught.py), one row per example. An example is encoder
# features, so it is kept with the identity of the encoder that made them: a model with
# another encoder keeps the words but cannot use them.
_TAUGHT_WORDS = """
CREATE TABLE taught_examples (
    id INTEGER PRIMARY KEY,
    word TEXT NOT NULL,
    encoder TEXT NOT NULL,           -- Captioner.encoder_identity
    vector BLOB NOT NULL,            -- float16, little-endian: the thing's cells' mean features
    background BLOB,                 -- the same for the photo's other cells; NULL: none
    source BLOB,                     -- os.fsencode of the photo's path; NULL: not from a file
    box TEXT,                        -- JSON [left, top, right, bottom] in 0..1; NULL: none
    time REAL NOT NULL
);
CREATE INDEX taught_by_word ON taught_examples (word);
"""

MIGRATIONS: list[str] = [_PHOTOS_AND_CAPTIONS, _SEARCH, _TAUGHT_WORDS]
LATEST = len(MIGRATIONS)


def version(connection: sqlite3.Connection) -> int:
    return connection.execute("PRAGMA user_version").fetchone()[0]


def is_ours(connection: sqlite3.Connection) -> bool:
    """A library of ours, or an empty database that can become one."""
    if connection.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID:
        return True
    return connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


def migrate(connection: sqlite3.Connection, target: int = LATEST) -> None:
    """Apply the migrations from the library's version up to `target`, in one transaction:
    a migration cut short leaves the library as it was. Two processes opening an old library
    at once: the second waits for the first's transaction, then finds nothing left to do."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        for number in range(version(connection), target):
            for statement in _statements(MIGRATIONS[number]):
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {number + 1}")
        connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _statements(script: str) -> list[str]:
    """The script's statements one by one: executescript would commit our transaction."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return statements
