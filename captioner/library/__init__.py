"""The caption library: one SQLite file that keeps every photo's captions between runs.

Per photo it holds where the photo is and how to recognise it (size, modification time and a
SHA-256 of its bytes, so a moved or renamed photo keeps its captions), the model's captions
(per model identity and decoding options, with score, alternatives and the nouns the model saw)
and the person's caption with every edit ever made to it. The app, the batch command
(`captioner PATH... --library`) and `captioner-library` all go through `Library`; nothing here
imports torch or Qt, so the app's start-up and the commands' --help stay fast.

    with Library.open() as library:                   # the user's library (default_library_path)
        entries = library.lookup(paths)               # {path: Entry}, without running a model
        library.set_caption(path, "my dog Rex")       # committed before it returns
        library.search("bicycle", filter="unchecked")

records: what goes in and comes out (Entry, Caption, ModelCaption, ModelKey, ModelResult,
TaughtRecord) and
the errors; files: the default path, photo paths as bytes, a photo's size/time/hash; schema:
the tables and their migrations; store: `Library`; exchange (imported on its own, as it loads
Exiv2 and Pillow): export to sidecars, photo metadata, CSV, JSONL and COCO, and import of the
batch command's JSONL outputs.
"""

from captioner.library.files import default_library_path
from captioner.library.records import (
    Caption,
    CaptionRefused,
    Entry,
    LibraryCorrupt,
    LibraryError,
    LibraryReadOnly,
    LibraryUnavailable,
    ModelCaption,
    ModelKey,
    ModelResult,
    TaughtRecord,
)
from captioner.library.store import FILTERS, Library

__all__ = [
    "FILTERS",
    "Caption",
    "CaptionRefused",
    "Entry",
    "Library",
    "LibraryCorrupt",
    "LibraryError",
    "LibraryReadOnly",
    "LibraryUnavailable",
    "ModelCaption",
    "ModelKey",
    "ModelResult",
    "TaughtRecord",
    "default_library_path",
]
