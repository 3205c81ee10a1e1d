"""Saving captions next to or inside photos, shared by the batch CLI and the GUI.

Two places a caption can go:
- a sidecar text file, photo.jpg -> photo.txt, one caption per file;
- the photo's own metadata: XMP dc:description and EXIF ImageDescription. Only those two
  fields change: we edit the file's EXIF and XMP blocks in place and copy every other byte
  (pixels, IPTC, ICC profile, other tags) as it was. Exiv2 (pyexiv2) reads the metadata and
  edits the XMP packet, but never rewrites the whole file: its writer re-encodes every block
  from its own model, which alters tags nobody asked it to touch (see _write).
Every write goes to a temporary file in the same folder and is moved over the target with
os.replace, so a crash or full disk never leaves a half-written photo or sidecar.
"""

import os
import pathlib
import stat
import struct
import threading
import zlib

import pyexiv2

from captioner.photos.atomic import write_atomically
from captioner.photos.images import ImageError, open_photo_file

# Exiv2's XMP toolkit keeps global state and is not thread-safe; the GUI writes from workers.
_EXIV2_LOCK = threading.Lock()

_XMP_DESCRIPTION = "Xmp.dc.description"
_EXIF_DESCRIPTION = "Exif.Image.ImageDescription"
_IPTC_DESCRIPTION = "Iptc.Application2.Caption"
_DEFAULT_LANGUAGE = 'lang="x-default"'
# First bytes of JPEG, PNG and TIFF (both byte orders); WebP is checked apart (RIFF container).
_WRITABLE_SIGNATURES = {
    b"\xff\xd8\xff": "jpeg",
    b"\x89PNG\r\n\x1a\n": "png",
    b"II*\x00": "tiff",
    b"MM\x00*": "tiff",
}


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
    Only those two fields change: the pixels and every other tag (EXIF with its byte order,
    IPTC with its digest, ICC profile) keep their bytes. The XMP packet is re-serialised by
    Exiv2's XMP toolkit, which keeps every property's value but names itself as the packet's
    XMPToolkit. Replacing a description replaces it in all its languages.
    The file's permission bits are kept; it becomes a new file, so its owner is the writer.

    Raises ValueError naming the file when its format cannot hold metadata or it is damaged,
    and PermissionError when the photo is read-only (we would otherwise replace it anyway).
    """
    path = pathlib.Path(os.fsdecode(image_path))
    original = _photo_bytes(path)
    kind = _writable_format(path, original)
    if not os.access(path, os.W_OK):
        raise PermissionError(f"{path}: photo is read-only; not storing the caption in it")
    failure = "write caption metadata"
    existing = _descriptions(path, original, failure)  # also rejects files Exiv2 cannot parse
    if existing and not overwrite:
        field, text = next(iter(existing.items()))
        quoted = repr(text if len(text) <= 60 else text[:59] + "…")  # may be a whole paragraph
        raise FileExistsError(
            f"{path}: the photo already has a description in {field} ({quoted}); "
            "pass overwrite=True to replace it"
        )
    try:
        updated = _write(kind, original, caption)
    except (ValueError, struct.error, zlib.error, IndexError) as error:  # all parse failures
        raise ValueError(f"{path}: cannot {failure} ({error or 'damaged metadata'})") from None
    # Our edit must read back as written, else the photo keeps its old bytes.
    written = _descriptions(path, updated, failure)
    if {written.get(_XMP_FIELD), written.get(_EXIF_FIELD)} != {_text(caption)}:
        raise ValueError(f"{path}: cannot {failure} (it did not read back)")
    write_atomically(path, updated, permissions=stat.S_IMODE(path.stat().st_mode))


def read_caption_metadata(image_path: str | bytes | os.PathLike) -> dict[str, str]:
    """The caption stored in the photo: {"xmp": ..., "exif": ...}, each only when present.

    XMP gives the x-default description (else the first language present); EXIF text that is not
    valid UTF-8 comes from older cameras and is read as Latin-1.
    Raises ValueError naming the file when Exiv2 cannot read its metadata.
    """
    path = pathlib.Path(os.fsdecode(image_path))
    descriptions = _descriptions(path, _photo_bytes(path))
    captions = {}
    if _XMP_FIELD in descriptions:
        captions["xmp"] = descriptions[_XMP_FIELD]
    if _EXIF_FIELD in descriptions:
        captions["exif"] = descriptions[_EXIF_FIELD]
    return captions


def existing_description(image_path: str | bytes | os.PathLike) -> str | None:
    """The description the photo already holds (XMP, else EXIF, else IPTC), or None.

    This is what write_caption_metadata refuses to replace without overwrite=True; the GUI
    shows it when asking whether to replace it. Raises ValueError like read_caption_metadata.
    """
    path = pathlib.Path(os.fsdecode(image_path))
    return next(iter(_descriptions(path, _photo_bytes(path)).values()), None)


def _photo_bytes(path: pathlib.Path) -> bytes:
    """The photo's bytes; a FIFO or device in its place is refused (ValueError), never read."""
    try:
        with open_photo_file(path) as photo:
            return photo.read()
    except ImageError as error:
        raise ValueError(str(error)) from None


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
                # Latin-1 maps every byte to a character, so no tag can fail to decode; the
                # description's own bytes are decoded below.
                exif = image.read_exif(encoding="latin-1")
                iptc = image.read_iptc(encoding="latin-1")
        except RuntimeError as error:
            raise ValueError(f"{path}: cannot {action} ({error})") from None

    description = xmp.get(_XMP_DESCRIPTION, "")
    if isinstance(description, dict):  # a language alternative: {'lang="x-default"': text, ...}
        description = description.get(_DEFAULT_LANGUAGE) or next(
            (text for text in description.values() if _text(text)), ""
        )
    candidates = {
        _XMP_FIELD: [description],
        _EXIF_FIELD: _legacy_texts(exif.get(_EXIF_DESCRIPTION)),
        _IPTC_FIELD: _legacy_texts(iptc.get(_IPTC_DESCRIPTION)),
    }
    found = {
        field: next(filter(None, map(_text, texts)), "") for field, texts in candidates.items()
    }
    return {field: text for field, text in found.items() if text}


