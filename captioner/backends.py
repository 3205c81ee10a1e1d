"""Which runtime runs a model: PyTorch, or ONNX Runtime for the encoder (captioner/onnx_backend.py).

Torch-free, so the app can offer the choice before it imports torch.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

BACKENDS = ("auto", "torch", "onnx")


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
