"""Downloading and unpacking dataset archives: resumable, verified, and unable to write outside
the folder they are unpacked into.

A download goes to `NAME.part` and takes its final name only once its size (and checksum, where
one is known) is verified, so a file under its final name is a finished, verified archive. An
interrupted download continues from the `.part` file's size with an HTTP Range request; a server
that ignores the Range starts the file again.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tqdm import tqdm

_CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(\d+|\*)")
# The folder macOS zip tools add beside the real files; never part of a dataset.
_MACOS_METADATA = "__MACOSX"


class DownloadError(Exception):
    """A download that failed or did not verify; the message says what to do."""


class UnsafeArchiveError(Exception):
    """An archive member that would land outside the folder it is unpacked into."""


def download(
    url: str,
    target: Path,
    *,
    size: int | None = None,
    sha256: str | None = None,
    progress: bool = True,
) -> Path:
    """Fetch `url` to `target`, continuing `target.part` where an earlier try stopped.

    `size` and `sha256`, where known, are checked; without them the size the server announced
    is. A file that fails its check is deleted, never kept under `target`'s name.
    """
    part = target.with_name(target.name + ".part")
    done = part.stat().st_size if part.exists() else 0
    if size is not None and done > size:  # not the file we expect: start again
        part.unlink()
        done = 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as error:
        if error.code == 416 and done:  # nothing after `done`: the .part may be whole
            return _finish(part, target, done, size, sha256)
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from error
    except urllib.error.URLError as error:
        raise DownloadError(f"{url}: {error.reason}") from error
    with response:
        resumed = response.status == 206
        if resumed and _range_start(response) != done:
            part.unlink()
            raise DownloadError(f"{url}: the server sent another part of the file than asked for")
        if not resumed:
            done = 0  # the server sent the whole file
        length = response.headers.get("Content-Length")
        announced = done + int(length) if length is not None else None
        with (
            part.open("ab" if resumed else "wb") as file,
            tqdm.wrapattr(
                file, "write", total=announced, initial=done, desc=target.name,
                unit="B", unit_scale=True, disable=not progress,
            ) as out,
        ):  # fmt: skip
            try:
                shutil.copyfileobj(response, out, _CHUNK)
            except (OSError, http.client.HTTPException) as error:  # a cut connection
                raise DownloadError(
                    f"{url}: the download stopped after {part.stat().st_size:,} bytes ({error}); "
                    "run the command again to continue it"
                ) from error
    return _finish(part, target, announced, size, sha256)


def _range_start(response) -> int | None:
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _finish(
    part: Path, target: Path, announced: int | None, size: int | None, sha256: str | None
) -> Path:
    """Give the verified `.part` its final name; delete it if it does not verify."""
    expected = size if size is not None else announced
    got = part.stat().st_size
    if expected is not None and got != expected:
        if got < expected:
            raise DownloadError(
                f"{target.name}: the download stopped at {got:,} of {expected:,} bytes; run the "
                "command again to continue it"
            )
        part.unlink()
        raise DownloadError(f"{target.name}: {got:,} bytes where {expected:,} were expected")
    if sha256 is not None:
        digest = file_sha256(part)
        if digest != sha256:
            part.unlink()
            raise DownloadError(
                f"{target.name}: SHA-256 {digest} where {sha256} was expected; the download was "
                "deleted (run the command again to fetch it afresh)"
            )
    os.replace(part, target)
    return target


def file_sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def extract(archive: Path, folder: Path) -> None:
    """Unpack a .zip or .tar(.gz) archive into `folder`.

    A member with an absolute path or a `..` step, or a link to outside `folder`, raises
    UnsafeArchiveError before it is written (a zip's members are all checked before any is).
    """
    if zipfile.is_zipfile(archive):
        _extract_zip(archive, folder)
    elif tarfile.is_tarfile(archive):
        _extract_tar(archive, folder)
    else:
        raise UnsafeArchiveError(f"{archive.name} is neither a zip nor a tar archive")


def _extract_zip(archive: Path, folder: Path) -> None:
    with zipfile.ZipFile(archive) as zip_file:
        members = [m for m in zip_file.infolist() if not _skipped(m.filename)]
        for member in members:
            _check_name(archive, member.filename)
            if stat.S_ISLNK(member.external_attr >> 16):
                # zipfile would write a link as a file holding its target: refuse it instead.
                raise UnsafeArchiveError(f"{archive.name}: {member.filename} is a symbolic link")
        zip_file.extractall(folder, members)


def _extract_tar(archive: Path, folder: Path) -> None:
    with tarfile.open(archive) as tar:
        for member in tar:
            if _skipped(member.name):
                continue
            _check_name(archive, member.name)
            if member.issym() or member.islnk():
                # A symlink's target is relative to its folder; a hard link's to the archive root.
                base = PurePosixPath(member.name).parent if member.issym() else PurePosixPath()
                _check_name(archive, str(base / member.linkname), link=member.name)
            # The "data" filter refuses the same again, and device files and odd permissions.
            tar.extract(member, folder, filter="data")


def _skipped(name: str) -> bool:
    return PurePosixPath(name).parts[:1] == (_MACOS_METADATA,)


def _check_name(archive: Path, name: str, link: str | None = None) -> None:
    """Refuse a member path (or a link's target) that is absolute or climbs out with `..`."""
    path = PurePosixPath(name.replace("\\", "/"))
    depth = 0
    for step in path.parts if not path.is_absolute() else ():
        depth += -1 if step == ".." else 0 if step == "." else 1
        if depth < 0:
            break
    if path.is_absolute() or depth < 0 or re.match(r"[A-Za-z]:", name):
        what = f"{link} links to {name}" if link else f"member {name}"
        raise UnsafeArchiveError(f"{archive.name}: {what}, outside the folder it unpacks into")