def _legacy_texts(value: str | list[str] | None) -> list[str]:
    """EXIF or IPTC text read as Latin-1, decoded; pyexiv2 gives a list when a tag repeats."""
    values = [] if value is None else value if isinstance(value, list) else [value]
    return [_utf8_or_latin1(text) for text in values]


def _utf8_or_latin1(latin1: str) -> str:
    """EXIF and IPTC text is UTF-8 from today's tools, Latin-1 from older cameras."""
    try:
        return latin1.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        return latin1


def _text(value: str) -> str:
    # Cameras often fill ImageDescription with spaces or NULs as a placeholder.
    return value.rstrip("\x00 ")


def _writable_format(path: pathlib.Path, data: bytes) -> str:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for signature, kind in _WRITABLE_SIGNATURES.items():
        if data.startswith(signature):
            return kind
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


# --- editing the EXIF and XMP blocks in place -----------------------------------------------------
# Exiv2's writeMetadata re-encodes EXIF, IPTC and XMP from its parsed model, so an edit of one
# field rewrites them all: IPTC TimeCreated "101530" comes back as "101530+0000" (the IPTCDigest
# then no longer matches), PNG and WebP EXIF is re-encoded little-endian whatever it was, a TIFF
# gets a second IPTC copy in its Photoshop resources, and every EXIF offset moves. So we splice
# the two blocks we change into the file ourselves and let Exiv2 edit only the XMP packet.


class _MalformedError(ValueError):
    """The file's container or EXIF structure cannot be followed."""


def _write(kind: str, data: bytes, caption: str) -> bytes:
    description = caption.encode() + b"\x00"
    if kind == "jpeg":
        return _write_jpeg(data, description, caption)
    if kind == "png":
        return _write_png(data, description, caption)
    if kind == "webp":
        return _write_webp(data, description, caption)
    # A TIFF file is itself the EXIF structure, with the XMP packet in IFD0 tag 700.
    xmp_type, packet = _ifd0_value(data, _XMP_TAG) or (_BYTE, None)
    tags = {_DESCRIPTION_TAG: (_ASCII, description), _XMP_TAG: (xmp_type, _xmp(packet, caption))}
    return _with_ifd0_tags(data, tags)


