import hashlib
import json
import os
import pathlib
import shutil
import stat
import struct
import subprocess
import xml.etree.ElementTree as ElementTree

import pyexiv2
import pytest
from PIL import Image, PngImagePlugin
from skimage import data

from captioner.photos.metadata import (
    existing_description,
    read_caption_metadata,
    sidecar_path,
    write_caption_metadata,
    write_sidecar,
)

IMAGE_DESCRIPTION = 0x010E
MAKE = 0x010F
RUNNING_AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
NON_ASCII_CAPTION = "Ein Hund läuft über die Brücke — 一只狗 & <friends>"


def saved(image: Image.Image, path: pathlib.Path, **options) -> pathlib.Path:
    image.save(path, **options)
    return path


@pytest.fixture
def jpeg(tmp_path):
    exif = Image.Exif()
    exif[MAKE] = "TestCam"
    return saved(Image.fromarray(data.astronaut()), tmp_path / "astronaut.jpg", exif=exif)


@pytest.fixture
def png(tmp_path):
    return saved(Image.fromarray(data.chelsea()), tmp_path / "chelsea.png")


def jpeg_scan_data(encoded: bytes) -> bytes:
    """The compressed pixels: from the start-of-scan marker to the end (EOI)."""
    position = 2  # after SOI
    while encoded[position : position + 2] != b"\xff\xda":
        (length,) = struct.unpack(">H", encoded[position + 2 : position + 4])
        position += 2 + length  # marker + segment (whose length counts itself)
    return encoded[position:]


def png_chunks(encoded: bytes, kind: bytes) -> list[bytes]:
    chunks, position = [], 8  # after the signature
    while position < len(encoded):
        length, chunk_kind = struct.unpack(">I4s", encoded[position : position + 8])
        if chunk_kind == kind:
            chunks.append(encoded[position + 8 : position + 8 + length])
        position += 12 + length  # length, type, payload, CRC
    return chunks


def decoded_pixels(path: pathlib.Path) -> bytes:
    with Image.open(path) as image:
        return image.tobytes()


