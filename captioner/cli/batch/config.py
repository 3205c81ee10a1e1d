"""BatchRun: everything one batch run was asked to do, checked once, then read by the run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from captioner.options import DecodeOptions

# How a sidecar is named: stem, photo.jpg -> photo.txt (what the app and most tools read);
# full, photo.jpg -> photo.jpg.txt, one per photo when photos differ only in their extension.
SIDECAR_NAMES = ("stem", "full")


@dataclass(frozen=True)
class BatchRun:
    """One run of the batch command, as its command line (and torchrun) set it up.

    Raises ValueError, naming the command-line options, for a setting out of range or two that
    contradict each other.
    """

    # Which photos
    paths: tuple[str, ...] = ()  # files, folders, patterns; "-" reads a list from stdin
    files_from: str | None = None  # a file listing paths, one per line; "-" is stdin
    recursive: bool = False
    shard: tuple[int, int] | None = None  # (I, N): every N-th photo starting at I

    # Model and decoding
    model: str | None = None  # a model directory or a shipped model's name; None: default
    device: str = "auto"
    backend: str = "auto"  # captioner.onnx_backend.BACKENDS
    precision: str = "float"  # captioner.backends.PRECISIONS
    decoding: DecodeOptions = DecodeOptions()
    batch_size: int = 16
    workers: int = 0  # processes that decode and resize photos

    # Output
    format: str = "jsonl"
    output: str | None = None  # None: stdout
    resume: bool = False
    beams: int = 1  # alternatives written per photo
    sidecar: bool = False
    sidecar_name: str = "stem"  # one of SIDECAR_NAMES: photo.txt, or photo.jpg.txt
    write_metadata: bool = False
    save_attention: str | None = None  # a folder for the attention grids
    overwrite: bool = False
    quiet: bool = False
    # The caption library the results also go to (captioner.library); None: none. Photos it
    # has from the same model and options are skipped, so a killed run picks up where it was.
    library: str | None = None

    def __post_init__(self) -> None:
        if self.shard is not None and not 0 <= self.shard[0] < self.shard[1]:
            raise ValueError(f"--shard {self.shard[0]}/{self.shard[1]}: expected 0 <= I < N")
        if self.sidecar_name not in SIDECAR_NAMES:
            raise ValueError(f"--sidecar-name must be one of {', '.join(SIDECAR_NAMES)}")
        if self.beams > self.decoding.beam_size:
            raise ValueError(f"--beams {self.beams} needs --beam-size {self.beams} or more")
        if self.beams > 1 and self.format not in ("jsonl", "csv"):
            raise ValueError(
                f"--beams is for jsonl and csv; the {self.format} format has one caption"
            )
        if self.resume and self.output is None:
            raise ValueError("--resume needs -o FILE: it reads what that file already holds")

    @property
    def reads_stdin(self) -> bool:
        return "-" in (*self.paths, self.files_from)

    @property
    def writes_rows(self) -> bool:
        """False when the library alone gets the results: no -o, so no rows on stdout."""
        return self.output is not None or self.library is None

    @property
    def output_file(self) -> str | None:
        """The file this run writes: captions.jsonl, or captions.3-of-8.jsonl as shard 3 of 8.

        One file per shard, so no two processes ever write the same one.
        """
        if self.output is None or self.shard is None or self.shard[1] == 1:
            return self.output
        output = Path(self.output)
        index, count = self.shard
        return str(output.with_name(f"{output.stem}.{index}-of-{count}{output.suffix}"))
