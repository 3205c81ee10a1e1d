import os
import pathlib
import pickle
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image
from skimage import data

from captioner.photos import images
from captioner.photos.images import ImageError, load_image, source_name

RED, BLUE, GRAY, WHITE = (255, 0, 0), (0, 0, 255), (128, 128, 128), (255, 255, 255)
RUNNING_AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def pixel(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    return tuple(np.asarray(image)[xy[1], xy[0]].tolist())


def assert_close(actual, expected, tolerance=3):
    assert np.allclose(actual, expected, atol=tolerance), f"{actual} != {expected}"


def saved(image: Image.Image, path: pathlib.Path, **options) -> pathlib.Path:
    image.save(path, **options)
    return path


def png_claiming_size(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but whose pixel data is only a few bytes."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


class PathLikeWrapper:
    def __init__(self, path):
        self.path = path

    def __fspath__(self):
        return self.path


# --- paths, formats, identity -------------------------------------------------------------------


def test_every_path_type_loads_the_same_pixels(tmp_path):
    path = saved(Image.fromarray(data.chelsea()), tmp_path / "cat.png")
    expected = data.chelsea()
    for source in (str(path), path, PathLikeWrapper(str(path)), os.fsencode(path)):
        image = load_image(source)
        assert image.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(image), expected)


def test_jpeg_decodes_close_to_the_original(tmp_path):
    original = data.astronaut()
    path = saved(Image.fromarray(original), tmp_path / "astronaut.jpg", quality=95)
    image = load_image(path)
    assert image.size == (512, 512) and image.mode == "RGB"
    assert np.abs(np.asarray(image, dtype=float) - original).mean() < 3


def test_lossless_webp_is_pixel_exact(tmp_path):
    path = saved(Image.fromarray(data.coffee()), tmp_path / "coffee.webp", lossless=True)
    np.testing.assert_array_equal(np.asarray(load_image(path)), data.coffee())


def test_one_pixel_image(tmp_path):
    path = saved(Image.new("RGB", (1, 1), BLUE), tmp_path / "dot.png")
    image = load_image(path, min_size=224)  # never upscaled here
    assert image.size == (1, 1) and pixel(image, (0, 0)) == BLUE


def test_callers_pil_image_is_not_modified():
    caller = Image.new("RGBA", (4, 3), (10, 20, 30, 0))
    before = caller.tobytes()
    image = load_image(caller)
    assert image is not caller
    assert caller.mode == "RGBA" and caller.tobytes() == before
    assert pixel(image, (0, 0)) == WHITE


def test_rgb_pil_image_is_returned_as_a_copy():
    caller = Image.fromarray(data.chelsea())
    image = load_image(caller)
    image.putpixel((0, 0), RED)
    assert pixel(caller, (0, 0)) != RED


def test_callers_upright_photo_is_reduced_without_a_full_size_copy(monkeypatch):
    caller = Image.fromarray(data.astronaut()).resize((1200, 1200))
    copied = []
    copy = Image.Image.copy
    monkeypatch.setattr(Image.Image, "copy", lambda self: copied.append(self.size) or copy(self))
    image = load_image(caller, min_size=224)
    assert image.size == (240, 240)  # reduce(5)
    assert (1200, 1200) not in copied  # 2 ms of the caption of a 12-megapixel photo


def test_callers_turned_photo_comes_back_upright_and_theirs_stays_turned():
    caller = Image.new("RGB", (300, 200), GRAY)
    caller.paste(RED, (0, 0, 50, 50))
    caller.getexif()[0x0112] = 6  # display = stored rotated 90 degrees clockwise
    image = load_image(caller)
    assert image.size == (200, 300)
    assert pixel(image, (175, 25)) == RED
    assert caller.size == (300, 200) and caller.getexif()[0x0112] == 6


def test_file_handles_are_closed(tmp_path):
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd to count open files")
    good = saved(Image.fromarray(data.astronaut()), tmp_path / "good.jpg")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(good.read_bytes()[:5000])
    before = open_descriptors()
    for _ in range(20):
        load_image(good, min_size=100)
        with pytest.raises(ImageError):
            load_image(broken)
    assert open_descriptors() == before


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".gif", ".webp", ".tif", ".bmp"])
def test_every_allowed_format_loads(tmp_path, suffix):
    path = saved(Image.new("RGB", (6, 4), BLUE), tmp_path / f"photo{suffix}")
    assert_close(pixel(load_image(path), (3, 2)), BLUE)  # JPEG and WebP are lossy
    assert images.image_size(path) == (6, 4)


