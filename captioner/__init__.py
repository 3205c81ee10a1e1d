"""captioner: image captioning with a CNN encoder and a soft-attention LSTM decoder.

The public names load on first use, so light modules (captioner.registry, captioner.photos.inputs,
...) can be imported without paying for torch.
"""

import importlib

_PUBLIC = {
    "Captioner": "captioner.api",
    "CaptionResult": "captioner.results",
    "CheckpointError": "captioner.registry",
    "DecodeOptions": "captioner.options",
    "ImageError": "captioner.photos.images",
}
__all__ = list(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'captioner' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