def xmp_description(packet: str | bytes) -> str:
    """dc:description[x-default] parsed from an XMP packet with a plain XML parser."""
    namespaces = {
        "dc": "http://purl.org/dc/elements/1.1/",
        "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    }
    root = ElementTree.fromstring(packet)
    for item in root.iterfind(".//dc:description/rdf:Alt/rdf:li", namespaces):
        if item.get("{http://www.w3.org/XML/1998/namespace}lang") == "x-default":
            return item.text
    raise AssertionError("no dc:description x-default in the XMP packet")


def pillow_view(path: pathlib.Path) -> tuple[str, str]:
    """(EXIF ImageDescription, XMP description) as seen by Pillow, a reader independent of Exiv2."""
    with Image.open(path) as image:
        packet = image.info.get("xmp") or image.info["XML:com.adobe.xmp"]
        return image.getexif()[IMAGE_DESCRIPTION], xmp_description(packet)


def leftovers(directory: pathlib.Path, *expected: str) -> set[str]:
    return {entry.name for entry in directory.iterdir()} - set(expected)


# --- sidecar files ------------------------------------------------------------------------------


def test_sidecar_path_replaces_the_extension():
    assert sidecar_path("photos/cat.jpg") == pathlib.Path("photos/cat.txt")
    assert sidecar_path(pathlib.Path("/p/archive.tar.PNG")) == pathlib.Path("/p/archive.tar.txt")
    assert sidecar_path("photos/no_extension") == pathlib.Path("photos/no_extension.txt")


def test_write_sidecar_writes_the_caption_line_in_utf8(tmp_path):
    path = write_sidecar(tmp_path / "dog.jpg", NON_ASCII_CAPTION)
    assert path == tmp_path / "dog.txt"
    assert path.read_bytes() == (NON_ASCII_CAPTION + "\n").encode("utf-8")
    assert leftovers(tmp_path, "dog.txt") == set()


def test_write_sidecar_never_overwrites_without_the_flag(tmp_path):
    existing = tmp_path / "dog.txt"
    existing.write_text("hand-written caption\n")
    with pytest.raises(FileExistsError) as caught:
        write_sidecar(tmp_path / "dog.jpg", "a dog")
    assert str(existing) in str(caught.value) and "overwrite" in str(caught.value)
    assert existing.read_text() == "hand-written caption\n"

    write_sidecar(tmp_path / "dog.jpg", "a dog", overwrite=True)
    assert existing.read_text() == "a dog\n"
    assert leftovers(tmp_path, "dog.txt") == set()


def test_sidecar_for_a_non_utf8_file_name(tmp_path):
    photo = os.path.join(os.fsencode(tmp_path), b"caf\xe9.jpg")
    try:
        path = write_sidecar(photo, "a cafe")
    except OSError:
        pytest.skip("this file system only accepts UTF-8 file names")
    assert os.fsencode(path) == os.path.join(os.fsencode(tmp_path), b"caf\xe9.txt")
    assert path.read_text() == "a cafe\n"


# --- captions inside the photo ------------------------------------------------------------------


def test_jpeg_caption_is_added_without_touching_the_pixels(jpeg):
    before = jpeg.read_bytes()
    pixels_before = decoded_pixels(jpeg)
    write_caption_metadata(jpeg, "an astronaut holding a helmet")
    after = jpeg.read_bytes()
    assert after != before
    assert jpeg_scan_data(after) == jpeg_scan_data(before)
    assert decoded_pixels(jpeg) == pixels_before
    assert pillow_view(jpeg) == ("an astronaut holding a helmet",) * 2
    with Image.open(jpeg) as image:
        assert image.getexif()[MAKE] == "TestCam"  # existing camera metadata is kept
    assert leftovers(jpeg.parent, jpeg.name) == set()


def test_png_caption_is_added_without_touching_the_pixels(png):
    before = png.read_bytes()
    pixels_before = decoded_pixels(png)
    write_caption_metadata(png, "a cat looking at the camera")
    after = png.read_bytes()
    assert png_chunks(after, b"IDAT") == png_chunks(before, b"IDAT")
    assert decoded_pixels(png) == pixels_before
    assert pillow_view(png) == ("a cat looking at the camera",) * 2


@pytest.mark.parametrize(
    ("suffix", "mode", "options"),
    [
        (".jpg", "RGB", {}),
        (".png", "RGB", {}),
        (".tif", "RGB", {}),
        (".webp", "RGB", {}),  # lossy and without metadata: a simple WebP, no VP8X chunk yet
        (".webp", "RGBA", {"lossless": True}),  # VP8L, whose alpha the new VP8X must flag
    ],
)
def test_non_ascii_caption_round_trip(tmp_path, suffix, mode, options):
    image = Image.fromarray(data.coffee()).convert(mode)
    if mode == "RGBA":
        image.putalpha(Image.linear_gradient("L").resize(image.size))
    path = saved(image, tmp_path / f"coffee{suffix}", **options)
    pixels = decoded_pixels(path)
    assert read_caption_metadata(path) == {}
    write_caption_metadata(path, NON_ASCII_CAPTION)
    assert read_caption_metadata(path) == {"xmp": NON_ASCII_CAPTION, "exif": NON_ASCII_CAPTION}
    with Image.open(path) as image:
        # EXIF holds UTF-8 bytes; Pillow decodes EXIF text as Latin-1, so undo that to compare.
        exif_text = image.getexif()[IMAGE_DESCRIPTION]
        assert exif_text.encode("latin-1").decode("utf-8") == NON_ASCII_CAPTION
        assert image.mode == mode
    assert decoded_pixels(path) == pixels


def test_pillow_sees_the_exact_non_ascii_xmp(jpeg):
    write_caption_metadata(jpeg, NON_ASCII_CAPTION)
    assert pillow_view(jpeg)[1] == NON_ASCII_CAPTION


def test_writing_again_replaces_the_caption_only_with_overwrite(jpeg):
    write_caption_metadata(jpeg, "first caption")
    before = jpeg.read_bytes()
    with pytest.raises(FileExistsError) as caught:
        write_caption_metadata(jpeg, "second caption")
    assert str(jpeg) in str(caught.value) and "overwrite" in str(caught.value)
    assert jpeg.read_bytes() == before

    write_caption_metadata(jpeg, "second caption", overwrite=True)
    assert read_caption_metadata(jpeg) == {"xmp": "second caption", "exif": "second caption"}
    assert b"first caption" not in jpeg.read_bytes()


def test_file_permissions_are_kept(jpeg):
    jpeg.chmod(0o640)
    write_caption_metadata(jpeg, "a caption")
    assert stat.S_IMODE(jpeg.stat().st_mode) == 0o640


@pytest.mark.skipif(RUNNING_AS_ROOT, reason="root may write a file whatever its permission bits")
def test_read_only_photo_is_left_alone(jpeg):
    before = jpeg.read_bytes()
    jpeg.chmod(0o444)
    with pytest.raises(PermissionError, match="read-only"):
        write_caption_metadata(jpeg, "a caption")
    assert jpeg.read_bytes() == before


@pytest.mark.parametrize(
    ("name", "content", "described_as"),
    [
        ("photo.gif", None, "a GIF"),
        ("notes.jpeg.txt", b"just some text", "not in a recognised image format"),
        ("empty.png", b"", "empty"),
    ],
)
def test_unsupported_files_raise_a_clear_error(tmp_path, name, content, described_as):
    path = tmp_path / name
    if content is None:
        saved(Image.fromarray(data.astronaut()), path)
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    with pytest.raises(ValueError) as caught:
        write_caption_metadata(path, "a caption")
    assert str(path) in str(caught.value) and described_as in str(caught.value)
    assert path.read_bytes() == before


def test_damaged_photo_is_left_unchanged(tmp_path):
    path = tmp_path / "damaged.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe1\xff\xff" + b"garbage" * 10)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="damaged.jpg: cannot write caption metadata"):
        write_caption_metadata(path, "a caption")
    assert path.read_bytes() == before
    assert leftovers(tmp_path, "damaged.jpg") == set()


