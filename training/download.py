"""Downloading and unpacking dataset archives: resumable, verified, and unable to write outside
the folder they are unpacked into.

An archive unpacks only plain files and folders: every member is checked before anything is
written (links, devices, absolute names, `..` steps and declared sizes far beyond the dataset's
are refused), and each file is written by this module, created below folders opened without
following links, so nothing rests on the Python version's own tarfile or zipfile checks.

A download goes to `NAME.part` and takes its final name only once its size (and checksum, where
one is known) is verified, so a file under its final name is a finished, verified archive. An
interrupted download continues from the `.part` file's size with an HTTP Range request; a server
that ignores the Range starts the file again.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import lzma
import os
import re
import shutil
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

_CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(\d+|\*)")
# The folder macOS zip tools add beside the real files; never part of a dataset.
_MACOS_METADATA = "__MACOSX"


class DownloadError(Exception):
    """A download that failed or did not verify; the message says what to do."""


class ArchiveError(Exception):
    """An archive that cannot be unpacked: broken, too large for the disk, or unsafe."""


class UnsafeArchiveError(ArchiveError):
    """An archive member that is not a plain file or folder inside the folder it is unpacked
    into, or an archive that declares far more than it is expected to unpack to."""


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


# Errors the zip, tar and decompression modules raise while reading a broken or truncated archive
# (OSError: gzip's BadGzipFile, bz2's invalid data; NotImplementedError: an unknown compression).
_READ_ERRORS = (
    zipfile.BadZipFile,
    tarfile.TarError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    OSError,
    NotImplementedError,
)
_NAME_MAX = 255  # bytes in one file or folder name, on Linux and macOS
_PATH_MAX = 4096  # bytes in a whole path
# The least a file or folder takes on disk: counted per member, an archive of a million empty
# files costs what it costs on disk, not nothing.
_BLOCK = 4096
_KINDS = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


@dataclass(frozen=True)
class _Member:
    parts: tuple[str, ...]  # its path below the folder, without empty or "." steps
    is_dir: bool
    size: int  # bytes, as the archive declares them
    source: zipfile.ZipInfo | tarfile.TarInfo


def extract(archive: Path, folder: Path, *, max_size: int | None = None) -> None:
    """Unpack a .zip or .tar(.gz) archive into `folder`: only plain files and folders.

    Every member is checked before anything is written: a link of any kind, a device, a FIFO,
    an absolute name, a `..` step, a drive letter, a backslash or a name too long raises
    UnsafeArchiveError, and so does an archive that declares more than `max_size` bytes
    unpacked; one larger than the free disk space, or broken, raises ArchiveError. Files are
    written without following links: a link already in `folder` where a file goes is replaced,
    never written through, and one where a folder goes is refused. Whatever a failed unpacking
    wrote is removed.
    """
    with contextlib.ExitStack() as stack:
        with _reading(archive):
            if zipfile.is_zipfile(archive):
                zip_file = stack.enter_context(zipfile.ZipFile(archive))
                members, needed = _listed(archive, zip_file.infolist(), _zip_member, max_size)
                open_member = zip_file.open
            elif tarfile.is_tarfile(archive):
                tar = stack.enter_context(tarfile.open(archive))
                # The whole list first (a second pass through a .tar.gz): nothing is written
                # before the last member is checked.
                members, needed = _listed(archive, tar, _tar_member, max_size)
                open_member = tar.extractfile
            else:
                raise ArchiveError(f"{archive.name} is neither a zip nor a tar archive")
        _check_layout(archive, members)
        _check_space(archive, folder, needed)
        _unpack(archive, folder, members, open_member)


@contextlib.contextmanager
def _reading(archive: Path):
    try:
        yield
    except _READ_ERRORS as error:
        raise ArchiveError(f"{archive.name} is damaged or truncated ({error})") from error


def _zip_member(archive: Path, info: zipfile.ZipInfo) -> _Member | None:
    parts = _parts(archive, info.filename)
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        # zipfile would write a link as a file holding its target: refuse it instead.
        raise UnsafeArchiveError(
            f"{archive.name}: {_shown(info.filename)} is {_KINDS.get(kind, 'of an unknown type')}"
            "; a dataset archive holds only files and folders"
        )
    if info.flag_bits & 0x1:
        raise ArchiveError(f"{archive.name}: {_shown(info.filename)} is encrypted")
    is_dir = info.filename.endswith("/") or kind == stat.S_IFDIR
    return _member(archive, parts, is_dir, info.file_size, info)


def _tar_member(archive: Path, info: tarfile.TarInfo) -> _Member | None:
    parts = _parts(archive, info.name)
    if info.issym() or info.islnk():
        raise UnsafeArchiveError(
            f"{archive.name}: {_shown(info.name)} links to {_shown(info.linkname)}; links are "
            "refused, a dataset archive holds none"
        )
    if not (info.isreg() or info.isdir()):
        kind = (
            "a character device" if info.ischr() else "a block device" if info.isblk()
            else "a FIFO" if info.isfifo() else "of an unknown type"
        )  # fmt: skip
        raise UnsafeArchiveError(
            f"{archive.name}: {_shown(info.name)} is {kind}; a dataset archive holds only files "
            "and folders"
        )
    return _member(archive, parts, info.isdir(), info.size, info)


def _member(
    archive: Path,
    parts: tuple[str, ...] | None,
    is_dir: bool,
    size: int,
    source: zipfile.ZipInfo | tarfile.TarInfo,
) -> _Member | None:
    if parts is None:
        return None
    if not parts and not is_dir:
        raise UnsafeArchiveError(f"{archive.name}: a file member has an empty name")
    return _Member(parts, is_dir, 0 if is_dir else size, source)


def _parts(archive: Path, name: str) -> tuple[str, ...] | None:
    """The steps of a member's path below the folder; None for macOS metadata, never unpacked.

    Refuses what could name a place outside the folder, here or on another system, rather
    than reading it charitably.
    """

    def refuse(why: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(f"{archive.name}: member {_shown(name)} {why}")

    if "\0" in name:
        raise refuse("holds a NUL character")
    if "\\" in name:
        raise refuse("holds a backslash, a folder separator on Windows")
    if name.startswith("/"):
        raise refuse("is an absolute path, outside the folder it unpacks into")
    if re.match(r"[A-Za-z]:", name):
        raise refuse("starts with a drive letter, outside the folder it unpacks into")
    parts = tuple(step for step in name.split("/") if step not in ("", "."))
    if ".." in parts:
        raise refuse("has a '..' step, which could lead outside the folder it unpacks into")
    if len(os.fsencode(name)) > _PATH_MAX or any(
        len(os.fsencode(step)) > _NAME_MAX for step in parts
    ):
        raise refuse(
            f"is longer than a file system allows ({_NAME_MAX} bytes a name, {_PATH_MAX:,} a path)"
        )
    return None if parts[:1] == (_MACOS_METADATA,) else parts


def _shown(name: str) -> str:
    """A member name fit for a one-line message."""
    if len(name) > 100:
        return repr(name[:100]) + "..."
    return name if name.isprintable() else repr(name)


def _check_layout(archive: Path, members: list[_Member]) -> None:
    files = {m.parts for m in members if not m.is_dir}
    for member in members:
        for end in range(1, len(member.parts) + member.is_dir):
            if member.parts[:end] in files:
                raise ArchiveError(
                    f"{archive.name}: {_shown('/'.join(member.parts[:end]))} is both a file and "
                    "a folder"
                )


def _listed(archive: Path, infos, to_member, max_size: int | None) -> tuple[list[_Member], int]:
    """The checked members to unpack, and the bytes they take on disk. A bomb is refused as soon
    as the running total passes `max_size`: a tar's list is read as it goes, so one of a
    million empty members stops early, not once all are in memory."""
    members, needed = [], 0
    for info in infos:
        member = to_member(archive, info)
        if member is None or not member.parts:  # macOS metadata, or the folder itself
            continue
        members.append(member)
        needed += max(1, -(-member.size // _BLOCK)) * _BLOCK
        if max_size is not None and needed > max_size:
            raise UnsafeArchiveError(
                f"{archive.name} would unpack to more than {needed:,} bytes, far more than the "
                f"{max_size:,} bytes expected of it: refused before unpacking"
            )
    return members, needed


def _check_space(archive: Path, folder: Path, needed: int) -> None:
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if needed > free:
        raise ArchiveError(
            f"{archive.name} unpacks to {needed:,} bytes but the disk holding {folder} has "
            f"{free:,} free: free some space or unpack it on a larger disk"
        )


def _unpack(archive: Path, folder: Path, members: list[_Member], open_member) -> None:
    """Write the checked members; on any failure remove what was written, and raise."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        archive_stat = archive.stat()
        root = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        raise ArchiveError(f"cannot unpack {archive.name} into {folder}: {error}") from error
    made_files: list[tuple[str, ...]] = []
    made_dirs: list[tuple[str, ...]] = []
    parent, parent_fd = None, None
    try:
        for member in members:
            where = member.parts if member.is_dir else member.parts[:-1]
            if where != parent:  # members come folder by folder: keep the last one open
                if parent_fd is not None:
                    os.close(parent_fd)
                    parent_fd = None
                parent_fd, parent = _folder(archive, root, where, made_dirs), where
            if not member.is_dir:
                _write_file(archive, parent_fd, member, open_member, archive_stat, made_files)
    except BaseException:
        _remove(root, made_files, made_dirs)
        raise
    finally:
        if parent_fd is not None:
            os.close(parent_fd)
        os.close(root)


