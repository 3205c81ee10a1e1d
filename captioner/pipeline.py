"""Captioning a stream of photo files in batches, with file decoding in background workers.

Opening a camera JPEG and resizing it costs a good part of what encoding it does, so worker
processes (a torch DataLoader) prepare the next batches while the main process runs the model,
and beam search overlaps with the encoder (see caption_batches). Paths go
to the workers through the DataLoader's batch sampler, pulled from the input generator only a
few batches ahead, so neither paths nor pixels pile up however long the run; batches come back
in input order.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from captioner.api import Captioner, CaptionResult
from captioner.images import ImageError
from captioner.inputs import Photo
from captioner.options import DecodeOptions


@dataclass
class PhotoBatch:
    """A batch of inputs in order, with the pixels of those that could be read."""

    paths: list[str]
    errors: list[str | None]  # per path: why it could not be read, or None
    pixels: torch.Tensor | None  # (readable photos, 3, size, size); None when none were

    def pin_memory(self) -> PhotoBatch:
        """Called by the DataLoader on CUDA, so the copy to the GPU can overlap."""
        if self.pixels is None:
            return self
        return dataclasses.replace(self, pixels=self.pixels.pin_memory())


class _PhotoFiles(Dataset):
    """Indexed by the Photo itself: the batch sampler hands out inputs, not numbers."""

    def __init__(self, captioner: Captioner) -> None:
        self.captioner = captioner

    def __getitem__(self, photo: Photo) -> tuple[str, torch.Tensor | None, str | None]:
        if photo.problem is not None:
            return photo.path, None, photo.problem
        try:
            return photo.path, self.captioner.preprocess(photo.path), None
        except ImageError as error:
            return photo.path, None, error.reason
        except Exception as error:  # a decoder bug on one odd file must not end the whole run
            return photo.path, None, f"unexpected {type(error).__name__} while reading: {error}"


class _Chunks:
    """The batch sampler: consecutive inputs, batch_size at a time, read lazily."""

    def __init__(self, photos: Iterable[Photo], batch_size: int) -> None:
        self.photos = photos
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[list[Photo]]:
        photos = iter(self.photos)
        while chunk := list(itertools.islice(photos, self.batch_size)):
            yield chunk


def _collate(items: list[tuple[str, torch.Tensor | None, str | None]]) -> PhotoBatch:
    pixels = [tensor for _, tensor, _ in items if tensor is not None]
    return PhotoBatch(
        paths=[path for path, _, _ in items],
        errors=[error for _, _, error in items],
        pixels=torch.stack(pixels) if pixels else None,  # (readable, 3, size, size)
    )


def photo_batches(
    captioner: Captioner, photos: Iterable[Photo], *, batch_size: int = 16, workers: int = 0
) -> Iterable[PhotoBatch]:
    """Read and preprocess photos in order; `workers` processes (0: in this process)."""
    return DataLoader(
        _PhotoFiles(captioner),
        batch_sampler=_Chunks(photos, batch_size),
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=captioner.device.type == "cuda",
    )


def caption_batches(
    captioner: Captioner, batches: Iterable[PhotoBatch], options: DecodeOptions = DecodeOptions()
) -> Iterator[list[CaptionResult]]:
    """One list of results per batch, in input order; `source` is the path as given.

    A photo that could not be read gets a result with `error` set; the others are captioned.

    Beam search of one batch runs in a second thread while this one encodes the next batch:
    its many small steps leave the cores (or the GPU) idle between operations, and the
    encoder fills those gaps. At most two batches of features are held at a time.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="beam-search") as beam_search:
        previous = None
        for batch in batches:
            features = captioner.encode(batch.pixels) if batch.pixels is not None else None
            current = beam_search.submit(_decode, captioner, batch, features, options)
            if previous is not None:
                yield previous.result()
            previous = current
        if previous is not None:
            yield previous.result()


def _decode(
    captioner: Captioner, batch: PhotoBatch, features: torch.Tensor | None, options: DecodeOptions
) -> list[CaptionResult]:
    captions = iter(captioner.decode(features, options) if features is not None else ())
    return [
        CaptionResult.failed(path, error)
        if error is not None
        else dataclasses.replace(next(captions), source=path)
        for path, error in zip(batch.paths, batch.errors, strict=True)
    ]