def test_caption_in_a_photo_with_a_non_utf8_name(tmp_path):
    photo = os.path.join(os.fsencode(tmp_path), b"caf\xe9.png")
    try:
        with open(photo, "wb") as file:
            Image.fromarray(data.coffee()).save(file, format="PNG")
    except OSError:
        pytest.skip("this file system only accepts UTF-8 file names")
    write_caption_metadata(photo, "a cup of coffee")
    assert read_caption_metadata(os.fsdecode(photo))["xmp"] == "a cup of coffee"


@pytest.mark.parametrize(
    ("field", "metadata", "described"),
    [
        ("XMP dc:description", {"xmp": {"Xmp.dc.description": {'lang="x-default"': "Mum"}}}, "Mum"),
        ("XMP dc:description", {"xmp": {"Xmp.dc.description": {'lang="de-DE"': "Oma"}}}, "Oma"),
        ("EXIF ImageDescription", {"exif": {"Exif.Image.ImageDescription": "Dad"}}, "Dad"),
        ("IPTC Caption-Abstract", {"iptc": {"Iptc.Application2.Caption": "Gran"}}, "Gran"),
    ],
)
def test_a_description_a_person_wrote_is_kept_unless_overwrite(jpeg, field, metadata, described):
    with pyexiv2.ImageData(jpeg.read_bytes()) as image:
        for kind, values in metadata.items():
            getattr(image, f"modify_{kind}")(values)
        jpeg.write_bytes(image.get_bytes())
    before = jpeg.read_bytes()
    assert existing_description(jpeg) == described

    with pytest.raises(FileExistsError) as caught:
        write_caption_metadata(jpeg, "a generated caption")
    message = str(caught.value)
    assert str(jpeg) in message and field in message and "overwrite" in message
    assert jpeg.read_bytes() == before
    assert leftovers(jpeg.parent, jpeg.name) == set()

    write_caption_metadata(jpeg, "a generated caption", overwrite=True)
    caption = "a generated caption"
    assert read_caption_metadata(jpeg) == {"xmp": caption, "exif": caption}