def _folder(archive: Path, root: int, parts: tuple[str, ...], made: list) -> int:
    try:
        return _walk(root, parts, made)
    except OSError as error:
        path = error.filename  # the step that failed, as _walk names it
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            with contextlib.suppress(OSError):
                if stat.S_ISLNK(os.stat(path, dir_fd=root, follow_symlinks=False).st_mode):
                    raise UnsafeArchiveError(
                        f"cannot unpack {archive.name}: {_shown(path)} is a symbolic link, and "
                        "nothing is unpacked through a link"
                    ) from error
            raise ArchiveError(
                f"cannot unpack {archive.name}: {_shown(path)} is a file where a folder is needed"
            ) from error
        raise ArchiveError(
            f"cannot unpack {archive.name}: {_shown(path)}: {error.strerror}"
        ) from error


def _write_file(
    archive: Path,
    parent_fd: int,
    member: _Member,
    open_member,
    archive_stat: os.stat_result,
    made: list[tuple[str, ...]],
) -> None:
    path = _shown("/".join(member.parts))
    with _reading(archive):
        source = open_member(member.source)
    try:
        with source:
            fd = _create(archive, parent_fd, member.parts[-1], archive_stat)
            made.append(member.parts)
            with open(fd, "wb") as out:
                copied = 0
                while True:
                    with _reading(archive):
                        chunk = source.read(_CHUNK)
                    if not chunk:
                        break
                    # zipfile and tarfile stop at the declared size today; counting here keeps
                    # the size check from resting on that.
                    copied += len(chunk)
                    if copied > member.size:
                        raise UnsafeArchiveError(
                            f"{archive.name}: {path} holds more than the {member.size:,} bytes "
                            "its header declares"
                        )
                    out.write(chunk)
    except OSError as error:
        raise ArchiveError(f"cannot unpack {archive.name}: {path}: {error.strerror}") from error


