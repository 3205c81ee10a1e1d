"""The outputs a photo gets besides its row: a sidecar, a description in the photo, a grid.

Each is written after the row; a problem with one is reported and counted, never fatal.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

from captioner.cli.batch.config import BatchRun
from captioner.cli.batch.report import Reporter
from captioner.photos.atomic import save_atomically, write_atomically
from captioner.photos.heatmap import attention_grid
from captioner.photos.images import ImageError, load_image, source_name
from captioner.photos.metadata import sidecar_path, write_caption_metadata
from captioner.results import CaptionResult

ATTENTION_CELL_SIZE = 224


def sidecar_file(photo_path: str, naming: str = "stem") -> Path:
    """The sidecar `--sidecar-name naming` gives a photo (see config.SIDECAR_NAMES)."""
    if naming == "full":
        return Path(photo_path + ".txt")
    return sidecar_path(photo_path)


def sidecar_clashes(photo_paths: Iterable[str], naming: str) -> dict[str, list[str]]:
    """Each photo whose sidecar another photo would also get (cat.png and cat.jpg both have
    cat.txt) -> every photo sharing that sidecar, in input order. Found before any is written,
    so no photo's sidecar is taken for a file that was there before the run."""
    sharing: defaultdict[str, list[str]] = defaultdict(list)
    for path in photo_paths:
        sharing[os.path.normcase(os.path.abspath(sidecar_file(path, naming)))].append(path)
    return {path: group for group in sharing.values() if len(group) > 1 for path in group}


def write_extras(
    result: CaptionResult,
    config: BatchRun,
    reporter: Reporter,
    clashes: Mapping[str, list[str]],
) -> None:
    """The extra outputs `config` asks for, for a captioned photo; `clashes` is what
    `sidecar_clashes` found in the run's photos."""
    name = source_name(result.source)
    if config.sidecar and result.source in clashes:
        # Which photo's caption a shared sidecar should hold is anyone's guess: none is written.
        others = [Path(other).name for other in clashes[result.source] if other != result.source]
        sidecar = sidecar_file(result.source, config.sidecar_name).name
        reporter.output_failed(
            f"{name}: shares its caption file {sidecar} with {', '.join(others)}; wrote none "
            f"of them (--sidecar-name full writes {Path(result.source).name}.txt)"
        )
    elif config.sidecar:
        sidecar = sidecar_file(result.source, config.sidecar_name)
        try:
            if not config.overwrite and sidecar.exists():
                raise FileExistsError(sidecar)
            write_atomically(sidecar, f"{result.text}\n".encode())
        except FileExistsError:
            reporter.output_failed(
                f"{name}: {source_name(sidecar)} already exists; kept it (--overwrite replaces)"
            )
        except OSError as error:
            reporter.output_failed(f"{name}: cannot write its caption file ({_reason(error)})")
    if config.write_metadata:
        try:
            write_caption_metadata(result.source, result.text, overwrite=config.overwrite)
        except FileExistsError:
            reporter.output_failed(
                f"{name}: already has a description; kept it (--overwrite replaces)"
            )
        except (ValueError, OSError) as error:  # both name the file and the reason
            reporter.output_failed(f"{name}: cannot store the caption in it ({_reason(error)})")
    if config.save_attention:
        try:
            _save_attention(result, config.save_attention)
        except (ImageError, OSError, ValueError) as error:
            reporter.output_failed(f"{name}: cannot save its attention grid ({_reason(error)})")


def attention_grid_path(directory: str | os.PathLike, photo_path: str) -> Path:
    """Where a photo's attention grid goes: its path below `directory`, plus .png.

    Relative to the current folder when the photo is inside it (photos/a.jpg ->
    DIR/photos/a.jpg.png), else its absolute path (/data/a.jpg -> DIR/data/a.jpg.png), so
    photos with the same name in different folders never overwrite each other's grids.
    """
    absolute = os.path.abspath(photo_path)
    relative = os.path.relpath(absolute)
    if relative == os.pardir or relative.startswith(os.pardir + os.sep):
        relative = os.path.splitdrive(absolute)[1].lstrip(os.sep)
    return Path(directory, relative + ".png")


def _save_attention(result: CaptionResult, directory: str) -> None:
    photo = load_image(result.source, min_size=ATTENTION_CELL_SIZE)
    grid = attention_grid(
        photo, result.tokens, result.maps, cell_size=ATTENTION_CELL_SIZE, kinds=result.map_kinds
    )
    target = attention_grid_path(directory, result.source)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_atomically(target, lambda file: grid.save(file, format="PNG"))


def _reason(error: Exception) -> str:
    if isinstance(error, ImageError):
        return error.reason
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)