@pytest.mark.parametrize("placeholder", ["", "   ", "\x00\x00\x00\x00"])
def test_blank_descriptions_are_not_kept(jpeg, placeholder):
    """Cameras fill ImageDescription with spaces or NULs; that is no one's description."""
    with pyexiv2.ImageData(jpeg.read_bytes()) as image:
        image.modify_exif({"Exif.Image.ImageDescription": placeholder})
        image.modify_xmp({"Xmp.dc.description": {'lang="x-default"': placeholder}})
        jpeg.write_bytes(image.get_bytes())
    assert existing_description(jpeg) is None
    write_caption_metadata(jpeg, "a caption")
    assert read_caption_metadata(jpeg) == {"xmp": "a caption", "exif": "a caption"}


# --- every other tag is kept exactly --------------------------------------------------------------
# A photo as a person's tools leave it: big-endian EXIF with Exif and GPS sub-IFDs, IPTC with a
# TimeCreated without a zone (as many tools write it) and an IPTCDigest, and XMP.

FIDELITY_CAPTION = "a cup of coffee on a saucer"
IPTC_DIGEST_RESOURCE = 0x0425
IPTC_RESOURCE = 0x0404


def iptc_dataset(number: int, value: bytes) -> bytes:
    return b"\x1c\x02" + bytes([number]) + struct.pack(">H", len(value)) + value


IPTC_RECORD = b"".join(
    [
        iptc_dataset(0, b"\x00\x04"),  # record version
        iptc_dataset(25, b"coffee"),  # keywords
        iptc_dataset(25, b"cup"),
        iptc_dataset(80, b"A. Photographer"),  # by-line
        iptc_dataset(55, b"20240102"),  # date created
        iptc_dataset(60, b"101530"),  # time created, no zone
        iptc_dataset(90, b"Lyon"),  # city
    ]
)


def photoshop_resource(number: int, payload: bytes) -> bytes:
    padding = b"\x00" * (len(payload) % 2)
    return b"8BIM" + struct.pack(">H2xI", number, len(payload)) + payload + padding


PHOTOSHOP_RESOURCES = photoshop_resource(IPTC_RESOURCE, IPTC_RECORD) + photoshop_resource(
    IPTC_DIGEST_RESOURCE, hashlib.md5(IPTC_RECORD).digest()
)

XMP_PACKET = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Hand-made 1.0">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"
    xmp:Rating="4" photoshop:DateCreated="2024-01-02T10:15:30">
   <dc:creator><rdf:Seq><rdf:li>A. Photographer</rdf:li></rdf:Seq></dc:creator>
   <dc:subject><rdf:Bag><rdf:li>coffee</rdf:li><rdf:li>cup</rdf:li></rdf:Bag></dc:subject>
   <dc:title><rdf:Alt><rdf:li xml:lang="x-default">Morning</rdf:li></rdf:Alt></dc:title>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>""".encode()


def big_endian_exif() -> bytes:
    exif = Image.Exif()
    exif.endian = ">"
    exif[MAKE] = "TestCam"
    exif[0x0110] = "Model 7"  # Model
    exif[0x0131] = "Darkroom 2"  # Software
    exif[0x0132] = "2024:01:02 10:15:30"  # DateTime
    photo = exif.get_ifd(0x8769)
    photo[0x9003] = "2024:01:02 10:15:30"  # DateTimeOriginal
    photo[0x829A] = 1 / 125  # ExposureTime
    photo[0x8827] = 200  # ISO
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"  # GPSLatitudeRef
    gps[2] = (45.0, 45.0, 30.0)  # GPSLatitude
    encoded = exif.tobytes()
    assert encoded.startswith(b"Exif\x00\x00MM")
    return encoded


def jpeg_segments(encoded: bytes) -> list[bytes]:
    """Every marker segment before the scan, each with its marker and length."""
    segments, position = [], 2  # after SOI
    while encoded[position : position + 2] != b"\xff\xda":
        (length,) = struct.unpack(">H", encoded[position + 2 : position + 4])
        segments.append(encoded[position : position + 2 + length])
        position += 2 + length
    return segments


def with_jpeg_segment(encoded: bytes, marker: int, payload: bytes) -> bytes:
    """`encoded` with a new segment after its APPn segments."""
    position = 2
    while 0xE0 <= encoded[position + 1] <= 0xEF:
        (length,) = struct.unpack(">H", encoded[position + 2 : position + 4])
        position += 2 + length
    segment = bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload
    return encoded[:position] + segment + encoded[position:]


def png_raw_profile(name: str, payload: bytes) -> str:
    """ImageMagick's text encoding of a binary profile, which exiftool and Exiv2 read."""
    digits = payload.hex()
    lines = [digits[start : start + 72] for start in range(0, len(digits), 72)]
    return f"\n{name}\n{len(payload):8d}\n" + "\n".join(lines) + "\n"