def _create(archive: Path, parent_fd: int, name: str, archive_stat: os.stat_result) -> int:
    """A new, empty file `name`, created without following a link."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(name, flags, 0o644, dir_fd=parent_fd)
    except FileExistsError:
        pass
    existing = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    if os.path.samestat(existing, archive_stat):
        raise UnsafeArchiveError(f"{archive.name}: a member would overwrite the archive itself")
    if stat.S_ISDIR(existing.st_mode):
        raise ArchiveError(f"{archive.name}: {_shown(name)} is a folder already")
    # Unlinked, not truncated: a symbolic or hard link left here is replaced, never written
    # through.
    os.unlink(name, dir_fd=parent_fd)
    return os.open(name, flags, 0o644, dir_fd=parent_fd)


def _remove(root: int, files: list[tuple[str, ...]], dirs: list[tuple[str, ...]]) -> None:
    """Remove the files and the (then empty) folders an unpacking made, as far as it can."""
    for parts in files:
        with contextlib.suppress(OSError):
            fd = _walk(root, parts[:-1])
            try:
                os.unlink(parts[-1], dir_fd=fd)
            finally:
                os.close(fd)
    for parts in reversed(dirs):
        with contextlib.suppress(OSError):
            fd = _walk(root, parts[:-1])
            try:
                os.rmdir(parts[-1], dir_fd=fd)
            finally:
                os.close(fd)


def _walk(root: int, parts: tuple[str, ...], made: list | None = None) -> int:
    """Open the folder `parts` below `root` without following a link; with `made`, make the
    folders missing and add them to it. An OSError names the path below `root` that failed."""
    fd = os.dup(root)
    try:
        for end, step in enumerate(parts, 1):
            try:
                if made is not None:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(step, 0o755, dir_fd=fd)
                        made.append(parts[:end])
                inner = os.open(
                    step, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
                )
            except OSError as error:
                error.filename = "/".join(parts[:end])
                raise
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd
