"""Which runtime runs a model: PyTorch, or ONNX Runtime for the encoder (captioner/onnx_backend.py),
and at which precision: float, or the encoder's int8 graph (captioner/quantize.py).

Torch-free, so the app can offer the choice before it imports torch.
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import TYPE_CHECKING

from captioner.quantize import AUTO_INT8, PrecisionWarning

if TYPE_CHECKING:
    import torch

BACKENDS = ("auto", "torch", "onnx")
PRECISIONS = ("float", "int8", "auto")  # float first: the default everywhere


def resolve_backend(name: str, device: torch.device) -> str:
    """ "auto" is ONNX Runtime on a CPU when it and onnx are installed, else PyTorch (CUDA and
    MPS always); "torch" and "onnx" are taken as they are, onnx only on the CPU."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    if name == "auto":
        installed = all(importlib.util.find_spec(m) for m in ("onnxruntime", "onnx"))
        return "onnx" if device.type == "cpu" and installed else "torch"
    if name == "onnx" and device.type != "cpu":
        raise ValueError(f"the onnx backend runs on the CPU, not {device}: use --backend torch")
    return name


def resolve_precision(name: str, backend: str, device: torch.device) -> str:
    """ "float" or "int8" for a resolved backend: int8 only for the onnx backend on a CPU (else
    float, with a PrecisionWarning saying why), and "auto" as measured (quantize.AUTO_INT8)."""
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name == "float" or (name == "auto" and not AUTO_INT8):
        return "float"
    if device.type != "cpu" or backend != "onnx":
        if name == "int8":
            where = f"on {device}" if device.type != "cpu" else "with --backend torch"
            warnings.warn(
                f"the int8 encoder runs in ONNX Runtime on the CPU; {where} the model runs "
                "in float",
                PrecisionWarning,
                stacklevel=3,
            )
        return "float"
    return "int8"
