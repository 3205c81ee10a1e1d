"""captioner-data fetch against a loopback HTTP server serving small archives built here."""

import dataclasses
import hashlib
import io
import json
import shlex
import tarfile
import threading
import zipfile
from collections import namedtuple
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

import training.fetch
from training.download import DownloadError, UnsafeArchiveError, download, extract
from training.fetch import Archive, CaptionFile, Dataset, FetchError, PhotoFolder, fetch
from training.train import main as train_main


class ArchiveServer:
    """Serves `files` by name; `ranges` False ignores Range headers, `wrong_start` N answers a
    Range with the bytes from N on, `cut_after` N closes the connection after N bytes of a body.
    `requests` records (path, Range header) pairs."""

    def __init__(self, files):
        self.files, self.ranges, self.cut_after, self.requests = files, True, None, []
        self.wrong_start = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/")
                server.requests.append((name, self.headers.get("Range")))
                if name not in server.files:
                    self.send_error(404)
                    return
                data, start = server.files[name], 0
                wanted = self.headers.get("Range")
                if wanted and server.ranges:
                    start = int(wanted.removeprefix("bytes=").rstrip("-"))
                    start = start if server.wrong_start is None else server.wrong_start
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if server.cut_after is not None:
                    body = body[: server.cut_after]
                    self.close_connection = True
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def jpeg(color):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buffer, "JPEG")
    return buffer.getvalue()


