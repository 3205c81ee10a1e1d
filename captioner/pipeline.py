"""The one engine that turns inputs into captions: read, preprocess, stack, encode, decode.

Everything that captions goes through here: `Captioner.caption` (paths and PIL images, in this
process), the batch CLI and captioner-evaluate (files, with worker processes), the app's worker
and training's validation (features or pixels they already hold, see `PhotoBatch.ready`).

Opening a camera JPEG and resizing it costs a good part of what encoding it does, so worker
processes (a torch DataLoader) prepare the next batches while the main process runs the model,
and beam search overlaps with the encoder (see caption_batches). Inputs go to the workers
through the DataLoader's batch sampler, pulled from the input generator only a few batches
ahead, so neither paths nor pixels pile up however long the run; batches come back in input
order. An input that cannot be read becomes a result with `error` set, in its place.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import itertools
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader, Dataset

from captioner.options import DecodeOptions
from captioner.photos.images import ImageError, ImageSource, source_name
from captioner.photos.inputs import Photo
from captioner.results import CaptionResult

if TYPE_CHECKING:  # the engine runs a Captioner; api.py imports this module to do so
    from captioner.api import Captioner

# The beam-search thread frees the tensors the encoding thread allocated, and glibc keeps what
# its arenas got back: over a long run the process grew 1.8x from 500 to 2,000 photos
# (benchmarks/batch_cli.py, 905 -> 1,837 MB). Handing the free pages back at most once a second
# keeps it flat (927 -> 968 MB) for under 1% more CPU; a fixed mmap threshold did too, for 5%.
TRIM_EVERY_S = 1.0


@dataclass
class PhotoBatch:
    """A batch of inputs in order, with the pixels or the features of those that could be read.

    caption_batches encodes `pixels` when `features` is None, and stores the features here.
    """

    sources: list[str]  # per input: the name its result carries
    errors: list[str | None]  # per input: why it could not be read, or None
    pixels: torch.Tensor | None  # (readable inputs, 3, size, size); None when none were
    features: torch.Tensor | None = None  # (readable inputs, grid_h, grid_w, encoder_dim)

    @classmethod
    def ready(
        cls,
        sources: Sequence[str],
        *,
        pixels: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> PhotoBatch:
        """Inputs read elsewhere (training's loader, the app's feature cache): one row of
        `pixels` or of `features` per source, all of them usable."""
        rows = pixels if features is None else features
        if rows is None or len(rows) != len(sources):
            raise ValueError(f"{len(sources)} sources need as many rows of pixels or features")
        return cls(list(sources), [None] * len(sources), pixels, features)

    def pin_memory(self) -> PhotoBatch:
        """Called by the DataLoader on CUDA, so the copy to the GPU can overlap."""
        if self.pixels is None:
            return self
        return dataclasses.replace(self, pixels=self.pixels.pin_memory())


class _Inputs(Dataset):
    """Indexed by the input itself: the batch sampler hands out inputs, not numbers.

    A Photo (the batch CLI's) keeps its path as given, and may come with a problem known before
    opening it; a path or PIL image is named by `source_name`.
    """

    def __init__(self, captioner: Captioner) -> None:
        self.captioner = captioner

    def __getitem__(self, item: Photo | ImageSource) -> tuple[str, torch.Tensor | None, str | None]:
        if isinstance(item, Photo):
            source, name, problem = item.path, item.path, item.problem
        else:
            source, name, problem = item, source_name(item), None
        if problem is not None:
            return name, None, problem
        try:
            return name, self.captioner.preprocess(source), None
        except ImageError as error:
            return name, None, error.reason
        except Exception as error:  # a decoder bug on one odd file must not end the whole run
            return name, None, f"unexpected {type(error).__name__} while reading: {error}"


class _Chunks:
    """The batch sampler: consecutive inputs, batch_size at a time, read lazily."""

    def __init__(self, inputs: Iterable[Photo | ImageSource], batch_size: int) -> None:
        self.inputs = inputs
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[list[Photo | ImageSource]]:
        inputs = iter(self.inputs)
        while chunk := list(itertools.islice(inputs, self.batch_size)):
            yield chunk


def _collate(items: list[tuple[str, torch.Tensor | None, str | None]]) -> PhotoBatch:
    pixels = [tensor for _, tensor, _ in items if tensor is not None]
    return PhotoBatch(
        sources=[name for name, _, _ in items],
        errors=[error for _, _, error in items],
        pixels=torch.stack(pixels) if pixels else None,  # (readable, 3, size, size)
    )


def photo_batches(
    captioner: Captioner,
    inputs: Iterable[Photo | ImageSource],
    *,
    batch_size: int = 16,
    workers: int = 0,
) -> Iterable[PhotoBatch]:
    """Read and preprocess photos (Photos, paths or PIL images) in order; `workers` processes
    (0: in this process, where starting processes costs more than it saves)."""
    return DataLoader(
        _Inputs(captioner),
        batch_sampler=_Chunks(inputs, batch_size),
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=captioner.device.type == "cuda",
    )


def caption_batches(
    captioner: Captioner, batches: Iterable[PhotoBatch], options: DecodeOptions = DecodeOptions()
) -> Iterator[list[CaptionResult]]:
    """One list of results per batch, in input order; `source` is the batch's name for it.

    An input that could not be read gets a result with `error` set; the others are captioned.

    Beam search of one batch runs in a second thread while this one encodes the next batch:
    its many small steps leave the cores (or the GPU) idle between operations, and the
    encoder fills those gaps. At most two batches of features are held at a time.
    """
    trim, trimmed = _malloc_trim(), time.monotonic()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="beam-search") as beam_search:
        previous = None
        for batch in batches:
            if batch.features is None and batch.pixels is not None:
                batch.features = captioner.encode(batch.pixels)
            current = beam_search.submit(_decode, captioner, batch, options)
            if previous is not None:
                yield previous.result()
            previous = current
            if trim is not None and time.monotonic() - trimmed >= TRIM_EVERY_S:
                trim(0)
                trimmed = time.monotonic()
        if previous is not None:
            yield previous.result()


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _decode(captioner: Captioner, batch: PhotoBatch, options: DecodeOptions) -> list[CaptionResult]:
    features = batch.features
    captions = iter(captioner.decode(features, options) if features is not None else ())
    return [
        CaptionResult.failed(source, error)
        if error is not None
        else dataclasses.replace(next(captions), source=source)
        for source, error in zip(batch.sources, batch.errors, strict=True)
    ]
