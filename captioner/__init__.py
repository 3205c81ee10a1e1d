"""captioner: image captioning with a CNN encoder and a soft-attention LSTM decoder."""

from captioner.api import Captioner, CaptionResult
from captioner.checkpoint import CheckpointError
from captioner.images import ImageError

__all__ = ["Captioner", "CaptionResult", "CheckpointError", "ImageError"]