# TIFF tags and field types (TIFF 6.0), and the size in bytes of one value of each type.
_DESCRIPTION_TAG = 0x010E
_XMP_TAG = 700
_BYTE, _ASCII = 1, 2
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_EXIF_HEADER = b"Exif\x00\x00"
# A TIFF structure with an empty IFD0, for photos that have no EXIF yet.
_EMPTY_EXIF = b"II*\x00\x08\x00\x00\x00" + bytes(6)


def _byte_order(tiff: bytes) -> str:
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or struct.unpack(f"{order}H", tiff[2:4])[0] != 42:
        raise _MalformedError("the EXIF block is not a TIFF structure")
    return order


def _ifd0_entries(tiff: bytes) -> tuple[str, int, list[tuple[int, int, int, bytes]]]:
    """Byte order, IFD0's offset, and its entries: (tag, type, count, 4 raw value bytes)."""
    order = _byte_order(tiff)
    (offset,) = struct.unpack(f"{order}I", tiff[4:8])
    (count,) = struct.unpack(f"{order}H", tiff[offset : offset + 2])
    if offset + 6 + 12 * count > len(tiff):
        raise _MalformedError("IFD0 runs past the end of the EXIF block")
    entries = []
    for position in range(offset + 2, offset + 2 + 12 * count, 12):
        tag, kind, values = struct.unpack(f"{order}HHI", tiff[position : position + 8])
        entries.append((tag, kind, values, tiff[position + 8 : position + 12]))
    return order, offset, entries


def _value_span(order: str, kind: int, count: int, field: bytes) -> tuple[int, int] | None:
    """Where an entry's value lies outside IFD0 (start, size); None when it is in the entry."""
    size = _TYPE_SIZES.get(kind, 1) * count
    return (struct.unpack(f"{order}I", field)[0], size) if size > 4 else None


def _ifd0_value(tiff: bytes, wanted: int) -> tuple[int, bytes] | None:
    order, _, entries = _ifd0_entries(tiff)
    for tag, kind, count, field in entries:
        if tag == wanted:
            span = _value_span(order, kind, count, field)
            if span is None:
                return kind, field[: _TYPE_SIZES.get(kind, 1) * count]
            return kind, tiff[span[0] : span[0] + span[1]]
    return None


