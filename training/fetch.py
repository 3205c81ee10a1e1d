"""`captioner-data fetch`: COCO or Flickr in one command, ready for captioner-train.

    captioner-data fetch coco2014-karpathy --dir data/coco2014
    captioner-data fetch flickr30k --dir data/flickr30k --archive flickr30k-images.tar.gz

Downloads the dataset's archives (resumable; training/download.py), checking first that the disk
holds them and what they unpack to, unpacks them, checks the photo and caption counts against the
published ones, and prints the captioner-train command for the data. Archives are kept, so a
second run fetches nothing again.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from captioner.photos.atomic import write_atomically
from training.download import ArchiveError, DownloadError, download, extract, file_sha256
from training.features import human_size
from training.readers import DatasetFormatError, read_samples

FLICKR30K_FORM = "https://shannon.cs.illinois.edu/DenotationGraph/"
MIRROR_VARIABLE = "CAPTIONER_DATA_MIRROR"
# An archive may unpack to this many times the table's estimate before it is refused as a
# decompression bomb: room for the estimate being off, and far below what a bomb unpacks to.
UNPACKED_MARGIN = 2


@dataclass(frozen=True)
class Archive:
    name: str
    url: str | None  # None: only the user can download it (a licence form), given with --archive
    size: int  # bytes: exact where sha256 is known, else an estimate for the disk check
    unpacked: int  # bytes on disk once unpacked, estimated
    sha256: str | None = None


@dataclass(frozen=True)
class PhotoFolder:
    """A folder the archives fill, and the .jpg files it holds when whole."""

    path: str
    photos: int


@dataclass(frozen=True)
class CaptionFile:
    """A caption file as captioner-train reads it: photos and captions (None: not checked)."""

    path: str
    images: str
    photos: int | None
    captions: int | None


@dataclass(frozen=True)
class Dataset:
    name: str
    archives: tuple[Archive, ...]
    folders: tuple[PhotoFolder, ...]
    caption_files: tuple[CaptionFile, ...]
    train_args: tuple[str, ...]  # captioner-train's data options, paths relative to --dir


_COCO = "http://images.cocodataset.org"
# SHA-256 and sizes of the COCO archives as TensorFlow Datasets records and checks them
# (tensorflow_datasets/url_checksums/coco.txt); COCO itself publishes none.
_COCO_ARCHIVES = {
    archive.name: archive
    for archive in (
        Archive("train2014.zip", f"{_COCO}/zips/train2014.zip", 13_510_573_713, 13_510_000_000,
                "ede4087e640bddba550e090eae701092534b554b42b05ac33f0300b984b31775"),
        Archive("val2014.zip", f"{_COCO}/zips/val2014.zip", 6_645_013_297, 6_645_000_000,
                "fe9be816052049c34717e077d9e34aa60814a55679f804cd043e3cbee3b9fde0"),
        Archive("train2017.zip", f"{_COCO}/zips/train2017.zip", 19_336_861_798, 19_340_000_000,
                "69a8bb58ea5f8f99d24875f21416de2e9ded3178e903f1f7603e283b9e06d929"),
        Archive("val2017.zip", f"{_COCO}/zips/val2017.zip", 815_585_330, 816_000_000,
                "4f7e2ccb2866ec5041993c9cf2a952bbed69647b115d0f74da7ce8f4bef82f05"),
        Archive("annotations_trainval2017.zip", f"{_COCO}/annotations/annotations_trainval2017.zip",
                252_907_541, 820_000_000,
                "113a836d90195ee1f884e704da6304dfaaecff1f023f49b6ca93c4aaae470268"),
    )
}  # fmt: skip
# No published checksums and no exact sizes we are sure of: size estimates, counts checked.
_KARPATHY = Archive(
    "caption_datasets.zip",
    "https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip",
    40_000_000,
    200_000_000,
)
_FLICKR8K = "https://github.com/jbrownlee/Datasets/releases/download/Flickr8k"

DATASETS = {
    dataset.name: dataset
    for dataset in (
        Dataset(
            "coco2014-karpathy",
            (_COCO_ARCHIVES["train2014.zip"], _COCO_ARCHIVES["val2014.zip"], _KARPATHY),
            (PhotoFolder("train2014", 82_783), PhotoFolder("val2014", 40_504)),
            (CaptionFile("dataset_coco.json", ".", 123_287, None),),
            ("--data", "dataset_coco.json", "--images", "."),
        ),
        Dataset(
            "coco2017",
            tuple(_COCO_ARCHIVES[name] for name in
                  ("train2017.zip", "val2017.zip", "annotations_trainval2017.zip")),
            (PhotoFolder("train2017", 118_287), PhotoFolder("val2017", 5_000)),
            (CaptionFile("annotations/captions_train2017.json", "train2017", 118_287, 591_753),
             CaptionFile("annotations/captions_val2017.json", "val2017", 5_000, 25_014)),
            ("--data", "annotations/captions_train2017.json", "--images", "train2017",
             "--val-data", "annotations/captions_val2017.json", "--val-images", "val2017"),
        ),
        Dataset(
            "flickr8k",
            (Archive("Flickr8k_Dataset.zip", f"{_FLICKR8K}/Flickr8k_Dataset.zip",
                     1_200_000_000, 1_200_000_000),
             Archive("Flickr8k_text.zip", f"{_FLICKR8K}/Flickr8k_text.zip", 3_000_000,
                     10_000_000)),
            # The token file also names 2258277193_586949ec62.jpg.1, a photo that does not exist
            # and is in no split list: captioner-train reads 6,000 + 1,000 + 1,000 photos.
            (PhotoFolder("Flicker8k_Dataset", 8_091),),
            (CaptionFile("Flickr8k.token.txt", "Flicker8k_Dataset", 8_000, 40_000),),
            ("--data", "Flickr8k.token.txt", "--images", "Flicker8k_Dataset"),
        ),
        Dataset(
            "flickr30k",
            (Archive("flickr30k-images.tar.gz", None, 4_500_000_000, 4_500_000_000), _KARPATHY),
            (PhotoFolder("flickr30k-images", 31_783),),
            (CaptionFile("dataset_flickr30k.json", "flickr30k-images", None, None),),
            ("--data", "dataset_flickr30k.json", "--images", "flickr30k-images"),
        ),
    )
}  # fmt: skip


class FetchError(Exception):
    """A fetch that cannot go on; the message says why and what to do."""


def fetch(
    dataset: Dataset,
    folder: Path,
    *,
    archives: tuple[Path, ...] = (),
    mirror: str | None = None,
    progress: bool = True,
    log=print,
) -> list[str]:
    """Fetch, unpack and check `dataset` in `folder`; returns the captioner-train command.

    `archives`: local copies of the dataset's archives (by file name), used where they lie.
    `mirror`: a base URL that serves every archive under its file name, instead of the table's.
    """
    given = _given_archives(dataset, archives)
    for archive in dataset.archives:
        needed = not (archive.name in given or _is_unpacked(folder, archive))
        if archive.url is None and needed and not (folder / archive.name).is_file():
            raise FetchError(
                f"{archive.name} is given out only after a licence form ({FLICKR30K_FORM}): "
                f"download it there and give its path with --archive"
            )
    folder.mkdir(parents=True, exist_ok=True)
    check_space(dataset, folder, given)
    for archive in dataset.archives:
        if _is_unpacked(folder, archive):
            log(f"{archive.name}: already unpacked")
            continue
        path = given.get(archive.name) or _downloaded(archive, folder, mirror, progress, log)
        log(f"unpacking {archive.name}")
        extract(path, folder, max_size=archive.unpacked * UNPACKED_MARGIN)
        write_atomically(
            _marker(folder, archive), json.dumps({"size": path.stat().st_size}).encode()
        )
    check_counts(dataset, folder)
    args = [a if a.startswith("--") else str((folder / a).resolve()) for a in dataset.train_args]
    return ["captioner-train", *args, "--out", f"runs/{dataset.name}"]


def _given_archives(dataset: Dataset, paths: tuple[Path, ...]) -> dict[str, Path]:
    known = {archive.name: archive for archive in dataset.archives}
    given = {}
    for path in paths:
        if path.name not in known:
            raise FetchError(
                f"--archive {path}: {dataset.name} has no archive of that name (its archives: "
                f"{', '.join(known)})"
            )
        if not path.is_file():
            raise FetchError(f"--archive {path}: no such file")
        _verify_local(path, known[path.name])
        given[path.name] = path
    return given


def _verify_local(path: Path, archive: Archive) -> None:
    if archive.sha256 is None:
        return
    if path.stat().st_size != archive.size or file_sha256(path) != archive.sha256:
        raise FetchError(f"--archive {path}: not the published {archive.name} (size or SHA-256)")


def _downloaded(archive: Archive, folder: Path, mirror: str | None, progress: bool, log) -> Path:
    target = folder / archive.name
    if target.is_file():  # only a verified download is given this name
        log(f"{archive.name}: already downloaded")
        return target
    url = f"{mirror.rstrip('/')}/{archive.name}" if mirror else archive.url
    log(f"downloading {url}")
    exact = archive.size if archive.sha256 else None
    return download(url, target, size=exact, sha256=archive.sha256, progress=progress)


def _marker(folder: Path, archive: Archive) -> Path:
    return folder / f".{archive.name}.unpacked"


def _is_unpacked(folder: Path, archive: Archive) -> bool:
    return _marker(folder, archive).is_file()


def check_space(dataset: Dataset, folder: Path, given: dict[str, Path]) -> None:
    """Refuse, before any download, when the disk cannot hold what is still to come."""
    downloads = unpacking = 0
    for archive in dataset.archives:
        if _is_unpacked(folder, archive):
            continue
        unpacking += archive.unpacked
        if archive.name not in given and not (folder / archive.name).is_file():
            part = folder / f"{archive.name}.part"
            downloads += archive.size - (part.stat().st_size if part.is_file() else 0)
    free = shutil.disk_usage(folder).free
    if downloads + unpacking > free:
        raise FetchError(
            f"{dataset.name} needs about {human_size(downloads + unpacking)} more "
            f"({human_size(downloads)} of archives, {human_size(unpacking)} unpacked) but the "
            f"disk holding {folder} has {human_size(free)} free: free some space or give a "
            "--dir on a larger disk"
        )


def check_counts(dataset: Dataset, folder: Path) -> None:
    """The photos and captions the dataset publishes, as captioner-train will read them."""
    for photo_folder in dataset.folders:
        path = folder / photo_folder.path
        found = sum(1 for _ in path.glob("*.jpg")) if path.is_dir() else 0
        if found != photo_folder.photos:
            raise FetchError(
                f"{path} holds {found:,} photos where {dataset.name} has {photo_folder.photos:,}: "
                "an archive is incomplete; delete it and its .unpacked marker and fetch again"
            )
    for caption_file in dataset.caption_files:
        path = folder / caption_file.path
        try:
            samples = read_samples(path, folder / caption_file.images).samples
        except (DatasetFormatError, FileNotFoundError) as error:
            raise FetchError(f"{dataset.name}: {error}") from error
        photos, captions = len(samples), sum(len(s.captions) for s in samples)
        for what, found, expected in (
            ("photos", photos, caption_file.photos),
            ("captions", captions, caption_file.captions),
        ):
            if expected is not None and found != expected:
                raise FetchError(
                    f"{path} names {found:,} {what} where {dataset.name} has {expected:,}"
                )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="captioner-data", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_parser = commands.add_parser("fetch", help="download, unpack and check a dataset")
    fetch_parser.add_argument("dataset", choices=list(DATASETS), help="see docs/coco.md")
    fetch_parser.add_argument("--dir", required=True, type=Path, help="where the data goes")
    fetch_parser.add_argument(
        "--archive",
        type=Path,
        action="append",
        default=[],
        help="an archive you downloaded yourself (Flickr30k's flickr30k-images.tar.gz); repeatable",
    )
    fetch_parser.add_argument(
        "--mirror",
        default=os.environ.get(MIRROR_VARIABLE),
        help=f"base URL serving the archives by file name (default: ${MIRROR_VARIABLE}, else "
        "the official sources)",
    )
    fetch_parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        command = fetch(
            DATASETS[args.dataset],
            args.dir,
            archives=tuple(args.archive),
            mirror=args.mirror,
            progress=not args.no_progress,
        )
    except (FetchError, DownloadError, ArchiveError) as error:
        print(f"captioner-data: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("captioner-data: interrupted; run the command again to continue", file=sys.stderr)
        return 130
    print(f"{args.dataset} is ready. Train on it with:\n\n    {shlex.join(command)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