@pytest.fixture
def ghostscript_calls(monkeypatch):
    """Every time Pillow's EPS plugin would start Ghostscript; it is not started."""
    from PIL import EpsImagePlugin

    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise OSError("Ghostscript was asked to render a PostScript file")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", refuse)
    return calls


@pytest.mark.parametrize("name", ["photo.jpg", "drawing.eps"])
def test_postscript_is_refused_without_starting_ghostscript(tmp_path, ghostscript_calls, name):
    path = saved(Image.new("RGB", (4, 4), RED), tmp_path / name, format="EPS")
    assert path.read_bytes().startswith(b"%!PS")
    expect_failure(path, "format not supported: EPS")
    with pytest.raises(ImageError, match="format not supported: EPS"):
        images.image_size(path)
    # Binary (DOS) EPS: a header pointing at the PostScript, as Adobe applications write it.
    postscript = path.read_bytes()
    header = struct.pack("<4sIIIIIIH", b"\xc5\xd0\xd3\xc6", 30, len(postscript), 0, 0, 0, 0, 0xFFFF)
    path.write_bytes(header + postscript)
    expect_failure(path, "format not supported: EPS")
    with Image.open(path) as opened_by_the_caller:  # a caller's EPS image is not rendered either
        expect_failure(opened_by_the_caller, "format not supported: EPS")
    assert ghostscript_calls == []


@pytest.mark.parametrize(
    "text",
    [
        '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>',
        '\ufeff<?xml version="1.0"?>\n<!-- drawn by hand -->\n<svg xmlns="http://www.w3.org/2000/svg"/>',
    ],
)
def test_svg_says_its_format_is_not_supported(tmp_path, text):
    (tmp_path / "logo.jpg").write_text(text, encoding="utf-8")
    expect_failure(tmp_path / "logo.jpg", "format not supported: SVG")


@pytest.mark.parametrize("kind, suffix", [("PPM", ".ppm"), ("ICO", ".ico"), ("PCX", ".pcx")])
def test_formats_pillow_reads_but_photos_do_not_use_are_refused(tmp_path, kind, suffix):
    path = saved(Image.new("RGB", (16, 16), RED), tmp_path / f"picture{suffix}")
    assert Image.open(path).format == kind
    expect_failure(path, f"format not supported: {kind}")


# --- colour modes -------------------------------------------------------------------------------


def test_rgba_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (3, 1))
    rgba.putpixel((0, 0), (0, 0, 0, 0))  # fully transparent black
    rgba.putpixel((1, 0), (255, 0, 0, 128))  # half transparent red
    rgba.putpixel((2, 0), (0, 0, 255, 255))  # opaque blue
    image = load_image(saved(rgba, tmp_path / "rgba.png"))
    assert pixel(image, (0, 0)) == WHITE
    assert_close(pixel(image, (1, 0)), (255, 127, 127), tolerance=1)
    assert pixel(image, (2, 0)) == BLUE


def test_la_is_composited_on_white(tmp_path):
    la = Image.new("LA", (2, 1))
    la.putpixel((0, 0), (0, 0))
    la.putpixel((1, 0), (100, 255))
    image = load_image(saved(la, tmp_path / "la.png"))
    assert pixel(image, (0, 0)) == WHITE
    assert pixel(image, (1, 0)) == (100, 100, 100)


def test_palette_with_transparent_index_becomes_white(tmp_path):
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 255, 0, 0])  # index 0 black, index 1 red
    palette.putpixel((0, 0), 0)
    palette.putpixel((1, 0), 1)
    path = saved(palette, tmp_path / "palette.png", transparency=0)
    assert Image.open(path).mode == "P"
    image = load_image(path)
    assert pixel(image, (0, 0)) == WHITE
    assert pixel(image, (1, 0)) == RED


def test_palette_without_transparency_keeps_colours(tmp_path):
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 0, 0, 255])
    palette.putpixel((1, 0), 1)
    image = load_image(saved(palette, tmp_path / "palette.png"))
    assert pixel(image, (0, 0)) == (0, 0, 0)
    assert pixel(image, (1, 0)) == BLUE


def test_rgb_with_transparent_colour_key_becomes_white(tmp_path):
    rgb = Image.new("RGB", (2, 1), (0, 0, 0))
    rgb.putpixel((1, 0), BLUE)
    image = load_image(saved(rgb, tmp_path / "keyed.png", transparency=(0, 0, 0)))
    assert pixel(image, (0, 0)) == WHITE
    assert pixel(image, (1, 0)) == BLUE