def _with_ifd0_tags(tiff: bytes, tags: dict[int, tuple[int, bytes]]) -> bytes:
    """`tiff` with these IFD0 tags set to (type, value bytes), every other byte where it was.

    A replaced value is written over the old one when it fits, else appended; the old value
    is zeroed so replaced text does not linger. Adding a tag needs a longer IFD0, so the new
    one goes at the end and the header points to it (the old one is zeroed): nothing else
    moves, so every offset in the file (sub-IFDs, strips, thumbnails, maker notes) stays valid.
    """
    order, offset, entries = _ifd0_entries(tiff)
    out = bytearray(tiff)

    def append(value: bytes) -> int:
        out.extend(bytes(len(out) % 2))  # TIFF values and IFDs start on a word boundary
        out.extend(value)
        return len(out) - len(value)

    table = list(entries)
    for tag, (kind, value) in tags.items():
        field = None
        for _, old_kind, old_count, old_field in (entry for entry in table if entry[0] == tag):
            span = _value_span(order, old_kind, old_count, old_field)
            if span is None or span[0] + span[1] > len(tiff):
                continue
            start, size = span
            out[start : start + size] = bytes(size)
            if field is None and 4 < len(value) <= size:
                out[start : start + len(value)] = value
                field = old_field
        if field is None and len(value) <= 4:
            field = value.ljust(4, b"\x00")
        elif field is None:
            field = struct.pack(f"{order}I", append(value))
        # The new entry takes the tag's (sorted) place; repeats of the tag, which a few
        # writers leave, go, so no older description survives beside it.
        index = next((i for i, entry in enumerate(table) if entry[0] >= tag), len(table))
        table = [entry for entry in table if entry[0] != tag]
        table.insert(index, (tag, kind, len(value) // _TYPE_SIZES.get(kind, 1), field))

    old_end = offset + 6 + 12 * len(entries)  # count, entries, next-IFD offset
    packed = b"".join(struct.pack(f"{order}HHI", *entry[:3]) + entry[3] for entry in table)
    ifd = struct.pack(f"{order}H", len(table)) + packed + tiff[old_end - 4 : old_end]
    if len(ifd) <= old_end - offset:
        out[offset:old_end] = ifd.ljust(old_end - offset, b"\x00")
        return bytes(out)
    out[offset:old_end] = bytes(old_end - offset)
    out[4:8] = struct.pack(f"{order}I", append(ifd))
    return bytes(out)


def _exif_with_description(block: bytes | None, description: bytes) -> bytes:
    """An EXIF block (TIFF structure, "Exif\\0\\0" prefix kept if it had one) with the caption."""
    block = block or _EMPTY_EXIF
    prefix = _EXIF_HEADER if block.startswith(_EXIF_HEADER) else b""
    tiff = _with_ifd0_tags(block[len(prefix) :], {_DESCRIPTION_TAG: (_ASCII, description)})
    return prefix + tiff


_EMPTY_XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/></x:xmpmeta>'
)


def _xmp(packet: bytes | None, caption: str) -> bytes:
    """The XMP packet with dc:description (all languages) replaced by the caption.

    Exiv2 opens a bare XMP packet as a sidecar "image", so its XMP toolkit edits this packet
    alone and re-serialises only it; every property keeps its value.
    """
    source = (packet or b"").strip(b"\x00 \t\r\n") or _EMPTY_XMP
    with _EXIV2_LOCK:
        try:
            with pyexiv2.ImageData(source) as image:
                image.modify_xmp({_XMP_DESCRIPTION: {_DEFAULT_LANGUAGE: caption}})
                return image.get_bytes()
        except RuntimeError as error:
            raise _MalformedError(f"the XMP packet cannot be parsed: {error}") from None


# JPEG: APP1 segments hold EXIF and XMP, each under its own header.
_JPEG_XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_JPEG_APP0, _JPEG_APP1 = 0xE0, 0xE1
_JPEG_MAX_SEGMENT = 0xFFFF - 2  # the length field counts itself


def _jpeg_segments(data: bytes) -> tuple[list[tuple[int, bytes, bytes]], bytes]:
    """The segments before the image data as (marker, raw bytes, payload), and the rest."""
    segments, position = [], 2  # after SOI
    while True:
        start = position
        if data[position] != 0xFF:
            raise _MalformedError("a JPEG segment does not start with a marker")
        while data[position + 1] == 0xFF:  # fill bytes
            position += 1
        marker = data[position + 1]
        if marker in (0xDA, 0xD9):  # start of scan, end of image: the rest is copied as is
            return segments, data[start:]
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            position += 2
            segments.append((marker, data[start:position], b""))
            continue
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        end = position + 2 + length
        if length < 2 or end > len(data):
            raise _MalformedError("a JPEG segment runs past the end of the file")
        segments.append((marker, data[start:end], data[position + 4 : end]))
        position = end


def _jpeg_segment(marker: int, payload: bytes) -> bytes:
    if len(payload) > _JPEG_MAX_SEGMENT:
        raise _MalformedError("the metadata no longer fits in a JPEG segment (64 KB)")
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _write_jpeg(data: bytes, description: bytes, caption: str) -> bytes:
    segments, rest = _jpeg_segments(data)

    def find(header: bytes) -> int | None:
        return next(
            (
                index
                for index, (marker, _, payload) in enumerate(segments)
                if marker == _JPEG_APP1 and payload.startswith(header)
            ),
            None,
        )

    raw = [segment for _, segment, _ in segments]
    exif = find(_EXIF_HEADER)
    old_tiff = segments[exif][2][len(_EXIF_HEADER) :] if exif is not None else None
    new_exif = _EXIF_HEADER + _exif_with_description(old_tiff, description)
    new_exif = _jpeg_segment(_JPEG_APP1, new_exif)
    if exif is None:  # EXIF goes first, after JFIF's APP0 which must lead the file
        exif = next((i for i, segment in enumerate(segments) if segment[0] != _JPEG_APP0), len(raw))
        raw.insert(exif, new_exif)
        segments.insert(exif, (_JPEG_APP1, new_exif, b""))
    else:
        raw[exif] = new_exif
    xmp = find(_JPEG_XMP_HEADER)
    old_packet = segments[xmp][2][len(_JPEG_XMP_HEADER) :] if xmp is not None else None
    new_xmp = _jpeg_segment(_JPEG_APP1, _JPEG_XMP_HEADER + _xmp(old_packet, caption))
    if xmp is None:
        raw.insert(exif + 1, new_xmp)
    else:
        raw[xmp] = new_xmp
    return data[:2] + b"".join(raw) + rest


# PNG: EXIF in an eXIf chunk, XMP in an iTXt chunk with this keyword.
_PNG_XMP_KEYWORD = b"XML:com.adobe.xmp\x00"


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes, bytes]]:
    """Every chunk as (type, raw bytes, payload); bytes after IEND stay with IEND."""
    chunks, position = [], 8  # after the signature
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        end = position + 12 + length
        if end > len(data):
            raise _MalformedError("a PNG chunk runs past the end of the file")
        if kind == b"IEND":
            end = len(data)
        chunks.append((kind, data[position:end], data[position + 8 : position + 8 + length]))
        position = end
    return chunks


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _png_itxt(payload: bytes) -> tuple[bytes, bytes]:
    """An iTXt chunk's header up to its text (rewritten as uncompressed), and the text."""
    keyword_end = payload.index(b"\x00")
    compressed = payload[keyword_end + 1]
    language_end = payload.index(b"\x00", keyword_end + 3)
    text_start = payload.index(b"\x00", language_end + 1) + 1
    header = payload[: keyword_end + 1] + b"\x00\x00" + payload[keyword_end + 3 : text_start]
    text = payload[text_start:]
    return header, zlib.decompress(text) if compressed else text


