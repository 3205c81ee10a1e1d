"""Which device a name means ("auto" included), shared by the API, the app and training."""

from __future__ import annotations

import torch

DEVICE_NAMES = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """ "auto" picks CUDA, then Apple's MPS, then the CPU; else the device `name` names.

    Raises ValueError with a one-line reason when the name is not a device this program runs
    on, or this machine does not have it, so callers can print it instead of torch's traceback.
    """
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:  # torch's message lists a dozen backends this program never uses
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device {name!r}: expected {DEVICE_NAMES}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name!r} requested, but this machine has no CUDA device")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(
                f"{name!r} requested, but this machine has {count} CUDA device"
                f"{'' if count == 1 else 's'} (cuda:0 to cuda:{count - 1})"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{name!r} requested, but this machine has no MPS device")
    return device
