"""Captioning off the UI thread: one QObject worker in a QThread, fed through a job queue.

The UI calls the worker's request methods (thread-safe: they only touch the queue) and hears
back through signals, which Qt delivers in the UI thread; the worker never touches a widget.
Jobs run in order, with two exceptions that keep the window responsive: a new caption request
for the selected photo replaces an older one still waiting, and "Caption all" items run only
when nothing interactive is waiting, one photo at a time, so Cancel takes effect between photos.
Each photo is a one-photo batch of the captioning engine (captioner.pipeline), its encoder
features kept per photo so a change of decoding options only reruns beam search. Teaching a word
and applying the library's taught words are jobs too (gui/teaching.py sends them), so they never
change the model while it writes a caption.

The captioner library (and with it torch, which takes seconds to import) is imported here, in
the worker thread, so the window is up before the model is; only its torch-free registry of
models is imported at once.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot

from captioner.options import DecodeOptions
from captioner.registry import (
    CARD_FILE,
    CONFIG_FILE,
    CheckpointError,
    is_model_name,
    resolve_model,
    shipped_model,
)
from gui.lru import LruCache

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from captioner import CaptionResult
    from captioner.pipeline import PhotoBatch

# The viewer's copy of a photo: decoded at reduced size (JPEG draft) and capped, so a
# 50-megapixel photo costs no more than a small one.
DISPLAY_MIN_SIDE = 800
DISPLAY_MAX_SIDE = 1600
ENCODED_PHOTOS_BYTES = 256 * 2**20  # the encoder features kept, least recently used out first


RUNTIMES = {"torch": "PyTorch", "onnx": "ONNX Runtime"}


@dataclass(frozen=True)
class ModelInfo:
    generation: int
    name: str
    model: str  # what was asked for: a shipped model's name, a directory or "hf:OWNER/NAME"
    path: str  # the model directory read
    vocab_size: int
    encoder: str  # e.g. "efficientnet-lite0, 224 px, 14 x 14 grid"
    cell: str  # "lstm", "gru" or "rnn"
    device: str
    nouns: tuple[str, ...] = ()  # the singular nouns a copy model can copy, sorted; else none
    copy_words: frozenset[str] = frozenset()  # every word the copy path says: nouns, plurals
    card: str = ""  # the model card (README.md in the model directory), if it has one
    shapes: bool = False  # the shapes model: it knows circles and squares, not photos
    identity: str = ""  # a hash of config and weights: the caption library keys captions by it
    # (with the taught words applied: Captioner.captions_identity)
    encoder_identity: str = ""  # which encoder's taught examples apply (Captioner's)
    can_learn_words: bool = False  # a copy model: it can say taught words
    taught_note: str = ""  # why some of the library's taught words are not used; "" if all are
    precision_note: str = ""  # why int8 was asked for and float runs; "" otherwise

    @property
    def copies_nouns(self) -> bool:
        return bool(self.nouns)


@dataclass
class CaptionOutcome:
    path: str
    generation: int
    options: DecodeOptions
    result: CaptionResult
    display: Image.Image | None  # the viewer's copy, when it was asked for
    encoded: bool  # False when the features came from the cache and only decode ran
    seconds: float
    file: object = None  # captioner.library's FileState of the photo read, for the library


@dataclass
class CaptionFailure:
    path: str
    generation: int
    reason: str
    bad_image: bool  # the file itself is unusable, whatever the model


@dataclass
class _LoadJob:
    model: str  # a shipped model's name, a model directory or "hf:OWNER/NAME"
    device: str
    backend: str  # auto, torch or onnx (captioner.onnx_backend.BACKENDS)
    precision: str  # float, int8 or auto (captioner.backends.PRECISIONS)
    generation: int


@dataclass
class _CaptionJob:
    path: str
    options: DecodeOptions
    generation: int
    want_display: bool


@dataclass
class _DisplayJob:
    """Only the viewer's copy of a photo: there is no model to caption it with."""

    path: str
    generation: int