def test_grayscale_and_bilevel(tmp_path):
    gray = Image.fromarray(np.array([[0, 77, 255]], dtype=np.uint8))
    image = load_image(saved(gray, tmp_path / "gray.png"))
    assert [pixel(image, (x, 0)) for x in range(3)] == [(0, 0, 0), (77, 77, 77), WHITE]

    bilevel = Image.new("1", (2, 1), 0)
    bilevel.putpixel((1, 0), 1)
    image = load_image(saved(bilevel, tmp_path / "bilevel.png"))
    assert pixel(image, (0, 0)) == (0, 0, 0) and pixel(image, (1, 0)) == WHITE


def test_adobe_inverted_cmyk_jpeg(tmp_path):
    cmyk = Image.new("CMYK", (32, 16), (255, 0, 0, 0))  # left: pure cyan
    cmyk.paste((0, 0, 0, 255), (16, 0, 32, 16))  # right: pure black
    path = saved(cmyk, tmp_path / "cmyk.jpg", quality=95)
    assert b"Adobe" in path.read_bytes()  # Pillow writes the inverted Adobe variant
    image = load_image(path)
    assert_close(pixel(image, (4, 8)), (0, 255, 255))
    assert_close(pixel(image, (28, 8)), (0, 0, 0))


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 32896, 65535, 1000]], dtype=np.uint16)
    path = saved(Image.fromarray(values), tmp_path / "deep.png")
    assert Image.open(path).mode.startswith("I;16")
    image = load_image(path)
    assert [pixel(image, (x, 0))[0] for x in range(4)] == [0, 128, 255, 4]


def test_32_bit_integer_and_float_images():
    sixteen_bit = Image.fromarray(np.array([[0, 65535, 70000, -5]], dtype=np.int32))
    assert [pixel(load_image(sixteen_bit), (x, 0))[0] for x in range(4)] == [0, 255, 255, 0]
    eight_bit = Image.fromarray(np.array([[0, 200]], dtype=np.int32))
    assert [pixel(load_image(eight_bit), (x, 0))[0] for x in range(2)] == [0, 200]

    unit_range = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert [pixel(load_image(unit_range), (x, 0))[0] for x in range(3)] == [0, 128, 255]
    byte_range = Image.fromarray(np.array([[0.0, 64.0, 300.0]], dtype=np.float32))
    assert [pixel(load_image(byte_range), (x, 0))[0] for x in range(3)] == [0, 64, 255]


def modes_with_wide_values_or_alpha() -> list[Image.Image]:
    """Images in every mode converted a strip at a time, with values across each mode's range."""
    rng = np.random.default_rng(0)
    shape = (7, 5)
    palette = Image.fromarray(rng.integers(0, 4, shape, dtype=np.uint8), "L").convert("P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255, 9, 99, 199])
    palette.info["transparency"] = 2
    keyed = Image.fromarray(rng.integers(0, 2, (*shape, 3), dtype=np.uint8) * 255)
    keyed.info["transparency"] = (0, 0, 0)
    return [
        Image.fromarray(rng.integers(0, 65536, shape, dtype=np.uint16)),  # I;16
        Image.fromarray(rng.integers(-9, 70000, shape, dtype=np.int32)),  # I, 16-bit range
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.int32)),  # I, 8-bit range
        Image.fromarray(rng.uniform(0, 1, shape).astype(np.float32)),  # F, unit range
        Image.fromarray(rng.uniform(-5, 300, shape).astype(np.float32)),  # F, byte range
        Image.fromarray(rng.integers(0, 256, (*shape, 4), dtype=np.uint8)),  # RGBA
        Image.fromarray(rng.integers(0, 256, (*shape, 2), dtype=np.uint8), "LA"),
        palette,
        keyed,
    ]


def test_converting_in_strips_gives_the_whole_image_result(monkeypatch):
    whole = [np.asarray(load_image(image)) for image in modes_with_wide_values_or_alpha()]
    monkeypatch.setattr(images, "_STRIP_PIXELS", 1)  # one row at a time
    for image, expected in zip(modes_with_wide_values_or_alpha(), whole, strict=True):
        np.testing.assert_array_equal(np.asarray(load_image(image)), expected, err_msg=image.mode)


