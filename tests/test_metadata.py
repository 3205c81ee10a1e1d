import os
import pathlib
import stat
import struct
import xml.etree.ElementTree as ElementTree

import pyexiv2
import pytest
from PIL import Image
from skimage import data

from captioner.metadata import (
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


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif", ".webp"])
def test_non_ascii_caption_round_trip(tmp_path, suffix):
    path = saved(Image.fromarray(data.coffee()), tmp_path / f"coffee{suffix}")
    assert read_caption_metadata(path) == {}
    write_caption_metadata(path, NON_ASCII_CAPTION)
    assert read_caption_metadata(path) == {"xmp": NON_ASCII_CAPTION, "exif": NON_ASCII_CAPTION}
    with Image.open(path) as image:
        # EXIF holds UTF-8 bytes; Pillow decodes EXIF text as Latin-1, so undo that to compare.
        exif_text = image.getexif()[IMAGE_DESCRIPTION]
        assert exif_text.encode("latin-1").decode("utf-8") == NON_ASCII_CAPTION


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