@dataclass
class _TeachJob:
    """Examples are encoder features: whichever model is loaded when it runs teaches them."""

    word: str
    path: str
    box: tuple[float, float, float, float] | None  # (left, top, right, bottom) in 0..1


@dataclass
class _TaughtJob:
    """Use these taught examples (the library's) from now on, as model `generation`."""

    records: list  # captioner.library's TaughtRecord
    generation: int


@dataclass
class TeachOutcome:
    word: str
    path: str
    records: list  # the new examples as the library stores them; [] when the photo was one


@dataclass
class TeachFailure:
    word: str
    path: str
    reason: str


@dataclass
class TaughtApplied:
    """The taught words the model uses from now on."""

    generation: int
    identity: str  # the caption library's key for captions made with them
    note: str  # why some are not used; "" when all are
    copy_words: frozenset[str]  # every word the copy path says now, taught ones included


class _FinishBatch:
    """Queue marker: the batch ran out of photos (or was cancelled); report and reset."""


class CaptionWorker(QObject):
    model_loaded = Signal(object)  # ModelInfo
    model_failed = Signal(int, str)  # generation, message
    caption_started = Signal(str)  # path
    captioned = Signal(object)  # CaptionOutcome
    caption_failed = Signal(object)  # CaptionFailure
    display_loaded = Signal(str, object)  # path, the viewer's copy (PIL image)
    batch_progress = Signal(int, int)  # done, total
    batch_finished = Signal(int, int, bool)  # done, total, cancelled
    taught = Signal(object)  # TeachOutcome
    teach_failed = Signal(object)  # TeachFailure
    taught_applied = Signal(object)  # TaughtApplied

    def __init__(self) -> None:
        super().__init__()
        self._condition = threading.Condition()
        self._jobs: deque[_LoadJob | _CaptionJob | _DisplayJob] = deque()
        self._batch: deque[str] = deque()
        self._batch_options = DecodeOptions()
        self._batch_total = self._batch_done = 0
        self._batch_cancelled = False
        self._stopping = False
        self._captioner = None
        self._generation = -1
        self._taught_records: list = []  # the library's taught examples, applied on every load
        self._model_path: Path | None = None  # the loaded model's directory
        # path -> its encoder features, (1, gh, gw, C)
        self._encoded_photos: LruCache[str, torch.Tensor] = LruCache(
            ENCODED_PHOTOS_BYTES, cost=lambda features: features.numel() * features.element_size()
        )
        self.encode_count = 0  # how many photos went through the encoder; tests read it

    # Called from the UI thread. They only touch the queue, under the lock.

    def load_model(
        self, model: str, device: str, backend: str, precision: str, generation: int
    ) -> None:
        """model: a shipped model's name ("default", "shapes") or a model directory."""
        self._put(_LoadJob(model, device, backend, precision, generation))

    def request_caption(
        self, path: str, options: DecodeOptions, generation: int, *, want_display: bool = True
    ) -> None:
        """Caption `path` next; a request still waiting for an earlier selection is dropped."""
        self._put_selection(_CaptionJob(path, options, generation, want_display))

    def request_display(self, path: str, generation: int) -> None:
        """Load only the viewer's copy of `path` (no model to caption it); replaces a waiting
        request for an earlier selection, as request_caption does."""
        self._put_selection(_DisplayJob(path, generation))

    def _put_selection(self, job: _CaptionJob | _DisplayJob) -> None:
        with self._condition:
            stale = [old for old in self._jobs if isinstance(old, _CaptionJob | _DisplayJob)]
            for old in stale:
                self._jobs.remove(old)
            self._jobs.append(job)
            self._condition.notify()

    def teach(self, word: str, path: str, box: tuple[float, float, float, float] | None) -> None:
        """Teach `word` from the photo `path` (in the box, if one): heard back as `taught`, or
        `teach_failed`."""
        self._put(_TeachJob(word, path, box))

    def use_taught(self, records: list, generation: int) -> None:
        """From the next job on, say the words of these taught examples (the library's), as
        model `generation`: captions of earlier generations waiting in the queue are dropped."""
        with self._condition:
            self._taught_records = list(records)
        self._put(_TaughtJob(list(records), generation))

    def set_taught(self, records: list) -> None:
        """The taught examples the next model load applies (the library's, at start)."""
        with self._condition:
            self._taught_records = list(records)

    def start_batch(self, paths: list[str], options: DecodeOptions) -> None:
        with self._condition:
            self._batch.extend(paths)
            self._batch_total += len(paths)
            self._batch_options = options
            self._batch_cancelled = False
            self._condition.notify()

    def set_batch_options(self, options: DecodeOptions) -> None:
        with self._condition:
            self._batch_options = options

    def cancel_batch(self) -> None:
        """Drop the photos not started yet; the one being captioned finishes first."""
        with self._condition:
            if self._batch_total:
                self._batch.clear()
                self._batch_cancelled = True
                self._condition.notify()

    def stop(self) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify()

    def _put(self, job: _LoadJob | _CaptionJob | _TeachJob | _TaughtJob) -> None:
        with self._condition:
            self._jobs.append(job)
            self._condition.notify()

    # The worker thread.

    @Slot()
    def run(self) -> None:
        while (job := self._next_job()) is not None:
            if isinstance(job, _LoadJob):
                self._load(job)
            elif isinstance(job, _CaptionJob):
                self._caption(job)
            elif isinstance(job, _DisplayJob):
                self._display(job)
            elif isinstance(job, _TeachJob):
                self._teach(job)
            elif isinstance(job, _TaughtJob):
                self._use_taught(job)
            elif isinstance(job, _FinishBatch):
                self._finish_batch()
            else:
                with self._condition:
                    options = self._batch_options
                self._caption(_CaptionJob(job, options, self._generation, want_display=False))
                with self._condition:
                    self._batch_done += 1
                    done, total = self._batch_done, self._batch_total
                self.batch_progress.emit(done, total)

    def _next_job(self) -> _LoadJob | _CaptionJob | _DisplayJob | _FinishBatch | str | None:
        with self._condition:
            while not self._stopping:
                if self._jobs:
                    return self._jobs.popleft()
                if self._batch:
                    return self._batch.popleft()
                if self._batch_total:
                    return _FinishBatch()
                self._condition.wait()
            return None

    def _finish_batch(self) -> None:
        with self._condition:
            done, total, cancelled = self._batch_done, self._batch_total, self._batch_cancelled
            self._batch_done = self._batch_total = 0
            self._batch_cancelled = False
        self.batch_finished.emit(done, total, cancelled)

    def _load(self, job: _LoadJob) -> None:
        self._captioner = None
        self._encoded_photos.clear()
        self._generation = job.generation
        try:
            from captioner import Captioner

            # A name is looked up among the shipped models only: a folder of that name in the
            # app's working directory is never loaded instead (the app keeps directories
            # absolute: gui.app.model_argument). A Hub model is downloaded here, in the worker
            # thread, or read from the cache.
            path = (
                shipped_model(job.model) if is_model_name(job.model) else resolve_model(job.model)
            )
            from captioner.quantize import PrecisionWarning

            # int8 asked for where it cannot run (a GPU, the torch backend, another encoder)
            # loads in float with a warning: the window says why.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", PrecisionWarning)
                captioner = Captioner.load(
                    path, device=job.device, backend=job.backend, precision=job.precision
                )
            precision_note = "; ".join(
                str(w.message) for w in caught if issubclass(w.category, PrecisionWarning)
            )
            card = path / CARD_FILE
            card_text = card.read_text("utf-8", errors="replace") if card.is_file() else ""
        except Exception as error:  # CheckpointError, a bad device name, damaged weights, ...
            self.model_failed.emit(job.generation, str(error) or type(error).__name__)
            return
        self._captioner = captioner
        self._model_path = path
        with self._condition:
            records = self._taught_records
        note = captioner.use_taught(records) or ""
        encoder = captioner.encoder.config
        grid = feature_grid(encoder.image_size, encoder.feature_stride, encoder.grid_size)
        self.model_loaded.emit(
            ModelInfo(
                generation=job.generation,
                name=captioner.name,
                model=job.model,
                path=os.fspath(path),
                vocab_size=len(captioner.vocab),
                encoder=f"{encoder.name}, {encoder.image_size} px, {grid} x {grid} grid",
                cell=captioner.decoder.config.cell,
                device=f"{captioner.device} ({RUNTIMES[captioner.backend]}"
                + (", int8)" if captioner.precision == "int8" else ")"),
                nouns=tuple(sorted(_words(captioner, "noun_singular_ids"))),
                copy_words=_copy_words(captioner),
                card=card_text,
                shapes=is_shapes_model(captioner.name),
                identity=_identity(captioner, path),
                encoder_identity=captioner.encoder_identity,
                can_learn_words=captioner.can_learn_words,
                taught_note=note,
                precision_note=precision_note,
            )
        )

    def _teach(self, job: _TeachJob) -> None:
        if self._captioner is None:
            self.teach_failed.emit(TeachFailure(job.word, job.path, "no model is loaded"))
            return
        from captioner.photos.images import ImageError
        from captioner.taught import to_record

        try:
            examples = self._captioner.teach(
                job.word, [job.path], boxes=[job.box] if job.box is not None else None
            )
        except (ValueError, ImageError) as error:  # a word that is no noun, a photo gone
            reason = getattr(error, "reason", None) or str(error)
            self.teach_failed.emit(TeachFailure(job.word, job.path, reason))
            return
        encoder = self._captioner.encoder_identity
        records = [to_record(example, encoder) for example in examples]
        self.taught.emit(TeachOutcome(job.word, job.path, records))

    def _use_taught(self, job: _TaughtJob) -> None:
        if self._captioner is None:
            return  # the next load applies them
        note = self._captioner.use_taught(job.records) or ""
        self._generation = job.generation  # the encoded photos stay: only decoding changed
        identity = _identity(self._captioner, self._model_path)
        applied = TaughtApplied(job.generation, identity, note, _copy_words(self._captioner))
        self.taught_applied.emit(applied)

    def _caption(self, job: _CaptionJob) -> None:
        if self._captioner is None or job.generation != self._generation:
            reason = "no model is loaded" if self._captioner is None else "the model changed"
            self.caption_failed.emit(
                CaptionFailure(job.path, job.generation, reason, bad_image=False)
            )
            return
        from captioner.photos.images import ImageError
        from captioner.pipeline import caption_batches

        self.caption_started.emit(job.path)
        start = time.perf_counter()
        try:
            batch, display = self._batch_and_display(job)
            encoded = batch.features is None
            # One batch of one result; unpacking runs the engine to its end (its thread joined).
            [[result]] = caption_batches(self._captioner, [batch], job.options)
        except ImageError as error:
            failure = CaptionFailure(job.path, job.generation, error.reason, bad_image=True)
            self.caption_failed.emit(failure)
            return
        except Exception as error:  # keep the worker alive whatever a model or file does
            reason = f"captioning failed ({type(error).__name__}: {error})"
            failure = CaptionFailure(job.path, job.generation, reason, bad_image=False)
            self.caption_failed.emit(failure)
            return
        if encoded:
            self.encode_count += 1
            self._encoded_photos.put(
                job.path, batch.features
            )  # the engine stored them in the batch
        seconds = time.perf_counter() - start
        from captioner.library.files import file_state

        self.captioned.emit(
            CaptionOutcome(
                job.path,
                job.generation,
                job.options,
                result,
                display,
                encoded,
                seconds,
                file=file_state(job.path),
            )  # fmt: skip
        )

    def _display(self, job: _DisplayJob) -> None:
        from captioner.photos.images import ImageError

        try:
            display = load_display(job.path)
        except ImageError as error:
            failure = CaptionFailure(job.path, job.generation, error.reason, bad_image=True)
            self.caption_failed.emit(failure)
            return
        except Exception as error:  # keep the worker alive whatever a file does
            reason = f"could not show it ({type(error).__name__}: {error})"
            self.caption_failed.emit(CaptionFailure(job.path, job.generation, reason, False))
            return
        self.display_loaded.emit(job.path, display)

    def _batch_and_display(self, job: _CaptionJob) -> tuple[PhotoBatch, Image.Image | None]:
        """The engine's one-photo batch (cached features, else pixels to encode) and the
        viewer's copy or None. Raises ImageError for a photo that cannot be read."""
        from captioner.pipeline import PhotoBatch

        features = self._encoded_photos.get(job.path)  # (1, gh, gw, C)
        display = None
        if job.want_display:
            image_size = self._captioner.encoder.config.image_size
            display = load_display(job.path, max(DISPLAY_MIN_SIDE, image_size))
        if features is not None:
            return PhotoBatch.ready([job.path], features=features), display
        # Without a viewer's copy the photo is decoded at the encoder's size only.
        pixels = self._captioner.preprocess(job.path if display is None else display)
        return PhotoBatch.ready([job.path], pixels=pixels[None]), display  # (1, 3, size, size)


