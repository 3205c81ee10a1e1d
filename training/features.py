"""The encoder feature cache: with a frozen encoder, each photo is encoded once, ever.

Files live under `root/<encoder fingerprint>/<key[:2]>/<key>.npy` (float16). The fingerprint
covers the encoder's config, so changing the backbone, image size or grid starts a new cache;
the key covers the photo's path, size and modification time, so an edited photo is re-encoded.

At COCO scale the cache is large (a deep backbone's fine grid is hundreds of kilobytes a photo),
so its size is checked against the free disk first; where it does not fit, OnTheFlyModel encodes
every batch instead (captioner-train --no-cache). `model_inputs` chooses between them.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import json
import math
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from captioner.distributed import Distributed
from captioner.encoder import Encoder
from captioner.photos.atomic import write_atomically
from captioner.photos.images import ImageError, load_image
from training.model import CaptionModel
from training.readers import Sample
from training.train_run import TrainRun

# Files take whole blocks of the file system; 4 kB is the usual block (ext4, APFS, NTFS).
_BLOCK = 4096


def default_cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "captioner" / "features"


def human_size(size: float) -> str:
    """Bytes in decimal units, as disk tools report them: 950 bytes, 31.5 kB, 1.2 GB."""
    if size < 1000:
        return f"{size:.0f} bytes"
    for unit in ("kB", "MB", "GB", "TB"):
        size /= 1000
        if size < 1000 or unit == "TB":
            break
    return f"{size:.1f} {unit}"


class CacheError(Exception):
    """The feature cache could not be built; the message says why and what to do."""


class CacheBuiltElsewhereError(CacheError):
    """Under torchrun: the main process, which builds the cache, could not; its message says
    why."""

    def __init__(self) -> None:
        super().__init__("the main process could not build the feature cache (its error says why)")


class CacheDiskFullError(CacheError):
    """The disk (or quota) holding the cache ran out while caching; the message says how much
    more the remaining photos need. The files written so far stay: the next run resumes."""

    def __init__(self, root: Path, written: int, needed: int) -> None:
        super().__init__(
            f"the disk holding {root} filled while caching features (wrote {human_size(written)} "
            f"of about {human_size(needed)}; free {human_size(needed - written)} more and run "
            "again: the cache resumes)"
        )


class CacheTooLargeError(CacheError):
    """The photos' features would not fit on the disk holding the cache; nothing was written."""

    def __init__(self, root: Path, photos: int, file_size: int, free: int) -> None:
        super().__init__(
            f"the feature cache needs about {human_size(photos * file_size)} for {photos:,} "
            f"photos ({human_size(file_size)} each) but the disk holding {root} has "
            f"{human_size(free)} free: give --cache-dir on a disk with more space, or --no-cache "
            "to encode the photos on the fly every epoch"
        )


def encoder_fingerprint(encoder: Encoder) -> str:
    config = json.dumps(dataclasses.asdict(encoder.config), sort_keys=True)
    return hashlib.sha1(config.encode()).hexdigest()[:16]


class _Photos(Dataset):
    """Opens and preprocesses photos in DataLoader workers; a bad photo yields its error."""

    def __init__(self, paths: Sequence[Path], encoder: Encoder) -> None:
        self.paths, self.encoder = paths, encoder

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            image = load_image(self.paths[index], min_size=self.encoder.config.image_size)
            return index, self.encoder.preprocess(image), None
        except ImageError as err:
            return index, None, str(err)


def _collate(items):
    return items


