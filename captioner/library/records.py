"""What goes into the caption library and what comes out of it, and the errors it raises.

Every error is a LibraryError with a one-line message a command can print and the app can show
as it is; the subclasses say what the caller can do about it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from captioner.options import DecodeOptions
    from captioner.results import CaptionResult

# A caption is a sentence or a short paragraph; the limit keeps a pasted document (or 10 MB of
# garbage) out of the library, the search index and every export.
MAX_CAPTION_CHARS = 2000

# Where a person's caption came from. "accepted" and "alternative" are the model's words,
# confirmed by the person; the rest were written by them (here or in another tool).
SOURCES = ("typed", "accepted", "alternative", "sidecar", "xmp", "exif", "iptc", "undo")
MODEL_WORDS = ("accepted", "alternative")

NOUNS_KEPT = 8  # the nouns kept per model caption: enough to be found by, little to store
ALTERNATIVES_KEPT = 4  # the other beams kept per model caption, for the app's Alternatives


class LibraryError(Exception):
    """Anything wrong with the library; the message is one line, fit to be shown as it is."""


class LibraryUnavailable(LibraryError):
    """The library cannot be written now (disk full, read-only, a vanished drive, locked for
    too long): keep the edit in memory and try again later. Nothing was written."""


class LibraryReadOnly(LibraryUnavailable):
    """The library was opened read-only (written by a newer captioner, or a file that cannot
    be written): writing fails until it is reopened writable. Kept apart so the app can say
    which it is; catching LibraryUnavailable catches it too."""


class LibraryCorrupt(LibraryError):
    """The file is not a caption library, or is damaged. It is left as it is; the caller may
    ask the person, then `Library.set_aside(path)` and start a new one."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path


class CaptionRefused(LibraryError, ValueError):
    """A caption that cannot be stored: control characters, or far too long."""


def checked_caption(text: str) -> str:
    """`text` without the spaces around it; raises CaptionRefused for what a caption cannot be."""
    if not isinstance(text, str):
        raise CaptionRefused(f"a caption is text, not {type(text).__name__}")
    text = text.strip()
    if len(text) > MAX_CAPTION_CHARS:
        raise CaptionRefused(
            f"a caption is at most {MAX_CAPTION_CHARS:,} characters; this one has {len(text):,}"
        )
    bad = next((c for c in text if unicodedata.category(c) in ("Cc", "Cs")), None)
    if bad is not None:
        raise CaptionRefused(
            f"a caption cannot hold control characters such as {bad!r}; write it on one line"
        )
    return text


@dataclass(frozen=True)
class ModelKey:
    """Which model wrote a caption, with which options: identical keys, identical captions.

    identity: `Captioner.captions_identity`: a hash of the model's config and weights, so a
    retrained model under the same name is a different model, followed by what else changes
    its captions (taught words, int8, hedging, the person detector); options:
    `options_key(DecodeOptions)`.
    """

    identity: str
    options: str
    name: str = ""  # for people: the model's name when it wrote the caption

    @classmethod
    def of(cls, identity: str, options: DecodeOptions, name: str = "") -> ModelKey:
        return cls(identity, options_key(options), name)


# Decoding options added after the library's first captions were stored, with the value that
# is as before them: keyed only when set otherwise, so those captions stay current.
LATER_OPTIONS = {"name_things": 0}