def zip_of(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


TRAIN = [f"COCO_train2014_{i:012d}.jpg" for i in range(4)]
VAL = [f"COCO_val2014_{i:012d}.jpg" for i in range(2)]
WORDS = ["a red square", "a blue circle", "a green star", "a red circle", "a blue square"]


def karpathy_json():
    images = [
        {"filepath": folder, "filename": name, "cocoid": number, "split": split,
         "sentences": [{"raw": WORDS[(number + k) % 5]} for k in range(2)]}
        for number, (folder, name, split) in enumerate(
            [("train2014", n, "train") for n in TRAIN]
            + [("val2014", n, s) for n, s in zip(VAL, ("val", "test"), strict=True)]
        )
    ]  # fmt: skip
    return json.dumps({"images": images, "dataset": "coco"}).encode()


Tiny = namedtuple("Tiny", "dataset files")


def photos_zip(folder, names):
    colors = ["red", "blue", "green", "white"]
    return zip_of({f"{folder}/{name}": jpeg(colors[i % 4]) for i, name in enumerate(names)})


def tiny_dataset(base_url, *, train_photos=TRAIN):
    """A coco2014-karpathy in miniature: two photo zips and the Karpathy caption file."""
    files = {
        "train2014.zip": photos_zip("train2014", train_photos),
        "val2014.zip": photos_zip("val2014", VAL),
        "caption_datasets.zip": zip_of({"dataset_coco.json": karpathy_json()}),
    }
    archives = tuple(
        Archive(name, f"{base_url}/{name}", len(data), 10 * len(data),
                hashlib.sha256(data).hexdigest() if name != "caption_datasets.zip" else None)
        for name, data in files.items()
    )  # fmt: skip
    dataset = Dataset(
        "coco2014-karpathy",
        archives,
        (PhotoFolder("train2014", len(TRAIN)), PhotoFolder("val2014", len(VAL))),
        (CaptionFile("dataset_coco.json", ".", len(TRAIN) + len(VAL), 2 * (len(TRAIN) + 2)),),
        ("--data", "dataset_coco.json", "--images", "."),
    )
    return Tiny(dataset, files)


@pytest.fixture
def served():
    with ArchiveServer({}) as server:
        tiny = tiny_dataset(server.url)
        server.files.update(tiny.files)
        yield server, tiny


def test_an_interrupted_download_resumes_from_the_part_file(served, tmp_path):
    server, tiny = served
    archive = tiny.dataset.archives[0]
    data = tiny.files[archive.name]
    server.cut_after = 1000
    with pytest.raises(DownloadError, match="run the command again to continue it"):
        download(archive.url, tmp_path / archive.name, size=archive.size, sha256=archive.sha256,
                 progress=False)  # fmt: skip
    part = tmp_path / f"{archive.name}.part"
    assert part.stat().st_size == 1000 and not (tmp_path / archive.name).exists()

    server.cut_after = None
    download(archive.url, tmp_path / archive.name, size=archive.size, sha256=archive.sha256,
             progress=False)  # fmt: skip
    assert server.requests[-1] == (archive.name, "bytes=1000-")
    assert (tmp_path / archive.name).read_bytes() == data
    assert not part.exists()


def test_a_server_that_ignores_range_restarts_the_file_cleanly(served, tmp_path):
    server, tiny = served
    archive = tiny.dataset.archives[0]
    (tmp_path / f"{archive.name}.part").write_bytes(tiny.files[archive.name][:1000])
    server.ranges = False
    download(archive.url, tmp_path / archive.name, size=archive.size, sha256=archive.sha256,
             progress=False)  # fmt: skip
    assert server.requests[-1] == (archive.name, "bytes=1000-")  # asked, answered with 200
    assert (tmp_path / archive.name).read_bytes() == tiny.files[archive.name]


def test_a_range_answered_from_elsewhere_is_refused_and_not_kept(served, tmp_path):
    server, tiny = served
    archive = tiny.dataset.archives[2]  # no checksum: only the size would catch it
    (tmp_path / f"{archive.name}.part").write_bytes(tiny.files[archive.name][:100])
    server.wrong_start = 50
    with pytest.raises(DownloadError, match="another part of the file than asked for"):
        download(archive.url, tmp_path / archive.name, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_bad_checksum_is_refused_and_not_kept(served, tmp_path):
    server, tiny = served
    archive = tiny.dataset.archives[0]
    with pytest.raises(DownloadError, match="SHA-256 .* where 0+ was expected"):
        download(archive.url, tmp_path / archive.name, size=archive.size, sha256="0" * 64,
                 progress=False)  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def traversal_zip(name):
    return zip_of({"train2014/ok.jpg": b"x", name: b"owned"})


@pytest.mark.parametrize("name", ["../escaped.txt", "/tmp/escaped.txt", "a/../../escaped.txt"])
def test_a_zip_member_outside_the_folder_is_refused_and_nothing_written(tmp_path, name):
    archive, folder = tmp_path / "bad.zip", tmp_path / "data"
    archive.write_bytes(traversal_zip(name))
    folder.mkdir()
    with pytest.raises(UnsafeArchiveError, match="outside the folder"):
        extract(archive, folder)
    assert list(folder.iterdir()) == []  # checked before any member is written
    assert not (tmp_path / "escaped.txt").exists()


@pytest.mark.parametrize(
    "member",
    [("link", "../../outside"), ("sub/link", "/etc/passwd"), ("hard", "../outside")],
)
def test_a_tar_link_pointing_outside_is_refused(tmp_path, member):
    name, target = member
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.type = tarfile.LNKTYPE if name == "hard" else tarfile.SYMTYPE
        info.linkname = target
        tar.addfile(info)
    archive, folder = tmp_path / "bad.tar.gz", tmp_path / "data"
    archive.write_bytes(buffer.getvalue())
    folder.mkdir()
    with pytest.raises(UnsafeArchiveError, match=f"{name} links to"):
        extract(archive, folder)
    assert list(folder.rglob("*")) == []


def test_a_tar_link_is_refused_even_when_it_stays_inside(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        photo = tarfile.TarInfo("flickr30k-images/1.jpg")
        photo.size = 3
        tar.addfile(photo, io.BytesIO(b"jpg"))
        link = tarfile.TarInfo("flickr30k-images/sub/same.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "../1.jpg"
        tar.addfile(link)
    (tmp_path / "ok.tar.gz").write_bytes(buffer.getvalue())
    # Dataset archives hold no links: refusing them all needs no resolving of where they lead.
    with pytest.raises(UnsafeArchiveError, match="links are refused"):
        extract(tmp_path / "ok.tar.gz", tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_a_zip_symlink_is_refused(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("link")
        info.external_attr = 0o120777 << 16
        archive.writestr(info, "../outside")
    (tmp_path / "bad.zip").write_bytes(buffer.getvalue())
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        extract(tmp_path / "bad.zip", tmp_path)


def test_too_little_disk_is_refused_before_any_download(served, tmp_path, monkeypatch):
    server, tiny = served
    needed = sum(a.size + a.unpacked for a in tiny.dataset.archives)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(training.fetch.shutil, "disk_usage", lambda path: usage(1e12, 0, 10))
    with pytest.raises(FetchError) as error:
        fetch(tiny.dataset, tmp_path / "data", progress=False, log=lambda *a: None)
    assert server.requests == []
    message = str(error.value)
    assert f"needs about {training.fetch.human_size(needed)} more" in message
    assert "has 10 bytes free" in message


def test_a_short_archive_fails_the_count_check(tmp_path):
    with ArchiveServer({}) as server:
        tiny = tiny_dataset(server.url, train_photos=TRAIN[:3])  # one photo short
        server.files.update(tiny.files)
        with pytest.raises(FetchError, match="holds 3 photos where coco2014-karpathy has 4"):
            fetch(tiny.dataset, tmp_path / "data", progress=False, log=lambda *a: None)


def test_caption_counts_are_checked(tmp_path):
    with ArchiveServer({}) as server:
        tiny = tiny_dataset(server.url)
        server.files.update(tiny.files)
        wrong = dataclasses.replace(tiny.dataset.caption_files[0], captions=99)
        dataset = dataclasses.replace(tiny.dataset, caption_files=(wrong,))
        with pytest.raises(FetchError, match="names 12 captions where coco2014-karpathy has 99"):
            fetch(dataset, tmp_path / "data", progress=False, log=lambda *a: None)


def test_an_archive_behind_a_licence_form_is_asked_for_and_taken_from_a_path(served, tmp_path):
    server, tiny = served
    licensed = dataclasses.replace(tiny.dataset.archives[0], url=None, sha256=None)
    dataset = dataclasses.replace(tiny.dataset, archives=(*tiny.dataset.archives[1:], licensed))
    with pytest.raises(FetchError, match="licence form .* give its path with --archive"):
        fetch(dataset, tmp_path / "data", progress=False, log=lambda *a: None)
    assert server.requests == []  # said before anything else is downloaded
    local = tmp_path / "downloads" / licensed.name
    local.parent.mkdir()
    local.write_bytes(tiny.files[licensed.name])
    fetch(dataset, tmp_path / "data", archives=(local,), progress=False, log=lambda *a: None)
    assert (tmp_path / "data" / "train2014" / TRAIN[0]).is_file()
    assert licensed.name not in [name for name, _ in server.requests]
    with pytest.raises(FetchError, match="has no archive of that name"):
        fetch(dataset, tmp_path / "data", archives=(tmp_path / "other.zip",), log=print)


def test_fetch_prints_a_train_command_that_trains(served, tmp_path, monkeypatch, capsys):
    server, tiny = served
    monkeypatch.setitem(training.fetch.DATASETS, "coco2014-karpathy", tiny.dataset)
    data = tmp_path / "data"
    args = ["fetch", "coco2014-karpathy", "--dir", str(data), "--no-progress"]
    assert training.fetch.main(args) == 0
    command = shlex.split(capsys.readouterr().out.strip().splitlines()[-1])
    assert command == [
        "captioner-train", "--data", str(data / "dataset_coco.json"), "--images", str(data),
        "--out", "runs/coco2014-karpathy",
    ]  # fmt: skip

    # A second run downloads nothing: finished archives are kept and not fetched again.
    requests = len(server.requests)
    assert training.fetch.main(args) == 0
    assert len(server.requests) == requests

    run = tmp_path / "run"
    small = ["--epochs", "1", "--min-word-count", "1", "--batch-size", "4", "--image-size", "64",
             "--embed-dim", "16", "--decoder-dim", "32", "--attention-dim", "16", "--workers", "0",
             "--device", "cpu", "--no-progress", "--cache-dir", str(tmp_path / "c")]  # fmt: skip
    assert train_main([*command[1:-2], "--out", str(run), *small]) == 0
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert log[0]["epoch"] == 1 and "val_loss" in log[0]  # the file's val split was read
    assert (run / "best" / "model.safetensors").is_file()


def test_the_mirror_option_fetches_by_file_name(served, tmp_path, monkeypatch, capsys):
    server, tiny = served
    elsewhere = tuple(
        dataclasses.replace(a, url=f"http://127.0.0.1:9/{a.name}") for a in tiny.dataset.archives
    )
    monkeypatch.setitem(
        training.fetch.DATASETS,
        "coco2014-karpathy",
        dataclasses.replace(tiny.dataset, archives=elsewhere),
    )
    monkeypatch.setenv(training.fetch.MIRROR_VARIABLE, server.url)
    args = ["fetch", "coco2014-karpathy", "--dir", str(tmp_path), "--no-progress"]
    assert training.fetch.main(args) == 0
    assert sorted(name for name, _ in server.requests) == sorted(tiny.files)


def test_the_real_table_names_each_dataset_and_its_train_files():
    for name, dataset in training.fetch.DATASETS.items():
        assert name == dataset.name
        assert all(a.url is None or a.url.startswith("http") for a in dataset.archives)
        data = dataset.train_args[dataset.train_args.index("--data") + 1]
        assert data in {f.path for f in dataset.caption_files}
    flickr30k = training.fetch.DATASETS["flickr30k"]
    assert [a.url for a in flickr30k.archives if a.name == "flickr30k-images.tar.gz"] == [None]
