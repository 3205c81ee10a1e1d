"""`captioner-data fetch` against hostile dataset archives, each built here: links that lead out
of --dir (the CVE-2025-4517 symlink chain among them), devices, over-long names, decompression
bombs, lying headers and broken files. Nothing may be written outside --dir, nothing written
inside it before the archive is refused, and every refusal is a one-line error."""

import io
import os
import random
import stat
import tarfile
import tempfile
import zipfile
from collections import namedtuple
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import training.download
import training.fetch
from training.download import ArchiveError, UnsafeArchiveError, extract
from training.fetch import Archive, Dataset

VICTIM = b"the victim's own content"


def tar_of(path, members, mode="w"):
    """`members`: (name, type, data or link target) triples, written in order."""
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = payload
                tar.addfile(info)
            elif kind == tarfile.REGTYPE:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                tar.addfile(info)
    return path


def zip_of(path, members):
    """`members`: (name, data, unix mode) triples."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            archive.writestr(info, data)
    return path


@pytest.fixture
def sandbox(tmp_path):
    """tmp_path with a victim file beside the --dir that the archives must not reach."""
    (tmp_path / "victim.txt").write_bytes(VICTIM)
    (tmp_path / "downloads").mkdir()
    return tmp_path


def fetch_command(sandbox, archive, monkeypatch, capsys, unpacked=10_000_000):
    """Runs `captioner-data fetch` on `archive` given with --archive, as a user with a downloaded
    Flickr30k would; returns (exit status, stderr)."""
    dataset = Dataset(
        "flickr30k",
        (Archive(archive.name, None, archive.stat().st_size, unpacked),),
        (),
        (),
        ("--data", "captions.json"),
    )
    monkeypatch.setitem(training.fetch.DATASETS, "flickr30k", dataset)
    args = ["fetch", "flickr30k", "--dir", str(sandbox / "data"), "--archive", str(archive)]
    code = training.fetch.main([*args, "--no-progress"])
    return code, capsys.readouterr().err


def assert_refused_untouched(sandbox, code, err, match):
    assert code == 1
    assert err.startswith("captioner-data: ") and err.count("\n") == 1, err
    assert match in err, err
    assert (sandbox / "victim.txt").read_bytes() == VICTIM
    assert not (sandbox / "marker.txt").exists()
    assert list((sandbox / "data").iterdir()) == []  # refused before anything was written


def cve_2025_4517_members():
    """The published exploit's shape: 16 one-letter links to 247-letter folders make a path
    longer than os.path.realpath resolves (4,096), so `escape -> a/b/.../p/<long>/..` looks
    inside --dir to tarfile's "data" filter while the kernel resolves it to --dir's parent."""
    long_dir, steps, parent, members = "d" * 247, "abcdefghijklmnop", "", []
    for step in steps:
        members.append((os.path.join(parent, long_dir), tarfile.DIRTYPE, None))
        members.append((os.path.join(parent, step), tarfile.SYMTYPE, long_dir))
        parent = os.path.join(parent, long_dir)
    up = os.path.join(*steps, "l" * 254)
    members += [
        (up, tarfile.SYMTYPE, "../" * len(steps)),
        ("escape", tarfile.SYMTYPE, up + "/.."),
        ("escape/marker.txt", tarfile.REGTYPE, b"written outside --dir"),
        ("inside", tarfile.LNKTYPE, "escape/victim.txt"),
        ("inside", tarfile.REGTYPE, b"overwritten through a hard link"),
    ]
    return members


def test_the_cve_2025_4517_symlink_chain_writes_nothing(sandbox, monkeypatch, capsys):
    archive = tar_of(sandbox / "downloads" / "flickr30k-images.tar.gz", cve_2025_4517_members(),
                     "w:gz")  # fmt: skip
    code, err = fetch_command(sandbox, archive, monkeypatch, capsys)
    assert_refused_untouched(sandbox, code, err, "links are refused")


@pytest.mark.parametrize(
    "link",
    [
        ("flickr30k-images/out", tarfile.SYMTYPE, "../.."),  # a file written through it
        ("flickr30k-images/out", tarfile.SYMTYPE, "/"),
        ("flickr30k-images/out", tarfile.LNKTYPE, "../victim.txt"),  # the file overwritten
    ],
    ids=["relative-symlink", "absolute-symlink", "hard-link"],
)
def test_a_link_and_a_member_through_it_write_nothing(sandbox, monkeypatch, capsys, link):
    name, kind, target = link
    through = f"{name}/marker.txt" if kind == tarfile.SYMTYPE else name
    if target == "/":
        through = f"{name}{sandbox}/marker.txt"
    archive = tar_of(
        sandbox / "downloads" / "flickr30k-images.tar.gz",
        [
            ("flickr30k-images/1.jpg", tarfile.REGTYPE, b"jpg"),
            link,
            (through, tarfile.REGTYPE, b"written through the link"),
        ],
        "w:gz",
    )
    code, err = fetch_command(sandbox, archive, monkeypatch, capsys)
    assert_refused_untouched(sandbox, code, err, "links are refused")


def test_a_link_chain_the_tarfile_filter_catches_is_a_one_line_error(sandbox, monkeypatch, capsys):
    # Each link reads as inside taken literally; `d/l` is --dir, so `escape` is its parent.
    archive = tar_of(
        sandbox / "downloads" / "flickr30k-images.tar.gz",
        [
            ("d", tarfile.DIRTYPE, None),
            ("d/l", tarfile.SYMTYPE, ".."),
            ("escape", tarfile.SYMTYPE, "d/l/.."),
            ("escape/marker.txt", tarfile.REGTYPE, b"outside"),
        ],
        "w:gz",
    )
    code, err = fetch_command(sandbox, archive, monkeypatch, capsys)
    assert_refused_untouched(sandbox, code, err, "links are refused")


@pytest.mark.parametrize(
    "kind, what", [(tarfile.CHRTYPE, "character device"), (tarfile.FIFOTYPE, "FIFO")]
)
def test_a_tar_device_or_fifo_is_a_one_line_error(sandbox, monkeypatch, capsys, kind, what):
    archive = tar_of(
        sandbox / "downloads" / "flickr30k-images.tar.gz",
        [("flickr30k-images/1.jpg", tarfile.REGTYPE, b"jpg"), ("flickr30k-images/dev", kind, None)],
        "w:gz",
    )
    code, err = fetch_command(sandbox, archive, monkeypatch, capsys)
    assert_refused_untouched(sandbox, code, err, what)


@pytest.mark.parametrize(
    "mode, what",
    [(stat.S_IFIFO | 0o644, "FIFO"), (stat.S_IFCHR | 0o644, "character device"),
     (stat.S_IFLNK | 0o777, "symbolic link")],
)  # fmt: skip
def test_a_zip_member_of_another_kind_than_file_is_refused(sandbox, monkeypatch, capsys, mode,
                                                           what):  # fmt: skip
    # zipfile itself would write each of these as a plain file holding the member's data.
    archive = zip_of(
        sandbox / "downloads" / "flickr30k-images.zip",
        [("1.jpg", b"jpg", stat.S_IFREG | 0o644), ("odd", b"../victim.txt", mode)],
    )
    code, err = fetch_command(sandbox, archive, monkeypatch, capsys)
    assert_refused_untouched(sandbox, code, err, what)


@pytest.mark.parametrize(
    "name",
    ["flickr30k-images/" + "x" * 256 + ".jpg", "/".join(["y" * 200] * 21) + "/1.jpg"],
    ids=["name-over-255-bytes", "path-over-4096-bytes"],
)
def test_an_over_long_name_is_a_one_line_error(sandbox, monkeypatch, capsys, name):
    archive = tar_of(
        sandbox / "downloads" / "flickr30k-images.tar.gz",
        [("flickr30k-images/1.jpg", tarfile.REGTYPE, b"jpg"), (name, tarfile.REGTYPE, b"jpg")],
        "w:gz",
    )
    code, err = fetch_command(sandbox, archive, monkeypatch, capsys)
    assert_refused_untouched(sandbox, code, err, "longer than a file system allows")


@pytest.mark.parametrize(
    "name", ["", "./", "C:/Windows/x.jpg", "a\\..\\..\\x.jpg", "/" + "x.jpg", "a/../x.jpg"]
)
def test_odd_names_are_refused_before_anything_is_written(sandbox, name):
    archive = tar_of(
        sandbox / "x.tar",
        [("ok/1.jpg", tarfile.REGTYPE, b"jpg"), (name, tarfile.REGTYPE, b"odd")],
    )
    with pytest.raises(UnsafeArchiveError):
        extract(archive, sandbox / "data")
    assert not (sandbox / "data").exists()


def deflated_zeros_zip(path, size):
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("flickr30k-images/zeros.bin", "w") as member,
    ):
        for _ in range(size >> 20):
            member.write(bytes(1 << 20))
    return path


def gzipped_zeros_tar(path, size):
    class Zeros(io.RawIOBase):
        def __init__(self):
            self.left = size

        def readable(self):
            return True

        def readinto(self, buffer):
            count = min(len(buffer), self.left)
            buffer[:count] = bytes(count)
            self.left -= count
            return count

    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo("flickr30k-images/zeros.bin")
        info.size = size
        tar.addfile(info, io.BufferedReader(Zeros()))
    return path


@pytest.mark.parametrize(
    "name, build",
    [("flickr30k-images.zip", deflated_zeros_zip), ("flickr30k-images.tar.gz", gzipped_zeros_tar)],
)
def test_a_decompression_bomb_is_refused_before_writing(sandbox, monkeypatch, capsys, name, build):
    archive = build(sandbox / "downloads" / name, 64 << 20)
    assert archive.stat().st_size < 1 << 20  # 64 MB of zeros in well under 1 MB
    # The table expects 1 MB unpacked from this archive: the bound is twice that.
    code, err = fetch_command(sandbox, archive, monkeypatch, capsys, unpacked=1 << 20)
    assert_refused_untouched(sandbox, code, err, "far more than the 2,097,152 bytes expected")
    archive.unlink()


def test_an_archive_of_many_empty_files_is_refused_as_soon_as_the_bound_is_passed(sandbox):
    # Each empty file takes a disk block: 400 of them are 1.6 MB where 1 MB is expected. The
    # .tar.gz is cut short in a last, incompressible member: the list is refused as a bomb
    # before that is reached.
    noise = random.Random(0).randbytes(100_000)
    archive = tar_of(
        sandbox / "empty.tar.gz",
        [(f"p/{i}.jpg", tarfile.REGTYPE, b"") for i in range(400)]
        + [("p/last.jpg", tarfile.REGTYPE, noise)],
        "w:gz",
    )
    archive.write_bytes(archive.read_bytes()[: -len(noise) // 2])
    with pytest.raises(UnsafeArchiveError, match="expected of it: refused before unpacking"):
        extract(archive, sandbox / "data", max_size=1 << 20)
    assert not (sandbox / "data").exists()


def test_an_archive_larger_than_the_free_disk_is_refused_before_writing(sandbox, monkeypatch):
    archive = zip_of(
        sandbox / "photos.zip", [(f"p/{i}.jpg", bytes(8000), 0o100644) for i in range(8)]
    )
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(training.download.shutil, "disk_usage", lambda path: usage(1e12, 0, 50_000))
    with pytest.raises(ArchiveError, match="unpacks to 65,536 bytes but the disk .* 50,000 free"):
        extract(archive, sandbox / "data")
    assert not (sandbox / "data").exists()


def patch_uint32(data, at, value):
    data[at : at + 4] = value.to_bytes(4, "little")


def test_a_zip_that_lies_about_a_size_is_refused_and_the_partial_file_removed(sandbox):
    real, declared = 3 << 20, 2 << 20
    archive = sandbox / "photos.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zip_file:
        zip_file.writestr("p/ok.jpg", b"jpg")
        zip_file.writestr("p/big.bin", bytes(real))
    data = bytearray(archive.read_bytes())
    local = data.find(b"PK\x03\x04", 1)  # the second member's local header
    central = data.rfind(b"PK\x01\x02")  # and its central directory entry
    assert int.from_bytes(data[local + 22 : local + 26], "little") == real
    assert int.from_bytes(data[central + 24 : central + 28], "little") == real
    patch_uint32(data, local + 22, declared)
    patch_uint32(data, central + 24, declared)
    archive.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="damaged or truncated"):
        extract(archive, sandbox / "data")
    assert [p for p in (sandbox / "data").rglob("*") if p.is_file()] == []


def test_a_zip_with_a_bad_crc_is_a_one_line_error(sandbox, monkeypatch, capsys):
    archive = sandbox / "downloads" / "flickr30k-images.zip"
    zip_of(archive, [("1.jpg", b"jpg" * 1000, 0o100644)])
    data = bytearray(archive.read_bytes())
    data[data.find(b"jpg" * 100) + 10] ^= 0xFF
    archive.write_bytes(bytes(data))
    code, err = fetch_command(sandbox, archive, monkeypatch, capsys)
    assert_refused_untouched(sandbox, code, err, "Bad CRC-32")


def test_a_zip_with_a_bad_central_directory_is_a_one_line_error(sandbox, monkeypatch, capsys):
    archive = sandbox / "downloads" / "flickr30k-images.zip"
    zip_of(archive, [("1.jpg", b"jpg", 0o100644)])
    data = bytearray(archive.read_bytes())
    central = data.find(b"PK\x01\x02")
    data[central : central + 4] = b"XXXX"
    archive.write_bytes(bytes(data))
    assert zipfile.is_zipfile(archive)  # its end record still says zip
    code, err = fetch_command(sandbox, archive, monkeypatch, capsys)
    assert_refused_untouched(sandbox, code, err, "damaged or truncated")


@pytest.mark.parametrize("name", ["flickr30k-images.tar.gz", "flickr30k-images.tar"])
def test_a_truncated_tar_is_a_one_line_error(sandbox, monkeypatch, capsys, name):
    noise = random.Random(0).randbytes(200_000)  # incompressible: the .gz is long too
    archive = sandbox / "downloads" / name
    tar_of(archive, [("flickr30k-images/1.jpg", tarfile.REGTYPE, noise)],
           "w:gz" if name.endswith(".gz") else "w")  # fmt: skip
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    code, err = fetch_command(sandbox, archive, monkeypatch, capsys)
    assert code == 1 and err.startswith("captioner-data: ") and err.count("\n") == 1, err
    assert "damaged or truncated" in err
    assert [p for p in (sandbox / "data").rglob("*") if p.is_file()] == []


def test_links_already_in_the_folder_are_replaced_not_written_through(sandbox):
    folder = sandbox / "data"
    (folder / "photos").mkdir(parents=True)
    os.symlink(sandbox / "victim.txt", folder / "photos" / "1.jpg")
    os.link(sandbox / "victim.txt", folder / "photos" / "2.jpg")
    archive = zip_of(
        sandbox / "photos.zip",
        [("photos/1.jpg", b"one", 0o100644), ("photos/2.jpg", b"two", 0o100644)],
    )
    extract(archive, folder)
    assert (sandbox / "victim.txt").read_bytes() == VICTIM
    assert not (folder / "photos" / "1.jpg").is_symlink()
    assert (folder / "photos" / "1.jpg").read_bytes() == b"one"
    assert (folder / "photos" / "2.jpg").read_bytes() == b"two"


def test_a_folder_already_in_place_as_a_link_is_not_unpacked_through(sandbox):
    elsewhere, folder = sandbox / "elsewhere", sandbox / "data"
    elsewhere.mkdir()
    folder.mkdir()
    (folder / "photos").symlink_to(elsewhere)
    archive = zip_of(sandbox / "photos.zip", [("photos/1.jpg", b"one", 0o100644)])
    with pytest.raises(UnsafeArchiveError, match="photos is a symbolic link"):
        extract(archive, folder)
    assert list(elsewhere.iterdir()) == []


def test_a_member_named_like_the_archive_in_the_folder_does_not_replace_it(sandbox):
    folder = sandbox / "data"
    folder.mkdir()
    archive = zip_of(
        folder / "photos.zip", [("p/1.jpg", b"one", 0o100644), ("photos.zip", b"gone", 0o100644)]
    )
    content = archive.read_bytes()
    with pytest.raises(UnsafeArchiveError, match="would overwrite the archive itself"):
        extract(archive, folder)
    assert archive.read_bytes() == content
    assert sorted(p.name for p in folder.rglob("*")) == ["photos.zip"]  # p/1.jpg removed


def test_an_ordinary_tar_and_zip_unpack_and_unpack_again(sandbox):
    tar = tar_of(
        sandbox / "photos.tar.gz",
        [("./flickr30k-images", tarfile.DIRTYPE, None),
         ("./flickr30k-images/1.jpg", tarfile.REGTYPE, b"one"),
         ("flickr30k-images/sub/2.jpg", tarfile.REGTYPE, b"two")],
        "w:gz",
    )  # fmt: skip
    photos = zip_of(
        sandbox / "photos.zip",
        [("train/", b"", 0o40755), ("train/3.jpg", b"three", 0), ("__MACOSX/._3.jpg", b"", 0)],
    )
    folder = sandbox / "data"
    for _ in range(2):  # again over the files the first time wrote
        extract(tar, folder)
        extract(photos, folder)
    assert (folder / "flickr30k-images" / "1.jpg").read_bytes() == b"one"
    assert (folder / "flickr30k-images" / "sub" / "2.jpg").read_bytes() == b"two"
    assert (folder / "train" / "3.jpg").read_bytes() == b"three"
    assert not (folder / "__MACOSX").exists()


# The fuzz: random member lists as real tar and zip files, unpacked into an empty --dir beside
# a victim file. "{SANDBOX}" stands for the sandbox's absolute path. Half the lists hold only
# plain files and folders with plain names, so that the writing is fuzzed too (a name both a
# file and a folder, the same name twice, a victim's name).
PLAIN_STEPS = ["a", "b", "victim.txt", "data", "."]
HOSTILE_STEPS = ["..", "", "\\", "C:", "..\\..", "x" * 256, "{SANDBOX}"]
KINDS = ["file", "dir", "symlink", "hardlink", "fifo", "chardev"]
TAR_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "chardev": tarfile.CHRTYPE,
}
ZIP_MODES = {"file": stat.S_IFREG, "dir": stat.S_IFDIR, "symlink": stat.S_IFLNK,
             "hardlink": stat.S_IFREG, "fifo": stat.S_IFIFO, "chardev": stat.S_IFCHR}  # fmt: skip


def paths(leads, steps):
    return st.builds(
        lambda lead, parts: lead + "/".join(parts),
        st.sampled_from(leads),
        st.lists(st.sampled_from(steps), min_size=1, max_size=4),
    )


plain_members = st.tuples(
    paths(["", "./"], PLAIN_STEPS), st.sampled_from(["file", "dir"]), st.just(""), st.binary()
)
any_members = st.tuples(
    paths(["", "/", "./", "{SANDBOX}/"], PLAIN_STEPS + HOSTILE_STEPS),
    st.sampled_from(KINDS),
    paths(["", "/", "{SANDBOX}/"], PLAIN_STEPS + HOSTILE_STEPS),
    st.binary(max_size=64),
)
member_lists = st.one_of(
    st.lists(plain_members, max_size=8),
    st.lists(st.one_of(plain_members, any_members), max_size=8),
)


def snapshot(root, skip):
    """Every entry under `root` but `skip`: its kind and its content or link target."""
    seen = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if Path(folder, d) != skip]
        for name in dirs + files:
            path = Path(folder, name)
            mode = path.lstat().st_mode
            content = (
                os.readlink(path) if stat.S_ISLNK(mode)
                else path.read_bytes() if stat.S_ISREG(mode) else None
            )  # fmt: skip
            seen[path] = (stat.S_IFMT(mode), content)
    return seen


@pytest.mark.filterwarnings("ignore:Duplicate name")  # zipfile's, on writing the same name twice
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(members=member_lists)
def test_fuzz_no_member_list_writes_outside_the_folder_or_makes_a_link(tmp_path_factory, members):
    with tempfile.TemporaryDirectory(dir=tmp_path_factory.getbasetemp()) as name:
        sandbox = Path(name)
        (sandbox / "victim.txt").write_bytes(VICTIM)
        (sandbox / "keep").mkdir()
        members = [
            (path.replace("{SANDBOX}", name), kind, target.replace("{SANDBOX}", name), data)
            for path, kind, target, data in members
        ]
        tar = sandbox / "fuzz.tar"
        with tarfile.open(tar, "w", format=tarfile.PAX_FORMAT) as archive:
            for path, kind, target, data in members:
                info = tarfile.TarInfo(path)
                info.type, info.linkname = TAR_TYPES[kind], target
                info.size = len(data) if kind == "file" else 0
                archive.addfile(info, io.BytesIO(data) if kind == "file" else None)
        with zipfile.ZipFile(sandbox / "fuzz.zip", "w") as archive:
            for path, kind, target, data in members:
                info = zipfile.ZipInfo(path)
                info.external_attr = (ZIP_MODES[kind] | 0o644) << 16
                archive.writestr(info, target if kind == "symlink" else data)
        for archive in (tar, sandbox / "fuzz.zip"):
            folder = sandbox / f"data-{archive.suffix[1:]}"
            folder.mkdir()
            before = snapshot(sandbox, folder)
            try:
                extract(archive, folder)
                event("unpacked")
            except ArchiveError as error:  # any other exception fails the test
                event(type(error).__name__)
            assert snapshot(sandbox, folder) == before
            for entry in folder.rglob("*"):
                kind = stat.S_IFMT(entry.lstat().st_mode)
                assert kind in (stat.S_IFREG, stat.S_IFDIR), entry