def options_key(options: DecodeOptions) -> str:
    """A stable text for decoding options: every field, sorted, ints as ints and floats as
    floats, so DecodeOptions(length_penalty=0) and (length_penalty=0.0) give the same key."""
    values = {}
    for field in dataclasses.fields(options):
        value = getattr(options, field.name)
        if LATER_OPTIONS.get(field.name, object()) == value:
            continue
        values[field.name] = int(value) if field.type == "int" else float(value)
    return json.dumps(values, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class FileState:
    """How a photo file is recognised: size and modification time, and its bytes' SHA-256."""

    size: int
    mtime_ns: int
    sha256: bytes | None = None  # None where the photo was not at hand to be read


@dataclass(frozen=True)
class ModelResult:
    """One photo's caption from a model, as `Library.add_model_results` takes it."""

    path: str | bytes
    text: str
    score: float
    nouns: tuple[str, ...] = ()
    alternatives: tuple[tuple[str, float], ...] = ()  # the other beams, best first
    file: FileState | None = None  # None: the library stats and hashes the photo itself

    @classmethod
    def from_caption_result(cls, result: CaptionResult, file: FileState | None = None):
        """A captioned photo's result, less its maps (the library never stores them)."""
        beams = result.beams[1 : 1 + ALTERNATIVES_KEPT]
        return cls(
            path=result.source,
            text=result.text,
            score=float(result.score),
            nouns=seen_nouns(result),
            alternatives=tuple((beam.text, round(float(beam.score), 4)) for beam in beams),
            file=file,
        )


def seen_nouns(result: CaptionResult) -> tuple[str, ...]:
    """The things the model saw in the photo, best beam first: every word of its beams that is
    one of the everyday nouns (captioner/data/imagenet_nouns.tsv). The best caption names one
    thing; the other beams often name what else is there, so "bicycle" finds the dog photo
    whose caption names only the dog. (Copy gates are no guide: a gate can be high at a word
    the decoder wrote from its vocabulary, "large" among them.)"""
    return nouns_in([beam.tokens for beam in result.beams or [result]])


def nouns_in(captions: list[list[str]]) -> tuple[str, ...]:
    """The everyday nouns in tokenised captions, in order, each once, at most NOUNS_KEPT."""
    found = dict.fromkeys(word for tokens in captions for word in tokens if word in _noun_words())
    return tuple(found)[:NOUNS_KEPT]


@functools.cache
def _noun_words() -> frozenset[str]:
    from captioner.nouns import NounTable  # the table is read once, on the first result

    table = NounTable.load()
    return frozenset(word for noun in (*table.nouns, *table.plurals) for word in noun.split())


@dataclass(frozen=True)
class Caption:
    """The person's caption (or one entry of its history)."""

    text: str | None  # None: no caption (an undo back to before the first edit)
    source: str  # one of SOURCES
    time: float  # seconds since the epoch
    id: int = 0  # the history entry's number, increasing with time

    @property
    def written_by_person(self) -> bool:
        return self.text is not None and self.source not in MODEL_WORDS


@dataclass(frozen=True)
class ModelCaption:
    text: str
    score: float | None
    nouns: tuple[str, ...]
    alternatives: tuple[tuple[str, float], ...]
    model: ModelKey
    time: float


@dataclass(frozen=True)
class Entry:
    """What the library knows about one photo.

    on_disk, from `lookup` (None from `search`, which does not look at the files):
    "ok", "changed" (size or modification time differ: re-caption it), "missing" (its captions
    are kept), or "unknown" (not in the library; every other field is empty).
    """

    path: str  # as os.fsdecode gives it: a name that is not UTF-8 keeps its bytes
    person: Caption | None
    model: ModelCaption | None
    sha256: bytes | None = None
    on_disk: str | None = None

    @property
    def state(self) -> str:
        """ "mine" (written by the person), "accepted" (the model's words, confirmed),
        "model" (only the model's caption), or "none"."""
        if self.person is not None and self.person.text is not None:
            return "mine" if self.person.written_by_person else "accepted"
        return "model" if self.model is not None else "none"

    @property
    def caption(self) -> str | None:
        """The caption to show or export: the person's, else the model's."""
        if self.person is not None and self.person.text is not None:
            return self.person.text
        return self.model.text if self.model is not None else None


@dataclass(frozen=True)
class TaughtRecord:
    """One example of a taught word as the library keeps it (captioner.taught.TaughtExample
    in the model's terms): features as float16 bytes, so the library stays torch-free."""

    word: str
    encoder: str  # the identity of the encoder whose features these are
    vector: bytes  # float16 little-endian, encoder_dim values
    background: bytes | None = None
    source: str | None = None  # the photo's path
    box: tuple[float, float, float, float] | None = None
    time: float = 0.0
    id: int | None = None  # the library's row, once stored
