"""Where the library lives, and the photo files it keeps track of.

Paths are stored as the bytes the file system uses (os.fsencode of the absolute path), so a
name that is not valid UTF-8 comes back as the same file; os.fsdecode gives the str the rest
of captioner passes around (its odd bytes as surrogate escapes).
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from pathlib import Path

from captioner.library.records import FileState

LIBRARY_FILE = "library.sqlite3"


def default_library_path() -> Path:
    """The user's caption library, the same for the app and the batch command: in the user's
    data folder ($XDG_DATA_HOME/captioner on Linux, ~/Library/Application Support/captioner on
    macOS, %APPDATA%\\captioner on Windows)."""
    if sys.platform == "win32":
        base = os.environ.get("APPDATA") or str(Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = str(Path.home() / "Library" / "Application Support")
    else:
        # The XDG spec: a relative $XDG_DATA_HOME is invalid and must be ignored.
        xdg = os.environ.get("XDG_DATA_HOME", "")
        base = xdg if os.path.isabs(xdg) else str(Path.home() / ".local" / "share")
    return Path(base) / "captioner" / LIBRARY_FILE


def path_key(path: str | bytes | os.PathLike) -> bytes:
    """How a photo's path is stored: its absolute path's bytes."""
    return os.fsencode(os.path.abspath(os.fsdecode(path)))


def path_text(key: bytes) -> str:
    return os.fsdecode(key)


def stat_state(path: str | bytes) -> FileState | None:
    """Size and modification time of a regular file; None when it is gone or not a file."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):  # ValueError: a NUL in the name
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return FileState(info.st_size, info.st_mtime_ns)


def file_state(path: str | bytes) -> FileState | None:
    """stat_state with the SHA-256 of the file's bytes; None when it cannot be read.

    Only regular files are opened: a FIFO in a photo's place would block the read forever.
    """
    state = stat_state(path)
    if state is None:
        return None
    try:
        with open(path, "rb") as file:
            digest = hashlib.file_digest(file, "sha256").digest()
    except OSError:
        return None
    return FileState(state.size, state.mtime_ns, digest)
