"""The one way files and folders are written: to a temporary sibling, then renamed over the
target.

A crash, a kill or a full disk leaves either the old file (or folder) or the new one, never half
of one.
"""

from __future__ import annotations

import io
import os
import pathlib
import shutil
import uuid
from collections.abc import Callable


def write_atomically(
    path: str | os.PathLike, data: bytes, *, permissions: int | None = None
) -> pathlib.Path:
    """Replace `path` with `data`; `permissions` (e.g. the old file's mode) else the umask's."""
    path = pathlib.Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    # 0o666 lets the umask decide a new file's permissions, like a plain open() would.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)  # no CRLF on Windows
    descriptor = os.open(temporary, flags, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        if permissions is not None:
            os.chmod(temporary, permissions)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def save_atomically(path: str | os.PathLike, save: Callable[[io.BytesIO], object]) -> pathlib.Path:
    """`save(buffer)` writes the file's bytes (an image's save, np.save, savefig), then as above."""
    buffer = io.BytesIO()
    save(buffer)
    return write_atomically(path, buffer.getvalue())


def write_dir_atomically(
    path: str | os.PathLike, write: Callable[[pathlib.Path], object]
) -> pathlib.Path:
    """Fill a temporary sibling folder with `write(folder)`, then swap it in for `path`: a crash
    or an error in `write` leaves the old folder (or none) in place, never half of a new one."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkdtemp, whose folder only its owner may open: models and exports are made to be shared.
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    temporary.mkdir()
    try:
        write(temporary)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(temporary, path)
            shutil.rmtree(old)
        else:
            os.replace(temporary, path)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return path