def rich_photo(directory: pathlib.Path, kind: str) -> pathlib.Path:
    image = Image.fromarray(data.coffee())
    if kind == "jpeg":
        path = saved(image, directory / "rich.jpg", exif=big_endian_exif(), xmp=XMP_PACKET)
        irb = b"Photoshop 3.0\x00" + PHOTOSHOP_RESOURCES
        path.write_bytes(with_jpeg_segment(path.read_bytes(), 0xED, irb))
        return path
    if kind == "png":
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", XMP_PACKET.decode())
        info.add_text(
            "Raw profile type iptc", png_raw_profile("iptc", PHOTOSHOP_RESOURCES), zip=True
        )
        return saved(image, directory / "rich.png", exif=big_endian_exif(), pnginfo=info)
    if kind == "webp":  # WebP has no place for IPTC
        return saved(image, directory / "rich.webp", exif=big_endian_exif(), xmp=XMP_PACKET)
    # TIFF: the file is the EXIF; 16-bit big-endian samples make Pillow write it big-endian.
    if kind == "tiff-big-endian":
        samples = (data.camera().astype("u2") * 257).astype(">u2")
        image = Image.frombytes("I;16B", samples.shape[::-1], samples.tobytes())
    tags = {
        MAKE: "TestCam",
        0x0110: "Model 7",
        0x0131: "Darkroom 2",
        0x0132: "2024:01:02 10:15:30",
        700: XMP_PACKET,
        33723: IPTC_RECORD,
        34377: PHOTOSHOP_RESOURCES,
    }
    return saved(image, directory / f"{kind}.tif", tiffinfo=tags)


def exiv2_tags(path: pathlib.Path) -> dict[str, tuple[str, object]]:
    """Every EXIF, IPTC and XMP tag as Exiv2 reads it: key -> (type, value)."""
    with pyexiv2.ImageData(path.read_bytes()) as image:
        details = image.read_exif_detail() | image.read_iptc_detail() | image.read_xmp_detail()
    return {key: (detail["typeName"], detail["value"]) for key, detail in details.items()}


def exif_byte_order(path: pathlib.Path) -> bytes:
    if path.suffix == ".tif":
        return path.read_bytes()[:2]
    with Image.open(path) as image:
        return image.info["exif"].removeprefix(b"Exif\x00\x00")[:2]


def riff_chunks(encoded: bytes) -> list[tuple[bytes, bytes]]:
    chunks, position = [], 12  # after RIFF, size, WEBP
    while position < len(encoded):
        kind, length = struct.unpack("<4sI", encoded[position : position + 8])
        chunks.append((kind, encoded[position + 8 : position + 8 + length]))
        position += 8 + length + length % 2
    return chunks