class DiskFeatureCache:
    """A frozen encoder's features of each photo, in one .npy file a photo under `root`."""

    def __init__(self, root: str | os.PathLike, encoder: Encoder) -> None:
        self.encoder, self.root = encoder, Path(root)
        self.directory = self.root / encoder_fingerprint(encoder)
        self._paths: dict[Path, Path] = {}

    def path_for(self, image_path: Path) -> Path:
        """Where the photo's features go. Worked out once per photo for this object (the cache
        is checked, then read for every caption of every epoch), so a run sees each photo as
        it was when the run started."""
        path = self._paths.get(image_path)
        if path is None:
            stat = image_path.stat()
            # realpath is what Path.resolve() returns, without the stat that resolve() adds
            identity = f"{os.path.realpath(image_path)}|{stat.st_size}|{stat.st_mtime_ns}"
            key = hashlib.sha1(identity.encode("utf-8", "surrogateescape")).hexdigest()
            path = self._paths[image_path] = self.directory / key[:2] / f"{key}.npy"
        return path

    def load(self, image_path: Path) -> torch.Tensor:
        """(grid_h, grid_w, encoder_dim) float32 features of a cached photo."""
        return torch.from_numpy(
            np.load(self.path_for(image_path), allow_pickle=False).astype(np.float32)
        )

    def file_size(self) -> int:
        """Disk space one photo's features take: its .npy file, in whole file-system blocks.
        Every photo's is the same: the encoder pools them all to one grid."""
        size = self.encoder.config.image_size
        with torch.inference_mode():
            features = self.encoder.eval()(torch.zeros(1, 3, size, size))  # (1, gh, gw, dim)
        buffer = io.BytesIO()
        np.save(buffer, features[0].half().numpy(), allow_pickle=False)
        return math.ceil(len(buffer.getvalue()) / _BLOCK) * _BLOCK

    def check_space(self, image_paths: Sequence[Path]) -> None:
        """Raise CacheTooLargeError, before any photo is encoded, when the features of the photos
        not cached yet would not fit on the cache's disk."""
        missing = len({p for p in image_paths if not self.path_for(p).is_file()})
        if not missing:
            return
        existing = next(folder for folder in (self.root, *self.root.parents) if folder.exists())
        free, file_size = shutil.disk_usage(existing).free, self.file_size()
        if missing * file_size > free:
            raise CacheTooLargeError(self.root, missing, file_size, free)

    @torch.inference_mode()
    def build(
        self,
        image_paths: Sequence[Path],
        *,
        batch_size: int = 32,
        workers: int = 2,
        device: torch.device | str = "cpu",
        progress: bool = True,
    ) -> dict[Path, str]:
        """Encode every photo not cached yet; returns {path: error} for photos that failed.

        Raises CacheDiskFullError when the disk fills; what was cached until then is kept.
        """
        missing = sorted({p for p in image_paths if not self.path_for(p).is_file()})
        failures: dict[Path, str] = {}
        if not missing:
            return failures
        self.encoder.to(device).eval()
        loader = DataLoader(
            _Photos(missing, self.encoder),
            batch_size=batch_size,
            num_workers=workers,
            collate_fn=_collate,
            generator=torch.Generator(),  # leaves the global RNG alone: see training/train.py
        )
        written = 0  # bytes cached by this call
        with tqdm(
            total=len(missing), desc="encoding photos", unit="img", disable=not progress
        ) as bar:
            for items in loader:
                good = [(i, pixels) for i, pixels, error in items if error is None]
                failures.update({missing[i]: error for i, _, error in items if error is not None})
                if good:
                    batch = torch.stack([pixels for _, pixels in good]).to(device)
                    features = self.encoder(batch).half().cpu().numpy()  # (batch, gh, gw, dim)
                    for (i, _), array in zip(good, features, strict=True):
                        path = self.path_for(missing[i])
                        buffer = io.BytesIO()
                        np.save(buffer, array, allow_pickle=False)
                        data = buffer.getvalue()
                        try:
                            path.parent.mkdir(parents=True, exist_ok=True)
                            write_atomically(path, data)
                        except OSError as error:
                            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                                raise
                            # Every file has this size: the photos share one feature grid.
                            needed = len(missing) * len(data)
                            raise CacheDiskFullError(self.root, written, needed) from error
                        written += len(data)
                bar.update(len(items))
        return failures


class OnTheFlyModel(CaptionModel):
    """A CaptionModel whose frozen encoder encodes the pixels of every batch (--no-cache), as
    the cache would have: in eval mode, without gradients. Its features stay float32, where
    the cache stores float16."""

    def features(self, inputs: torch.Tensor) -> torch.Tensor:
        """(batch, 3, size, size) pixels -> (batch, grid_h, grid_w, encoder_dim) features."""
        with torch.no_grad():
            return self.encoder(inputs)

    def train(self, mode: bool = True) -> OnTheFlyModel:
        super().train(mode)
        self.encoder.eval()  # dropout or drop-connect in a backbone would change its features
        return self


def model_inputs(
    encoder: Encoder,
    train_samples: list[Sample],
    val_samples: list[Sample],
    run: TrainRun,
    world: Distributed,
    device: torch.device,
) -> tuple[Callable[[Path], torch.Tensor], list[Sample], list[Sample]]:
    """How a photo becomes the model's input, and the training and validation samples that have
    one. A fine-tuned encoder, or any with --no-cache, reads pixels; a frozen one's features are
    cached once (by the main process; photos it cannot read are dropped), where the disk holds
    them. Raises a CacheError in every process when the main one cannot build the cache."""
    if encoder.trainable or run.no_cache:
        return partial(pixels, encoder), train_samples, val_samples
    cache = DiskFeatureCache(run.cache_dir or default_cache_root(), encoder)
    cache_error = None
    if world.main:
        paths = [s.image_path for s in train_samples + val_samples]
        try:
            cache.check_space(paths)
            failed = cache.build(
                paths, workers=run.workers, device=device, progress=not run.no_progress
            )
        except CacheError as error:
            cache_error, failed = error, {}
        for error in list(failed.values())[:5]:
            print(f"captioner-train: skipped {error}", file=sys.stderr)
        if failed:
            print(f"{len(failed)} unreadable photos skipped")
    # Every process waits here for the cache, and learns whether the main one could build
    # it: a barrier alone would keep the others waiting for ever after its error.
    if world.sum(float(cache_error is not None)):
        raise cache_error or CacheBuiltElsewhereError()
    train_samples, val_samples = (
        [s for s in samples if cache.path_for(s.image_path).is_file()]
        for samples in (train_samples, val_samples)
    )
    return cache.load, train_samples, val_samples


def pixels(encoder: Encoder, path: Path) -> torch.Tensor:
    """A photo as the encoder's input, (3, image_size, image_size)."""
    return encoder.preprocess(load_image(path, min_size=encoder.config.image_size))
