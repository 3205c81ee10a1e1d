"""The encoder feature cache: with a frozen encoder, each photo is encoded once, ever.

Files live under `root/<encoder fingerprint>/<key[:2]>/<key>.npy` (float16). The fingerprint
covers the encoder's config, so changing the backbone, image size or grid starts a new cache;
the key covers the photo's path, size and modification time, so an edited photo is re-encoded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from captioner.atomic import save_atomically
from captioner.encoder import Encoder
from captioner.images import ImageError, load_image


def default_cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "captioner" / "features"


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


class FeatureCache:
    def __init__(self, root: str | os.PathLike, encoder: Encoder) -> None:
        self.encoder = encoder
        self.directory = Path(root) / encoder_fingerprint(encoder)

    def path_for(self, image_path: Path) -> Path:
        stat = image_path.stat()
        identity = f"{image_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        key = hashlib.sha1(identity.encode("utf-8", "surrogateescape")).hexdigest()
        return self.directory / key[:2] / f"{key}.npy"

    def load(self, image_path: Path) -> torch.Tensor:
        """(grid_h, grid_w, encoder_dim) float32 features of a cached photo."""
        return torch.from_numpy(
            np.load(self.path_for(image_path), allow_pickle=False).astype(np.float32)
        )

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
        """Encode every photo not cached yet; returns {path: error} for photos that failed."""
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
                        path.parent.mkdir(parents=True, exist_ok=True)
                        save_atomically(path, lambda f, a=array: np.save(f, a, allow_pickle=False))
                bar.update(len(items))
        return failures
