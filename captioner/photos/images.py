"""Opening photos: the one place an image file is read, checked and turned into upright RGB.

Everything that captions a photo (the batch CLI, the GUI, the dataset code) goes through
`load_image`, so every odd file a user might point at fails here, with an `ImageError` that
names the file and says what is wrong, instead of deep inside the model.
"""

import functools
import os
import stat
import struct
import warnings
from collections.abc import Callable, Iterator
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

# The formats photos come in, and the only Pillow plugins a photo file is opened with. Pillow
# reads many more, some through outside programs (EPS runs Ghostscript, a long record of
# security holes), and a file's name says nothing about which plugin would read it.
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP")

try:
    import pillow_heif
except ImportError:  # optional extra: without it HEIC files get a hint instead of a decode
    pillow_heif = None
else:
    pillow_heif.register_heif_opener()
    ALLOWED_FORMATS += ("HEIF",)

ImageSource = str | bytes | os.PathLike | Image.Image

_WHITE = (255, 255, 255)
# EXIF orientations that turn or flip the stored pixels (1 is upright).
_TURNS = range(2, 9)
# Formats an image opened with ALLOWED_FORMATS may report: Pillow's JPEG plugin opens
# multi-picture JPEGs (MPO) from stereo and some phone cameras as their own format.
_OPENED_AS_ALLOWED = (*ALLOWED_FORMATS, "MPO")
# An SVG's <svg> tag may follow an XML prologue, comments and a DOCTYPE.
_SNIFF_BYTES = 4096
# Pixels converted at a time from 16/32-bit and transparent modes: temporaries of a few MB.
_STRIP_PIXELS = 1 << 18
_HEIC_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")
# Signatures of formats Pillow reads; a file that starts like one but fails to open is damaged.
_SIGNATURES = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"GIF8": "GIF",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}
_NOT_REGULAR_FILES = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class ImageError(Exception):
    """A photo that cannot be captioned. `path` names it, `reason` says why in plain words."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self):
        # Batch workers run in other processes; keep the exception picklable with both fields.
        return type(self), (self.path, self.reason)


def source_name(source: ImageSource) -> str:
    """A printable name for error messages and reports (not for reopening the file).

    Paths come back as text; bytes that are not valid in the file system encoding are shown as
    backslash escapes, so the name can always be printed or shown in the GUI.
    """
    if isinstance(source, Image.Image):
        width, height = source.size
        return f"<PIL.Image {width}x{height} {source.mode}>"
    name = os.fsdecode(source)
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def load_image(
    source: ImageSource, *, min_size: int | None = None, max_pixels: int = 120_000_000
) -> Image.Image:
    """Return `source` as a fully decoded, upright (EXIF orientation applied) RGB image.

    min_size: the smallest side length the caller needs. Large photos are decoded at a reduced
    size (JPEG DCT scaling, then an integer box reduction) while both sides stay >= min_size;
    the final resize to the model's input size is left to the encoder.
    max_pixels: files whose header claims more pixels are refused before any pixel is decoded.

    Files are opened only as one of ALLOWED_FORMATS, and a caller's PIL image read from a file
    must be one of them too; anything else is "format not supported: <format>". A caller's PIL
    image is never modified. Raises ImageError for anything that cannot be read.
    """
    if min_size is not None and min_size < 1:
        raise ValueError(f"min_size must be a positive number of pixels, got {min_size}")
    name = source_name(source)
    if isinstance(source, Image.Image):
        # A caller's image opened from a file keeps its format, and loading it would run the
        # plugin that would never have opened it here; images made in memory have none.
        if source.format is not None and source.format not in _OPENED_AS_ALLOWED:
            raise ImageError(name, f"format not supported: {source.format}")
        _check_pixel_count(name, source.size, max_pixels)
        image = _decode(name, source, ours=False)
        return _normalise(name, image, min_size, ours=False)

    path = os.fspath(source)
    try:
        with _open_file(name, path) as file:
            if os.fstat(file.fileno()).st_size == 0:
                raise ImageError(name, "file is empty (0 bytes)")
            with _open_header(name, file) as image:
                _check_pixel_count(name, image.size, max_pixels)
                if min_size is not None:
                    # Only JPEG (and MPO) decoders implement draft; for other formats it is a no-op.
                    image.draft("RGB", (min_size, min_size))
                decoded = _decode(name, image, ours=True)
    except OSError as error:
        raise _read_error(name, error) from None
    return _normalise(name, decoded, min_size)


def image_size(source: str | bytes | os.PathLike) -> tuple[int, int]:
    """(width, height) of a photo file as its header states them (before EXIF orientation);
    no pixel is decoded. Raises ImageError as load_image does."""
    name = source_name(source)
    path = os.fspath(source)
    try:
        with _open_file(name, path) as file, _open_header(name, file) as image:
            return image.size
    except OSError as error:
        raise _read_error(name, error) from None


def open_photo_file(source: str | bytes | os.PathLike) -> BinaryIO:
    """The photo file opened for binary reading, for code that reads its bytes itself (Qt's
    thumbnail reader, the metadata writer). Raises ImageError unless it is a regular file,
    checked on the path and again on the opened file, so a FIFO swapped in never blocks."""
    name = source_name(source)
    try:
        return _open_file(name, os.fspath(source))
    except OSError as error:
        raise _read_error(name, error) from None


def _open_file(name: str, path: str | bytes) -> BinaryIO:
    """Open a photo file for reading; anything but a regular file is refused before a read.

    The path is looked at first, so a device or FIFO named as a photo is never opened. The
    opened file is checked again, as the path may have been swapped for one since (another
    process can win that race). Raises ImageError, or OSError for the caller's _read_error.
    """
    _check_is_readable_file(name, path)
    return open(path, "rb", opener=functools.partial(_open_regular_file, name))


def _open_regular_file(name: str, path: str | bytes, flags: int) -> int:
    """open()'s opener: a descriptor of `path` if, opened, it is a regular file.

    Opened without blocking, so a FIFO cannot make the open wait for a writer forever, and
    never as the controlling terminal, were it a terminal.
    """
    descriptor = os.open(path, flags | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        _check_file_type(name, os.fstat(descriptor).st_mode)
        os.set_blocking(descriptor, True)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def _read_error(name: str, error: OSError) -> ImageError:
    if isinstance(error, PermissionError):
        return ImageError(name, "permission denied: the file cannot be read")
    if isinstance(error, FileNotFoundError):
        # Checked just before, so the file vanished while we were opening it.
        return ImageError(name, "file not found")
    return ImageError(name, f"cannot read the file ({error.strerror or error})")


def _check_is_readable_file(name: str, path: str | bytes) -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            target = source_name(os.readlink(path))
            raise ImageError(name, f"broken symbolic link (points to missing {target})") from None
        raise ImageError(name, "file not found") from None
    except PermissionError:
        reason = "permission denied: a folder on its path cannot be entered"
        raise ImageError(name, reason) from None
    _check_file_type(name, mode)


def _check_file_type(name: str, mode: int) -> None:
    """Refuse all but regular files: a FIFO or device would block or stream forever."""
    if stat.S_ISDIR(mode):
        raise ImageError(name, "is a directory, not an image file")
    if not stat.S_ISREG(mode):
        kind = next(
            (kind for is_kind, kind in _NOT_REGULAR_FILES if is_kind(mode)), "a special file"
        )
        raise ImageError(name, f"is not a regular file but {kind}")


def _open_header(name: str, file) -> Image.Image:
    """Identify the format and read the header only; no pixel data is decoded yet."""
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own fixed limit; we apply the caller's max_pixels instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(file, formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as error:
        raise ImageError(name, f"image is too large to decode safely ({error})") from None
    except UnidentifiedImageError:
        file.seek(0)
        raise ImageError(name, _unidentified_reason(file.read(_SNIFF_BYTES))) from None
    except Exception as error:  # Pillow plugins raise many types on malformed headers
        raise ImageError(
            name, f"image header is truncated or damaged ({_describe(error)})"
        ) from None


def _unidentified_reason(head: bytes) -> str:
    """Why no allowed plugin took a file that starts with `head`; nothing here opens it."""
    if head[4:8] == b"ftyp" and head[8:12] in _HEIC_BRANDS:
        if pillow_heif is None:
            return "HEIC/HEIF photo: install the 'heic' extra (pillow-heif) to read it"
        return "HEIC/HEIF file that pillow-heif cannot read"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "starts like a WebP image but its header is truncated or damaged"
    for signature, format_name in _SIGNATURES.items():
        if head.startswith(signature):
            return f"starts like a {format_name} image but its header is truncated or damaged"
    if _looks_like_svg(head):
        return "format not supported: SVG"
    # Each plugin's accept function only compares the leading bytes: the plugin never runs.
    Image.init()
    for format_name, (_, accept) in Image.OPEN.items():
        if format_name not in ALLOWED_FORMATS and accept is not None and _accepts(accept, head):
            return f"format not supported: {format_name}"
    return "not an image, or an image format that cannot be read"


def _accepts(accept: Callable[[bytes], object], head: bytes) -> bool:
    """Whether a plugin's accept function takes `head`. Some read a fixed number of bytes and
    raise on a shorter file (BMP's reads 4); Image.open counts such an error as "not this
    format", and so does this."""
    try:
        return bool(accept(head))
    except (SyntaxError, IndexError, TypeError, struct.error):
        return False


def _looks_like_svg(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")  # a UTF-8 byte order mark, blank lines
    return text.startswith((b"<svg", b"<?xml", b"<!DOCTYPE svg", b"<!--")) and b"<svg" in head


def _check_pixel_count(name: str, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageError(
            name,
            f"image is {width} x {height} pixels, above the limit of {max_pixels:,}; "
            "refusing to decode it (raise max_pixels if the file is trusted)",
        )


def _decode(name: str, image: Image.Image, *, ours: bool) -> Image.Image:
    """Decode all pixel data now, so truncated and corrupt files fail here, and turn upright.

    For multi-frame files (animated GIF/WebP) this is the first frame, where Image.open starts.
    ours: `image` was opened here and is turned upright in place; a caller's image is copied,
    so it stays as it was.
    """
    try:
        image.load()
        if not ours:
            if image.getexif().get(ExifTags.Base.Orientation, 1) not in _TURNS:
                # Upright already: exif_transpose would copy the whole photo for nothing (2 ms
                # for a 12-megapixel one); _normalise copies what it would return unchanged.
                return image
            return ImageOps.exif_transpose(image)
        # A copy would hold the whole photo twice, at its widest mode.
        ImageOps.exif_transpose(image, in_place=True)
        return image
    except Image.DecompressionBombError as error:
        raise ImageError(name, f"image is too large to decode safely ({error})") from None
    except MemoryError:
        raise ImageError(name, "not enough memory to decode the image") from None
    except Exception as error:  # decoders report damage as OSError, SyntaxError, ValueError, ...
        raise ImageError(name, f"image data is truncated or corrupt ({_describe(error)})") from None


def _normalise(
    name: str, image: Image.Image, min_size: int | None, *, ours: bool = True
) -> Image.Image:
    """ours: as for _decode; a caller's image that needs no change comes back as a copy."""
    try:
        rgb = _to_rgb(image)
    except ValueError as error:
        raise ImageError(name, f"colour mode {image.mode} is not supported ({error})") from None
    if min_size is not None:
        factor = min(rgb.size) // min_size
        if factor >= 2:
            # Box-filter shrink by a whole factor: cheap, and both sides stay >= min_size.
            rgb = rgb.reduce(factor)
    return rgb.copy() if rgb is image and not ours else rgb


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparent areas become white, as photo viewers show them.

    Wide and transparent modes are converted a strip of rows at a time, so the peak memory is
    the photo plus its 8-bit result, not several full-size float64 or RGBA copies (gigabytes
    for a large 16-bit scan).
    """
    if image.mode.startswith("I;16"):
        return _gray_to_rgb(image, lambda values: values / 257.0)
    if image.mode == "I":
        # 32-bit integers have no fixed range: 8-bit data if it fits, else 16-bit data.
        if _largest_value(image) <= 255:
            return _gray_to_rgb(image, lambda values: values)
        return _gray_to_rgb(image, lambda values: values / 257.0)
    if image.mode == "F":
        # Floats are usually 0..1; anything larger follows Pillow's own 0..255 convention.
        if _largest_value(image) <= 1.0:
            return _gray_to_rgb(image, lambda values: values * 255.0)
        return _gray_to_rgb(image, lambda values: values)
    if image.mode == "RGB" and "transparency" not in image.info:
        return image  # already a private copy; skip another full-size copy

    has_alpha = image.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info
    if not has_alpha:
        return image.convert("RGB")
    background = Image.new("RGB", image.size, _WHITE)
    for top, strip in _strips(image):
        rgba = strip.convert("RGBA")
        background.paste(rgba, (0, top), mask=rgba.getchannel("A"))
    return background


def _strips(image: Image.Image) -> Iterator[tuple[int, Image.Image]]:
    """(top row, copy of the rows from there) of about _STRIP_PIXELS pixels each."""
    width, height = image.size
    rows = max(1, _STRIP_PIXELS // max(width, 1))
    for top in range(0, height, rows):
        yield top, image.crop((0, top, width, min(top + rows, height)))


def _largest_value(image: Image.Image) -> float:
    """The largest value of a one-channel image and 0; NaN if any value is NaN."""
    peaks = [np.asarray(strip).max(initial=0) for _, strip in _strips(image)]
    return float(np.max(peaks, initial=0))


def _gray_to_rgb(image: Image.Image, scale: Callable[[np.ndarray], np.ndarray]) -> Image.Image:
    """A one-channel image of any depth -> RGB, each value `scale`d to 0..255 and rounded."""
    width, height = image.size
    gray = np.empty((height, width), dtype=np.uint8)
    for top, strip in _strips(image):
        values = scale(np.asarray(strip, dtype=np.float64))  # (rows, width)
        np.nan_to_num(values, copy=False)
        gray[top : top + values.shape[0]] = np.clip(np.rint(values, out=values), 0, 255, out=values)
    return Image.fromarray(gray).convert("RGB")


def _describe(error: Exception) -> str:
    return str(error) or type(error).__name__