# Before eXIf existed, ImageMagick stored EXIF as hex text under these keywords; Exiv2 and
# exiftool still read it there, so that is where we edit it.
_PNG_RAW_EXIF_KEYWORDS = (b"Raw profile type exif\x00", b"Raw profile type APP1\x00")


def _png_raw_exif_with_description(kind: bytes, payload: bytes, description: bytes) -> bytes:
    """A tEXt, zTXt or iTXt chunk's "Raw profile type exif" payload, with the caption."""
    keyword_end = payload.index(b"\x00") + 1
    if kind == b"iTXt":
        header, text = _png_itxt(payload)
    elif kind == b"zTXt":
        header, text = payload[: keyword_end + 1], zlib.decompress(payload[keyword_end + 1 :])
    else:
        header, text = payload[:keyword_end], payload[keyword_end:]
    _, name, _, digits = text.split(b"\n", 3)  # "\n" name "\n" length "\n" hex lines
    profile = _exif_with_description(bytes.fromhex(digits.decode("ascii")), description)
    digits = profile.hex().encode()
    lines = [digits[start : start + 72] for start in range(0, len(digits), 72)]
    text = b"\n" + name + b"\n%8d\n" % len(profile) + b"\n".join(lines) + b"\n"
    return header + (zlib.compress(text) if kind == b"zTXt" else text)


def _write_png(data: bytes, description: bytes, caption: str) -> bytes:
    chunks = _png_chunks(data)
    kinds = [kind for kind, _, _ in chunks]
    raw = [chunk for _, chunk, _ in chunks]
    if b"IDAT" not in kinds:
        raise _MalformedError("the PNG has no image data")

    exif = kinds.index(b"eXIf") if b"eXIf" in kinds else None
    old_exif = chunks[exif][2] if exif is not None else None
    new_exif = _png_chunk(b"eXIf", _exif_with_description(old_exif, description))
    legacy = next(
        (
            index
            for index, (kind, _, payload) in enumerate(chunks)
            if kind in (b"tEXt", b"zTXt", b"iTXt") and payload.startswith(_PNG_RAW_EXIF_KEYWORDS)
        ),
        None,
    )
    if exif is None and legacy is not None:
        kind, _, payload = chunks[legacy]
        raw[legacy] = _png_chunk(kind, _png_raw_exif_with_description(kind, payload, description))
        exif = legacy
    elif exif is None:  # PNG readers look for eXIf before the image data
        exif = kinds.index(b"IDAT")
        raw.insert(exif, new_exif)
        chunks.insert(exif, (b"eXIf", new_exif, b""))
    else:
        raw[exif] = new_exif

    xmp = next(
        (
            index
            for index, (kind, _, payload) in enumerate(chunks)
            if kind == b"iTXt" and payload.startswith(_PNG_XMP_KEYWORD)
        ),
        None,
    )
    header, packet = _png_itxt(chunks[xmp][2]) if xmp is not None else (None, None)
    header = header or _PNG_XMP_KEYWORD + b"\x00\x00\x00\x00"  # uncompressed, no language
    new_xmp = _png_chunk(b"iTXt", header + _xmp(packet, caption))
    if xmp is None:
        raw.insert(exif + 1, new_xmp)
    else:
        raw[xmp] = new_xmp
    return data[:8] + b"".join(raw)