def untouched_containers(path: pathlib.Path) -> list[bytes]:
    """The file's parts that hold neither EXIF nor XMP (IPTC, ICC, pixels...), raw."""
    encoded = path.read_bytes()
    if path.suffix == ".jpg":
        ours = (b"Exif\x00\x00", b"http://ns.adobe.com/xap/1.0/\x00")
        kept = [s for s in jpeg_segments(encoded) if not (s[1] == 0xE1 and s[4:].startswith(ours))]
        return kept + [jpeg_scan_data(encoded)]
    if path.suffix == ".png":
        chunks, position = [], 8
        while position < len(encoded):
            (length,) = struct.unpack(">I", encoded[position : position + 4])
            chunk = encoded[position : position + 12 + length]
            if chunk[4:8] != b"eXIf" and not chunk[8:].startswith(b"XML:com.adobe.xmp\x00"):
                chunks.append(chunk)
            position += 12 + length
        return chunks
    if path.suffix == ".webp":
        return [chunk for chunk in riff_chunks(encoded) if chunk[0] not in (b"EXIF", b"XMP ")]
    return []  # a TIFF is all EXIF: Exiv2 lists its IPTC and Photoshop tags with the others


FIDELITY_KINDS = ["jpeg", "png", "webp", "tiff", "tiff-big-endian"]
DESCRIPTION_KEYS = {"Exif.Image.ImageDescription", "Xmp.dc.description"}
# In a TIFF the XMP packet is itself an EXIF tag; its contents are compared tag by tag as XMP.
REWRITTEN_KEYS = DESCRIPTION_KEYS | {"Exif.Image.XMLPacket"}


def assert_only_the_description_changed(before, after, caption: str):
    assert {k: v for k, v in after.items() if k not in REWRITTEN_KEYS} == {
        k: v for k, v in before.items() if k not in REWRITTEN_KEYS
    }
    assert after["Exif.Image.ImageDescription"] == ("Ascii", caption)
    assert after["Xmp.dc.description"] == ("LangAlt", {'lang="x-default"': caption})


@pytest.mark.parametrize("kind", FIDELITY_KINDS)
def test_writing_the_caption_changes_no_other_tag(tmp_path, kind):
    photo = rich_photo(tmp_path, kind)
    tags, containers = exiv2_tags(photo), untouched_containers(photo)
    byte_order, pixels = exif_byte_order(photo), decoded_pixels(photo)
    assert byte_order == (b"II" if kind == "tiff" else b"MM")
    assert tags["Exif.Image.Make"] == ("Ascii", "TestCam") and "Xmp.dc.subject" in tags
    if kind != "webp":
        assert tags["Iptc.Application2.City"] == ("String", "Lyon")

    write_caption_metadata(photo, FIDELITY_CAPTION)

    assert_only_the_description_changed(tags, exiv2_tags(photo), FIDELITY_CAPTION)
    assert untouched_containers(photo) == containers  # IPTC and its digest byte for byte
    assert exif_byte_order(photo) == byte_order
    assert decoded_pixels(photo) == pixels
    assert pillow_view(photo) == (FIDELITY_CAPTION, FIDELITY_CAPTION)
    assert leftovers(tmp_path, photo.name) == set()


@pytest.mark.parametrize("kind", FIDELITY_KINDS)
def test_overwriting_a_description_changes_no_other_tag(tmp_path, kind):
    photo = rich_photo(tmp_path, kind)
    tags, containers = exiv2_tags(photo), untouched_containers(photo)
    write_caption_metadata(photo, "a hand-written description")
    before = photo.read_bytes()
    with pytest.raises(FileExistsError):
        write_caption_metadata(photo, FIDELITY_CAPTION)
    assert photo.read_bytes() == before

    # Longer, then shorter than what it replaces: the old text must not linger in the file.
    for caption in ["a much longer caption that no longer fits where the old one was", "cup"]:
        write_caption_metadata(photo, caption, overwrite=True)
        assert_only_the_description_changed(tags, exiv2_tags(photo), caption)
    assert untouched_containers(photo) == containers
    assert b"hand-written" not in photo.read_bytes()
    assert b"no longer fits" not in photo.read_bytes()