PEAK_MEMORY = """
import sys
from captioner.photos.images import load_image

def peak_rss():  # this process's own high-water mark; ru_maxrss would include its parent's
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM"))

before = peak_rss()
image = load_image(sys.argv[1])
print(peak_rss() - before)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmHWM from /proc")
@pytest.mark.parametrize("mode", ["I;16", "RGBA"])
def test_peak_memory_is_a_small_multiple_of_the_rgb_result(tmp_path, mode):
    """A 16-bit 10950 x 10950 scan peaked at 3.3 GB (float64 copies), RGBA at 2.0 GB."""
    size = 3000
    ramp = np.add.outer(np.arange(size), np.arange(size))  # compresses well: a quick test
    if mode == "I;16":
        image = Image.fromarray((ramp * 10).astype(np.uint16))
    else:
        image = Image.fromarray(
            (np.dstack([ramp, ramp // 2, ramp // 3, ramp // 4]) % 256).astype(np.uint8)
        )
    path = saved(image, tmp_path / "large.png", compress_level=1)
    del image, ramp
    with Image.open(path) as opened:
        assert opened.mode == mode
    run = subprocess.run(
        [sys.executable, "-c", PEAK_MEMORY, str(path)], capture_output=True, text=True, check=True
    )
    rgb_bytes = size * size * 4  # Pillow keeps RGB pixels in 4 bytes
    assert int(run.stdout) < 3 * rgb_bytes  # before the fix: 7x for I;16, 4.3x for RGBA


@pytest.mark.parametrize("suffix", [".gif", ".webp"])
def test_animation_gives_its_first_frame(tmp_path, suffix):
    frames = [Image.new("RGB", (8, 8), colour) for colour in (RED, BLUE, GRAY)]
    path = tmp_path / f"animated{suffix}"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, lossless=True)
    assert Image.open(path).n_frames == 3
    assert_close(pixel(load_image(path), (4, 4)), RED)


# --- orientation and reduced decoding -----------------------------------------------------------


def test_exif_orientation_6_comes_back_upright(tmp_path):
    stored = Image.new("RGB", (300, 200), GRAY)
    stored.paste(RED, (0, 0, 50, 50))  # marker in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise
    path = saved(stored, tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    image = load_image(path)
    assert image.size == (200, 300)
    assert_close(pixel(image, (175, 25)), RED, tolerance=8)  # now in the top-right corner
    assert_close(pixel(image, (25, 25)), GRAY, tolerance=8)


@pytest.fixture(scope="module")
def large_jpeg(tmp_path_factory):
    photo = Image.fromarray(data.astronaut()).resize((4000, 3000), Image.Resampling.BILINEAR)
    return saved(photo, tmp_path_factory.mktemp("large") / "large.jpg", quality=90)


@pytest.mark.parametrize(("min_size", "expected_size"), [(300, (500, 375)), (1000, (2000, 1500))])
def test_jpeg_draft_decodes_small_but_not_below_min_size(large_jpeg, min_size, expected_size):
    image = load_image(large_jpeg, min_size=min_size)
    assert image.size == expected_size  # DCT scaling by 1/8 and 1/2
    assert min(image.size) >= min_size
    full = load_image(large_jpeg).resize(image.size, Image.Resampling.BOX)
    assert np.abs(np.asarray(image, dtype=float) - np.asarray(full, dtype=float)).mean() < 4


def test_other_formats_are_reduced_by_a_whole_factor(tmp_path):
    photo = Image.fromarray(data.coffee()).resize((1300, 1000))
    image = load_image(saved(photo, tmp_path / "big.png"), min_size=300)
    assert image.size == (434, 334)  # reduce(3), rounded up
    assert load_image(photo, min_size=300).size == (434, 334)


# --- size limits --------------------------------------------------------------------------------


def test_header_above_max_pixels_is_refused_before_decoding(tmp_path, recwarn):
    path = tmp_path / "claims_121_megapixels.png"
    path.write_bytes(png_claiming_size(11000, 11000))
    with pytest.raises(ImageError) as caught:
        load_image(path)
    # The pixel data is only a few bytes: had it been decoded, the error would be "truncated".
    assert caught.value.reason.startswith("image is 11000 x 11000 pixels, above the limit of")
    assert "120,000,000" in caught.value.reason
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_absurd_header_is_refused_without_allocating(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming_size(100_000, 100_000))  # 30 GB of RGB if decoded
    with pytest.raises(ImageError, match="too large to decode safely"):
        load_image(path)


def test_max_pixels_is_the_callers_choice(tmp_path):
    path = saved(Image.new("RGB", (100, 60)), tmp_path / "small.png")
    with pytest.raises(ImageError, match="100 x 60 pixels, above the limit of 5,000"):
        load_image(path, max_pixels=5000)
    with pytest.raises(ImageError, match="above the limit"):
        load_image(Image.new("RGB", (100, 60)), max_pixels=5000)
    assert load_image(path, max_pixels=6000).size == (100, 60)


# --- failures -----------------------------------------------------------------------------------


def expect_failure(source, reason_part: str) -> ImageError:
    with pytest.raises(ImageError) as caught:
        load_image(source)
    error = caught.value
    assert reason_part in error.reason
    assert str(error) == f"{error.path}: {error.reason}"
    return error


def test_missing_file(tmp_path):
    error = expect_failure(tmp_path / "nowhere.jpg", "file not found")
    assert error.path == str(tmp_path / "nowhere.jpg")


def test_directory_named_like_a_photo(tmp_path):
    (tmp_path / "x.jpg").mkdir()
    expect_failure(tmp_path / "x.jpg", "is a directory")


def test_broken_symlink(tmp_path):
    link = tmp_path / "link.jpg"
    try:
        link.symlink_to(tmp_path / "deleted.jpg")
    except OSError:
        pytest.skip("this file system does not allow symbolic links")
    expect_failure(link, "broken symbolic link")


def test_empty_file(tmp_path):
    (tmp_path / "empty.jpg").touch()
    expect_failure(tmp_path / "empty.jpg", "file is empty (0 bytes)")


def test_text_file_named_jpg(tmp_path):
    (tmp_path / "notes.jpg").write_text("shopping list: eggs, milk\n")
    expect_failure(tmp_path / "notes.jpg", "not an image")


def test_truncated_jpeg(tmp_path):
    complete = saved(Image.fromarray(data.astronaut()), tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(complete[: len(complete) // 2])
    expect_failure(tmp_path / "cut.jpg", "truncated or corrupt")


@pytest.mark.parametrize(("suffix", "kept_bytes"), [(".jpg", 40), (".png", 12), (".webp", 14)])
def test_file_cut_inside_its_header(tmp_path, suffix, kept_bytes):
    complete = saved(Image.fromarray(data.astronaut()), tmp_path / f"full{suffix}").read_bytes()
    (tmp_path / f"stub{suffix}").write_bytes(complete[:kept_bytes])
    expect_failure(tmp_path / f"stub{suffix}", "header is truncated or damaged")


@pytest.mark.skipif(images.pillow_heif is not None, reason="pillow-heif is installed")
def test_heic_without_pillow_heif_says_what_to_install(tmp_path):
    (tmp_path / "phone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(64))
    expect_failure(tmp_path / "phone.heic", "install the 'heic' extra")


@pytest.mark.skipif(RUNNING_AS_ROOT, reason="root can read a file whatever its permission bits")
def test_unreadable_file(tmp_path):
    path = saved(Image.new("RGB", (4, 4)), tmp_path / "secret.png")
    path.chmod(0)
    try:
        expect_failure(path, "permission denied")
    finally:
        path.chmod(0o644)


def test_permission_error_while_opening_is_reported(tmp_path, monkeypatch):
    # Runs even as root: stands in for the open() failure that test_unreadable_file provokes.
    path = saved(Image.new("RGB", (4, 4)), tmp_path / "secret.png")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(images, "open", refuse, raising=False)
    expect_failure(path, "permission denied")


def test_non_utf8_file_name(tmp_path):
    directory = os.fsencode(tmp_path)
    photo_name = os.path.join(directory, b"caf\xe9.png")
    text_name = os.path.join(directory, b"not\xff.jpg")
    try:
        with open(photo_name, "wb") as file:
            Image.new("RGB", (3, 2), BLUE).save(file, format="PNG")
        with open(text_name, "wb") as file:
            file.write(b"hello")
    except OSError:
        pytest.skip("this file system only accepts UTF-8 file names")
    for source in (photo_name, os.fsdecode(photo_name), pathlib.Path(os.fsdecode(photo_name))):
        image = load_image(source)
        assert image.size == (3, 2) and pixel(image, (0, 0)) == BLUE

    error = expect_failure(text_name, "not an image")
    assert error.path.endswith("not\\xff.jpg")
    str(error).encode("utf-8")  # printable: no lone surrogates in the message


def test_image_error_survives_pickling():
    error = pickle.loads(pickle.dumps(ImageError("a.jpg", "file is empty (0 bytes)")))
    assert (error.path, error.reason, str(error)) == (
        "a.jpg",
        "file is empty (0 bytes)",
        "a.jpg: file is empty (0 bytes)",
    )


def test_source_name():
    assert source_name("/photos/a.jpg") == "/photos/a.jpg"
    assert source_name(pathlib.Path("/photos/a.jpg")) == "/photos/a.jpg"
    assert source_name(Image.new("RGB", (640, 480))) == "<PIL.Image 640x480 RGB>"


def test_min_size_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="min_size"):
        load_image(Image.new("RGB", (4, 4)), min_size=0)