def load_display(path: str, min_side: int = DISPLAY_MIN_SIDE) -> Image.Image:
    """The viewer's copy of a photo, at least min_side (if the photo has it), at most
    DISPLAY_MAX_SIDE. Raises captioner's ImageError for a file that cannot be read."""
    from PIL import Image

    from captioner.photos.images import load_image

    display = load_image(path, min_size=min_side)
    if max(display.size) > DISPLAY_MAX_SIDE:
        display.thumbnail((DISPLAY_MAX_SIDE, DISPLAY_MAX_SIDE), Image.Resampling.BICUBIC)
    return display


def _identity(captioner, path) -> str:
    """What the caption library keys the model's captions by (Captioner.captions_identity: its
    config and weights, the taught words it uses, int8, hedging); a hash of its directory's
    name where this captioner has none."""
    try:
        return captioner.captions_identity
    except AttributeError:
        return hashlib.sha256(os.fsencode(os.path.abspath(path))).hexdigest()


def is_shapes_model(name: str) -> bool:
    """Whether a model named `name` is the shapes model: the one shipped as "shapes", or one
    trained as it was (scripts/train_shapes_model.sh names it as the shipped one's config does)."""
    try:
        config = json.loads((shipped_model("shapes") / CONFIG_FILE).read_text("utf-8"))
    except (CheckpointError, OSError, ValueError):  # a copy of captioner without it
        return False
    return name == config.get("name")


def feature_grid(image_size: int, feature_stride: int, grid_size: int | None) -> int:
    """The side of the encoder's feature grid: pooled to grid_size, else the backbone's map.

    Every stride-2 stage pads, so a side that does not divide evenly rounds up (240 px at
    stride 32 gives 8 cells).
    """
    return grid_size or math.ceil(image_size / feature_stride)


def _copy_words(captioner) -> frozenset[str]:
    """Every word a copy model's copy path says (its nouns and their plurals, and the taught
    words and theirs); none for a model that does not copy."""
    from captioner.nouns import pluralize

    taught = set(captioner.taught_words())
    taught |= {pluralize(word) for word in taught}
    nouns = _words(captioner, "noun_singular_ids") | _words(captioner, "noun_plural_ids")
    return frozenset(nouns | taught)


def _words(captioner, ids_buffer: str) -> set[str]:
    """The words a copy model's decoder names in `ids_buffer` (noun_singular_ids or
    noun_plural_ids); none for a model that does not copy."""
    if not captioner.decoder.config.copy_nouns:
        return set()
    return {captioner.vocab.itos[i] for i in getattr(captioner.decoder, ids_buffer).tolist()}