def photoshop_resources(block: bytes) -> dict[int, bytes]:
    resources, position = {}, 0
    while block.startswith(b"8BIM", position):
        (number, name_length) = struct.unpack(">HB", block[position + 4 : position + 7])
        position += 7 + name_length + (name_length + 1) % 2  # Pascal name padded to even
        (length,) = struct.unpack(">I", block[position : position + 4])
        resources[number] = block[position + 4 : position + 4 + length]
        position += 4 + length + length % 2
    return resources


def iptc_and_digest(path: pathlib.Path) -> tuple[bytes, bytes]:
    """The raw IPTC record and the IPTCDigest stored beside it, read without Exiv2."""
    if path.suffix == ".jpg":
        (irb,) = [s[4:] for s in jpeg_segments(path.read_bytes()) if s[1] == 0xED]
        resources = photoshop_resources(irb.removeprefix(b"Photoshop 3.0\x00"))
        return resources[IPTC_RESOURCE], resources[IPTC_DIGEST_RESOURCE]
    with Image.open(path) as image:
        if path.suffix == ".png":
            profile = image.info["Raw profile type iptc"].split("\n")
            irb = bytes.fromhex("".join(profile[3:]))
            resources = photoshop_resources(irb)
            return resources[IPTC_RESOURCE], resources[IPTC_DIGEST_RESOURCE]
        record, irb = image.tag_v2[33723], image.tag_v2[34377]
        return bytes(record), photoshop_resources(bytes(irb))[IPTC_DIGEST_RESOURCE]


@pytest.mark.parametrize("kind", ["jpeg", "png", "tiff", "tiff-big-endian"])
def test_iptc_time_and_digest_are_kept(tmp_path, kind):
    """Exiv2 used to re-encode IPTC: TimeCreated 101530 became 101530+0000, breaking the digest."""
    photo = rich_photo(tmp_path, kind)
    assert iptc_and_digest(photo) == (IPTC_RECORD, hashlib.md5(IPTC_RECORD).digest())
    write_caption_metadata(photo, FIDELITY_CAPTION)
    assert iptc_and_digest(photo) == (IPTC_RECORD, hashlib.md5(IPTC_RECORD).digest())


@pytest.mark.parametrize("kind", ["jpeg", "png", "webp", "tiff-big-endian"])
def test_big_endian_exif_stays_big_endian(tmp_path, kind):
    """Exiv2 used to re-encode PNG and WebP EXIF little-endian."""
    photo = rich_photo(tmp_path, kind)
    assert exif_byte_order(photo) == b"MM"
    write_caption_metadata(photo, FIDELITY_CAPTION)
    assert exif_byte_order(photo) == b"MM"
    with Image.open(photo) as image:
        assert image.getexif()[MAKE] == "TestCam"


def exiftool_tags(path: pathlib.Path) -> dict[str, object]:
    output = subprocess.run(
        ["exiftool", "-json", "-a", "-G1", "-n", "-b", str(path)],
        capture_output=True,
        check=True,
    ).stdout
    (tags,) = json.loads(output)
    return {
        key: value for key, value in tags.items() if not key.startswith(("System:", "SourceFile"))
    }


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed")
@pytest.mark.parametrize("kind", FIDELITY_KINDS)
def test_exiftool_sees_only_the_description_change(tmp_path, kind):
    """A second, independent reader: it also sees the IPTC digest and raw IPTC values."""
    photo = rich_photo(tmp_path, kind)
    before = exiftool_tags(photo)
    assert before["IPTC:TimeCreated" if kind != "webp" else "IFD0:Make"]
    write_caption_metadata(photo, FIDELITY_CAPTION)
    after = exiftool_tags(photo)
    # The XMP toolkit field names the program that last wrote the XMP packet, now Exiv2.
    changed = {"IFD0:ImageDescription", "XMP-dc:Description", "XMP-x:XMPToolkit"}
    # In a TIFF the XMP packet is also an IFD0 tag, and the file size is in the directory.
    changed |= {"IFD0:ApplicationNotes", "IFD0:XMP"}
    assert {k: v for k, v in after.items() if k not in changed} == {
        k: v for k, v in before.items() if k not in changed
    }
    assert after["IFD0:ImageDescription"] == after["XMP-dc:Description"] == FIDELITY_CAPTION


