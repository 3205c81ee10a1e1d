"""The one way files are written: to a temporary sibling, flushed, then renamed over the target.

A crash, a kill or a full disk leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import io
import os
import pathlib
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
