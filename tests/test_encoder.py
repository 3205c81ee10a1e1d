"""Encoders: offline Lite0 really has ImageNet weights; torchvision backbones need no download."""

import pytest
import torch
from safetensors.torch import save_file
from torchvision.models import ResNet50_Weights

from captioner.encoder import Encoder, EncoderConfig

IMAGENET_CLASSES = ResNet50_Weights.IMAGENET1K_V2.meta["categories"]


@pytest.fixture(scope="module")
def lite0():
    return Encoder(EncoderConfig())


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("coffee", {"espresso", "cup", "coffee mug"}),
        ("chelsea", {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}),
        ("rocket", {"missile", "projectile"}),
    ],
)
def test_lite0_imagenet_head_recognises_real_photos(lite0, photos, name, expected):
    pixels = lite0.preprocess(photos[name]).unsqueeze(0)
    with torch.no_grad():
        top5 = lite0.backbone(pixels).topk(5).indices[0].tolist()
    assert expected & {IMAGENET_CLASSES[i] for i in top5}


def test_feature_grid_shape_follows_image_and_grid_size(lite0, photos):
    pixels = lite0.preprocess(photos["coffee"]).unsqueeze(0)
    assert pixels.shape == (1, 3, 224, 224)
    with torch.no_grad():
        assert lite0(pixels).shape == (1, 7, 7, 1280)
        pooled = Encoder(EncoderConfig(image_size=320, grid_size=5))
        assert pooled(pooled.preprocess(photos["coffee"]).unsqueeze(0)).shape == (1, 5, 5, 1280)
        large = Encoder(EncoderConfig(image_size=320))
        assert large(large.preprocess(photos["coffee"]).unsqueeze(0)).shape == (1, 10, 10, 1280)


def test_frozen_by_default_and_fine_tuning_unfreezes_the_last_blocks():
    frozen = Encoder(EncoderConfig())
    assert not any(p.requires_grad for p in frozen.parameters())
    tuned = Encoder(EncoderConfig(fine_tune_blocks=2))
    trainable = {n.split(".")[1] for n, p in tuned.named_parameters() if p.requires_grad}
    assert trainable == {"_blocks", "_conv_head", "_bn1"}
    assert tuned.backbone._blocks[-1]._project_conv.weight.requires_grad
    assert not tuned.backbone._blocks[-2]._project_conv.weight.requires_grad
    tuned.train()
    assert all(not m.training for m in tuned.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_resnet_from_a_local_weights_file(tmp_path):
    """Offline users point `weights` at a file; no download happens."""
    source = Encoder(EncoderConfig(name="resnet50"), pretrained=False)
    state = {k: v.contiguous() for k, v in source.backbone.state_dict().items()}
    torchvision_names = {}
    for key, value in state.items():  # back to torchvision's own parameter names
        index, rest = key.split(".", 1)
        prefix = ["", "layer1", "layer2", "layer3", "layer4"][int(index)]
        if prefix:
            torchvision_names[f"{prefix}.{rest}"] = value
        else:
            stem = {"0": "conv1", "1": "bn1"}[rest.split(".", 1)[0]]
            torchvision_names[f"{stem}.{rest.split('.', 1)[1]}"] = value
    torchvision_names["fc.weight"] = torch.zeros(1000, 2048)
    torchvision_names["fc.bias"] = torch.zeros(1000)
    weights = tmp_path / "resnet50.safetensors"
    save_file(torchvision_names, weights)

    encoder = Encoder(EncoderConfig(name="resnet50", weights=str(weights)))
    torch.testing.assert_close(
        encoder.backbone.state_dict()["4.0.conv1.weight"], state["4.0.conv1.weight"]
    )
    assert encoder.mean == (0.485, 0.456, 0.406)
    with torch.no_grad():
        assert encoder(torch.zeros(2, 3, 224, 224)).shape == (2, 7, 7, 2048)


def test_missing_local_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="encoder weights file not found"):
        Encoder(EncoderConfig(name="resnet101", weights=str(tmp_path / "missing.pth")))
