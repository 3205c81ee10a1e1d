"""Saving captions next to or inside photos, shared by the batch CLI and the GUI.

Two places a caption can go:
- a sidecar text file, photo.jpg -> photo.txt, one caption per file;
- the photo's own metadata: XMP dc:description and EXIF ImageDescription, written with Exiv2
  (pyexiv2) so the compressed pixel data is copied byte for byte, never re-encoded.
Every write goes to a temporary file in the same folder and is moved over the target with
os.replace, so a crash or full disk never leaves a half-written photo or sidecar.
"""

import os
import pathlib
import stat
import threading

import pyexiv2

from captioner.atomic import write_atomically

# Exiv2's XMP toolkit keeps global state and is not thread-safe; the GUI writes from workers.
_EXIV2_LOCK = threading.Lock()

_XMP_DESCRIPTION = "Xmp.dc.description"
_EXIF_DESCRIPTION = "Exif.Image.ImageDescription"
_DEFAULT_LANGUAGE = 'lang="x-default"'
# First bytes of JPEG, PNG and TIFF (both byte orders); WebP is checked apart (RIFF container).
_WRITABLE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*")


def sidecar_path(image_path: str | bytes | os.PathLike) -> pathlib.Path:
    """The caption text file that belongs to a photo: photo.jpg -> photo.txt."""
    return pathlib.Path(os.fsdecode(image_path)).with_suffix(".txt")


def write_sidecar(
    image_path: str | bytes | os.PathLike, caption: str, *, overwrite: bool = False
) -> pathlib.Path:
    """Write `caption` plus a newline, UTF-8, to the photo's sidecar file and return its path.

    Raises FileExistsError if the sidecar exists and overwrite is False. The existence check
    and the final rename are two steps, so only a concurrent writer could slip in between.
    """
    path = sidecar_path(image_path)
    if not overwrite and path.exists():
        raise FileExistsError(
            f"{path}: caption file already exists; pass overwrite=True to replace it"
        )
    write_atomically(path, f"{caption}\n".encode())
    return path


def write_caption_metadata(image_path: str | bytes | os.PathLike, caption: str) -> None:
    """Store `caption` inside the photo (JPEG, PNG, TIFF or WebP) without touching its pixels.

    XMP dc:description (language x-default) holds the exact text. EXIF ImageDescription is an
    ASCII field by the EXIF spec, but we store the caption there as UTF-8, as the Metadata
    Working Group guidelines recommend and as exiftool, Exiv2 and digiKam read it; readers that
    assume Latin-1 (Pillow's getexif) show accented letters as mojibake, never lose them.
    Other metadata (camera EXIF, GPS, ICC profile, other XMP languages) is kept as is.
    The file's permission bits are kept; it becomes a new file, so its owner is the writer.

    Raises ValueError naming the file when its format cannot hold metadata or it is damaged,
    and PermissionError when the photo is read-only (we would otherwise replace it anyway).
    """
    path = pathlib.Path(os.fsdecode(image_path))
    original = path.read_bytes()
    _check_writable_format(path, original)
    if not os.access(path, os.W_OK):
        raise PermissionError(f"{path}: photo is read-only; not storing the caption in it")
    with _EXIV2_LOCK:
        try:
            with pyexiv2.ImageData(original) as image:
                image.modify_xmp({_XMP_DESCRIPTION: {_DEFAULT_LANGUAGE: caption}})
                image.modify_exif({_EXIF_DESCRIPTION: caption})
                updated = image.get_bytes()
        except RuntimeError as error:  # Exiv2 reports every parse or write failure this way
            raise ValueError(f"{path}: cannot write caption metadata ({error})") from None
    write_atomically(path, updated, permissions=stat.S_IMODE(path.stat().st_mode))


def read_caption_metadata(image_path: str | bytes | os.PathLike) -> dict[str, str]:
    """The caption stored in the photo: {"xmp": ..., "exif": ...}, each only when present.

    XMP gives the x-default description (else the first language present); EXIF text that is not
    valid UTF-8 comes from older cameras and is read as Latin-1.
    """
    path = pathlib.Path(os.fsdecode(image_path))
    data = path.read_bytes()
    with _EXIV2_LOCK:
        try:
            with pyexiv2.ImageData(data) as image:
                xmp = image.read_xmp()
                try:
                    exif = image.read_exif()
                except UnicodeDecodeError:
                    exif = image.read_exif(encoding="latin-1")
        except RuntimeError as error:
            raise ValueError(f"{path}: cannot read metadata ({error})") from None

    captions = {}
    description = xmp.get(_XMP_DESCRIPTION)
    if isinstance(description, dict):  # a language alternative: {'lang="x-default"': text, ...}
        description = description.get(_DEFAULT_LANGUAGE, next(iter(description.values()), ""))
    if description:
        captions["xmp"] = description
    # Cameras often fill ImageDescription with spaces or NULs as a placeholder.
    exif_description = exif.get(_EXIF_DESCRIPTION, "").rstrip("\x00 ")
    if exif_description:
        captions["exif"] = exif_description
    return captions


def _check_writable_format(path: pathlib.Path, data: bytes) -> None:
    is_webp = data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    if is_webp or data.startswith(_WRITABLE_SIGNATURES):
        return
    raise ValueError(
        f"{path}: captions can only be stored in JPEG, PNG, TIFF or WebP files, "
        f"and this file is {_describe_format(data)}"
    )


def _describe_format(data: bytes) -> str:
    if not data:
        return "empty"
    if data.startswith(b"GIF8"):
        return "a GIF"
    if data.startswith(b"BM"):
        return "a BMP"
    if data[4:8] == b"ftyp":
        return f"an ISO media file ({data[8:12].decode('ascii', 'replace')}, e.g. HEIC)"
    return "not in a recognised image format"
