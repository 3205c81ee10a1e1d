"""The command-line arguments several commands share, declared once: how the engine runs
(--device, --backend, --precision, --batch-size, --workers) and how captions are searched
(DecodeOptions).

Each argument is checked while parsing, so a bad value is a usage error naming the option.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import warnings

from captioner.backends import BACKENDS, PRECISIONS
from captioner.device import resolve_device
from captioner.options import DecodeOptions

ArgumentGroup = argparse.ArgumentParser | argparse._ArgumentGroup


def number_argument(convert: type, low: float, high: float = math.inf):
    """An argparse `type` that accepts a number from low to high; a usage error otherwise."""

    def parse(text: str) -> int | float:
        if convert is float:
            value = _float_or_nan(text)
            if not low <= value <= high:  # NaN fails it too
                raise argparse.ArgumentTypeError(
                    f"must be a number from {low:g} to {high:g}, got {text!r}"
                )
            return value
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {low:g} or more, got {value}")
        if value > high:
            raise argparse.ArgumentTypeError(f"must be {high:g} or less, got {value}")
        return value

    return parse


positive_int = number_argument(int, 1)


def _float_or_nan(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def device_argument(text: str) -> str:
    """--device, checked while parsing: a device this machine lacks is a usage error."""
    try:
        resolve_device(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def default_workers() -> int:
    """Processes that read photos unless told: one per core, at most 4."""
    return min(4, os.cpu_count() or 1)


def add_device_argument(
    group: ArgumentGroup, *, help: str = "auto (CUDA, MPS, CPU), cpu, cuda:1, mps"
) -> None:
    group.add_argument("--device", type=device_argument, default="auto", help=help)


def add_batch_size_argument(
    group: ArgumentGroup, *, default: int = 16, help: str = "default: %(default)s"
) -> None:
    group.add_argument("--batch-size", type=positive_int, default=default, help=help)


def add_workers_argument(
    group: ArgumentGroup,
    *,
    help: str = "processes that decode and resize photos (0: none; default: %(default)s)",
) -> None:
    group.add_argument(
        "--workers", type=number_argument(int, 0), default=default_workers(), help=help
    )


def add_engine_arguments(group: ArgumentGroup) -> None:
    """--device, --backend, --precision, --batch-size and --workers: how the engine runs, for
    every command that runs it."""
    add_device_argument(group)
    group.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="auto: ONNX Runtime on a CPU (faster), PyTorch on CUDA/MPS (default: %(default)s)",
    )
    group.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float",
        help="int8: the onnx backend's encoder in 8 bits on a CPU (faster; built once, cached; "
        "captions can differ); auto: int8 only where it measured as good as float "
        "(docs/guides/batch_command.md; default: %(default)s)",
    )
    add_batch_size_argument(group)
    add_workers_argument(group)


def plain_warnings(program: str) -> None:
    """captioner's own notices (the int8 graph being built, int8 not used and why) print as
    one line, "program: message", not as Python's file, line and source; other warnings keep
    Python's format (a test calling a command's main in-process keeps its own)."""
    from captioner.quantize import Int8BuildNote, PrecisionWarning

    python_format = warnings.formatwarning

    def format_warning(message, category, *where) -> str:
        if issubclass(category, (Int8BuildNote, PrecisionWarning)):
            return f"{program}: {message}\n"
        return python_format(message, category, *where)

    warnings.formatwarning = format_warning


def add_decode_arguments(group: ArgumentGroup) -> None:
    """--beam-size, --max-length, --length-penalty, --no-repeat-ngram-size,
    --consensus-samples, each checked against DecodeOptions' limits while parsing."""
    defaults = DecodeOptions()
    for field in dataclasses.fields(DecodeOptions):
        low, high = DecodeOptions.LIMITS[field.name]
        group.add_argument(
            "--" + field.name.replace("_", "-"),
            type=number_argument(int if field.type == "int" else float, low, high),
            default=getattr(defaults, field.name),
            help=f"{DecodeOptions.HELP[field.name]}; {low:g} to {high:g} (default: %(default)s)",
        )


def decode_options(args: argparse.Namespace) -> DecodeOptions:
    """The options add_decode_arguments' arguments parsed into `args`."""
    fields = dataclasses.fields(DecodeOptions)
    return DecodeOptions(**{field.name: getattr(args, field.name) for field in fields})