def test_caption_beside_latin1_text_from_an_old_camera(tmp_path):
    """One Latin-1 tag must not make the UTF-8 caption read back as mojibake (or be refused)."""
    exif = Image.Exif()
    exif[0x013B] = b"Jos\xe9"  # Artist, Latin-1 as older cameras wrote it
    photo = saved(Image.fromarray(data.coffee()), tmp_path / "old.jpg", exif=exif)
    write_caption_metadata(photo, NON_ASCII_CAPTION)
    assert read_caption_metadata(photo) == {"xmp": NON_ASCII_CAPTION, "exif": NON_ASCII_CAPTION}
    with Image.open(photo) as image:
        assert image.getexif()[0x013B] == "Jos\xe9"


@pytest.mark.parametrize("chunk", ["zTXt", "tEXt"])
def test_png_with_exif_as_imagemagick_text_gets_the_caption_there(tmp_path, chunk):
    """Before eXIf, EXIF went into a hex text chunk; a second EXIF block would split the tags."""
    info = PngImagePlugin.PngInfo()
    profile = png_raw_profile("exif", big_endian_exif())
    info.add_text("Raw profile type exif", profile, zip=chunk == "zTXt")
    photo = saved(Image.fromarray(data.coffee()), tmp_path / "magick.png", pnginfo=info)
    tags = exiv2_tags(photo)
    assert tags["Exif.Photo.ISOSpeedRatings"] == ("Short", "200")

    write_caption_metadata(photo, FIDELITY_CAPTION)

    assert_only_the_description_changed(tags, exiv2_tags(photo), FIDELITY_CAPTION)
    encoded = photo.read_bytes()
    assert png_chunks(encoded, b"eXIf") == [] and len(png_chunks(encoded, chunk.encode())) == 1
    with Image.open(photo) as image:
        assert image.info["Raw profile type exif"] != profile


def test_a_long_description_is_shortened_in_the_message(jpeg):
    with pyexiv2.ImageData(jpeg.read_bytes()) as image:
        image.modify_exif({"Exif.Image.ImageDescription": "word " * 100 + "end"})
        jpeg.write_bytes(image.get_bytes())
    with pytest.raises(FileExistsError) as caught:
        write_caption_metadata(jpeg, "a caption")
    assert "word word" in str(caught.value) and "end" not in str(caught.value)
    assert existing_description(jpeg) == "word " * 100 + "end"


def test_a_repeated_image_description_is_found_and_replaced(tmp_path):
    """pyexiv2 gives a list when a tag repeats; a blank first one must not hide the second."""

    def ascii_entry(value: bytes) -> bytes:
        return struct.pack(">HHI", IMAGE_DESCRIPTION, 2, len(value)) + value.ljust(4, b"\x00")

    ifd0 = struct.pack(">H", 2) + ascii_entry(b" \x00") + ascii_entry(b"Dad\x00") + bytes(4)
    tiff = b"MM\x00*" + struct.pack(">I", 8) + ifd0
    photo = saved(Image.fromarray(data.coffee()), tmp_path / "repeated.jpg")
    photo.write_bytes(with_jpeg_segment(photo.read_bytes(), 0xE1, b"Exif\x00\x00" + tiff))
    assert existing_description(photo) == "Dad"
    with pytest.raises(FileExistsError, match="EXIF ImageDescription"):
        write_caption_metadata(photo, "a caption")

    write_caption_metadata(photo, "a caption", overwrite=True)
    assert exiv2_tags(photo)["Exif.Image.ImageDescription"] == ("Ascii", "a caption")
    assert b"Dad" not in photo.read_bytes()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("read", [read_caption_metadata, existing_description])
def test_a_fifo_in_place_of_a_photo_is_refused_not_waited_on(tmp_path, read):
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file but a FIFO"):
        read(fifo)
    with pytest.raises(ValueError, match="not a regular file but a FIFO"):
        write_caption_metadata(fifo, "a cat")