# WebP: a RIFF file; EXIF and XMP chunks need the extended format, whose VP8X chunk flags them.
_VP8X_EXIF, _VP8X_XMP, _VP8X_ALPHA = 0x08, 0x04, 0x10


def _riff_chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("<I", len(payload)) + payload + bytes(len(payload) % 2)


def _vp8x_for(kind: bytes, payload: bytes) -> bytes:
    """The VP8X chunk payload that turns a simple (one image chunk) WebP into an extended one."""
    if kind == b"VP8 " and payload[3:6] == b"\x9d\x01\x2a":  # lossy: key frame start code
        width, height = (size & 0x3FFF for size in struct.unpack("<HH", payload[6:10]))
        flags = 0
    elif kind == b"VP8L" and payload[:1] == b"\x2f":  # lossless: sizes minus one, alpha bit
        (bits,) = struct.unpack("<I", payload[1:5])
        width, height = (bits & 0x3FFF) + 1, (bits >> 14 & 0x3FFF) + 1
        flags = _VP8X_ALPHA if bits >> 28 & 1 else 0
    else:
        raise _MalformedError("the WebP image data is not VP8 or VP8L")
    sizes = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return bytes([flags, 0, 0, 0]) + sizes


def _write_webp(data: bytes, description: bytes, caption: str) -> bytes:
    (riff_size,) = struct.unpack("<I", data[4:8])
    end = min(8 + riff_size, len(data))
    chunks, position = [], 12  # after RIFF, size, WEBP
    while position + 8 <= end:
        kind, length = struct.unpack("<4sI", data[position : position + 8])
        chunk_end = position + 8 + length + length % 2
        chunks.append((kind, data[position:chunk_end], data[position + 8 : position + 8 + length]))
        position = chunk_end
    if not chunks:
        raise _MalformedError("the WebP file has no chunks")

    if chunks[0][0] != b"VP8X":
        chunks.insert(0, (b"VP8X", b"", _vp8x_for(chunks[0][0], chunks[0][2])))
    kinds = [kind for kind, _, _ in chunks]
    raw = [chunk for _, chunk, _ in chunks]
    vp8x = chunks[0][2]
    raw[0] = _riff_chunk(b"VP8X", bytes([vp8x[0] | _VP8X_EXIF | _VP8X_XMP]) + vp8x[1:])

    # The spec's order: image data, then EXIF, then XMP.
    exif = kinds.index(b"EXIF") if b"EXIF" in kinds else None
    new_exif = _exif_with_description(chunks[exif][2] if exif is not None else None, description)
    if exif is None:
        exif = kinds.index(b"XMP ") if b"XMP " in kinds else len(raw)
        raw.insert(exif, _riff_chunk(b"EXIF", new_exif))
        kinds.insert(exif, b"EXIF")
        chunks.insert(exif, (b"EXIF", b"", new_exif))
    else:
        raw[exif] = _riff_chunk(b"EXIF", new_exif)
    xmp = kinds.index(b"XMP ") if b"XMP " in kinds else None
    new_xmp = _riff_chunk(b"XMP ", _xmp(chunks[xmp][2] if xmp is not None else None, caption))
    if xmp is None:
        raw.insert(exif + 1, new_xmp)
    else:
        raw[xmp] = new_xmp
    body = b"WEBP" + b"".join(raw)
    return b"RIFF" + struct.pack("<I", len(body)) + body + data[end:]
