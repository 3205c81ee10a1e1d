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
_IPTC_DESCRIPTION = "Iptc.Application2.Caption"
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


def write_caption_metadata(
    image_path: str | bytes | os.PathLike, caption: str, *, overwrite: bool = False
) -> None:
    """Store `caption` inside the photo (JPEG, PNG, TIFF or WebP) without touching its pixels.

    A description already in the photo (XMP dc:description in any language, EXIF
    ImageDescription or IPTC Caption-Abstract) was usually typed by a person, so unless
    overwrite is True we raise FileExistsError naming the file and the field, and change nothing.
    Blank placeholders (spaces, NULs) that cameras write do not count.

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
    if not overwrite:
        for field, text in _descriptions(path, original, "write caption metadata").items():
            raise FileExistsError(
                f"{path}: the photo already has a description in {field} ({text!r}); "
                "pass overwrite=True to replace it"
            )
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
    descriptions = _descriptions(path, path.read_bytes())
    captions = {}
    if _XMP_FIELD in descriptions:
        captions["xmp"] = descriptions[_XMP_FIELD]
    if _EXIF_FIELD in descriptions:
        captions["exif"] = descriptions[_EXIF_FIELD]
    return captions


def existing_description(image_path: str | bytes | os.PathLike) -> str | None:
    """The description the photo already holds (XMP, else EXIF, else IPTC), or None.

    This is what write_caption_metadata refuses to replace without overwrite=True; the GUI
    shows it when asking whether to replace it.
    """
    path = pathlib.Path(os.fsdecode(image_path))
    return next(iter(_descriptions(path, path.read_bytes()).values()), None)


# Field names as people know them from exiftool or digiKam, used in messages.
_XMP_FIELD = "XMP dc:description"
_EXIF_FIELD = "EXIF ImageDescription"
_IPTC_FIELD = "IPTC Caption-Abstract"


def _descriptions(path: pathlib.Path, data: bytes, action: str = "read metadata") -> dict[str, str]:
    """The non-blank descriptions in the photo's metadata, by field, XMP first."""
    with _EXIV2_LOCK:
        try:
            with pyexiv2.ImageData(data) as image:
                xmp = image.read_xmp()
                try:
                    exif = image.read_exif()
                except UnicodeDecodeError:
                    exif = image.read_exif(encoding="latin-1")
                try:
                    iptc = image.read_iptc()
                except UnicodeDecodeError:  # IPTC without a UTF-8 marker is usually Latin-1
                    iptc = image.read_iptc(encoding="latin-1")
        except RuntimeError as error:
            raise ValueError(f"{path}: cannot {action} ({error})") from None

    description = xmp.get(_XMP_DESCRIPTION)
    if isinstance(description, dict):  # a language alternative: {'lang="x-default"': text, ...}
        description = description.get(_DEFAULT_LANGUAGE) or next(
            (text for text in description.values() if _text(text)), ""
        )
    # IPTC datasets may repeat; pyexiv2 gives a list then.
    caption = iptc.get(_IPTC_DESCRIPTION, "")
    if isinstance(caption, list):
        caption = next((text for text in caption if _text(text)), "")
    found = {
        _XMP_FIELD: _text(description or ""),
        _EXIF_FIELD: _text(exif.get(_EXIF_DESCRIPTION, "")),
        _IPTC_FIELD: _text(caption),
    }
    return {field: text for field, text in found.items() if text}


def _text(value: str) -> str:
    # Cameras often fill ImageDescription with spaces or NULs as a placeholder.
    return value.rstrip("\x00 ")


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
