"""Model directories and cached graphs written by someone else: every one is refused in one
line naming the file, or repaired, before anything large is allocated or downloaded."""

import hashlib
import json
import random
import resource
import shutil
import socket

import onnx
import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import load_file, save, save_file

from captioner import Captioner, CheckpointError, onnx_backend
from captioner.encoder import Encoder, EncoderConfig


def load_error(model_dir) -> str:
    with pytest.raises(CheckpointError) as caught:
        Captioner.load(model_dir, device="cpu", backend="torch")
    message = str(caught.value)
    assert "\n" not in message
    return message


def copy_model(source, target, config_edit=None, tensors=None):
    """A copy of the model directory `source`, its config.json's sections updated with
    `config_edit` and its weights replaced by `tensors` when given."""
    shutil.copytree(source, target)
    if config_edit is not None:
        config = json.loads((source / "config.json").read_text())
        for section, fields in config_edit.items():
            config[section] = {**config[section], **fields}
        (target / "config.json").write_text(json.dumps(config))
    if tensors is not None:
        save_file(tensors, target / "model.safetensors")
    return target


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def test_a_tiny_directory_asking_for_a_huge_decoder_allocates_nothing(tmp_path):
    """208 bytes (dimensions 8,192, no tensors) made `captioner --model` allocate 5 GB."""
    model = tmp_path / "model"
    model.mkdir()
    dimensions = dict.fromkeys(("encoder_dim", "embed_dim", "decoder_dim", "attention_dim"), 8192)
    config = {"format_version": 1, "encoder": {}, "decoder": {"vocab_size": 5, **dimensions}}
    (model / "config.json").write_text(json.dumps(config))
    (model / "vocab.json").write_text(json.dumps({"itos": ["<pad>", "<start>", "<end>", "<unk>",
                                                           "a"]}))  # fmt: skip
    (model / "model.safetensors").write_bytes(save({}))
    before = peak_rss_mb()
    message = load_error(model)
    assert peak_rss_mb() - before < 200
    assert "model.safetensors: no tensor decoder." in message
    assert "which the decoder in config.json needs" in message


def test_tensors_of_no_bytes_cannot_stand_for_a_huge_decoder(tiny_model_dir, tmp_path):
    """Tensors that carry the sizes config.json asks for as their width, with no rows."""
    tensors = load_file(tiny_model_dir / "model.safetensors")
    tensors["decoder.hidden_proj.weight"] = torch.zeros(0, 8192)
    tensors["decoder.embedding.weight"] = torch.zeros(0, 8192)
    tensors["decoder.output.weight"] = torch.zeros(len(tensors["decoder.output.bias"]), 0)
    model = copy_model(tiny_model_dir, tmp_path / "model",
                       {"decoder": {"decoder_dim": 8192, "embed_dim": 8192}}, tensors)  # fmt: skip
    before = peak_rss_mb()
    message = load_error(model)
    assert peak_rss_mb() - before < 200
    assert f"{model / 'model.safetensors'}: decoder." in message and "has shape" in message


@pytest.mark.parametrize("name", ["config.json", "vocab.json"])
def test_json_nested_too_deeply_is_refused(tiny_model_dir, tmp_path, name):
    model = copy_model(tiny_model_dir, tmp_path / "model")
    (model / name).write_text("[" * 100_000 + "]" * 100_000)
    assert load_error(model) == f"{model / name}: JSON nested too deeply to read"


def test_vocabulary_words_that_are_not_strings_are_refused(tiny_model_dir, tmp_path):
    model = copy_model(tiny_model_dir, tmp_path / "model")
    itos = json.loads((model / "vocab.json").read_text())["itos"]
    (model / "vocab.json").write_text(json.dumps({"itos": itos[:-1] + [{"a": 1}]}))
    assert load_error(model).startswith(f"{model / 'vocab.json'}: ")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_decoder_weights_holding_nan_or_inf_are_named(tiny_model_dir, tmp_path, value):
    """NaN weights loaded, then every caption ended in an IndexError from beam search."""
    tensors = load_file(tiny_model_dir / "model.safetensors")
    tensors["decoder.output.weight"][3, 5] = value
    model = copy_model(tiny_model_dir, tmp_path / "model", None, tensors)
    assert load_error(model) == (
        f"{model / 'model.safetensors'}: decoder.output.weight holds inf or NaN"
    )


def torchvision_model(tiny_model_dir, target, weights=None):
    """The tiny model with a frozen torchvision ResNet-18 as its encoder, its weights the local
    file `weights` (None: none named)."""
    return copy_model(tiny_model_dir, target, {"encoder": {"name": "resnet18", "weights": weights}})


def not_weights(tmp_path) -> dict:
    """Files that a config.json's encoder.weights may name but that hold no weights."""
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n")
    jpeg = tmp_path / "photo.jpg"
    Image.new("RGB", (8, 8), "red").save(jpeg)
    renamed = tmp_path / "photo.safetensors"
    renamed.write_bytes(jpeg.read_bytes())
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], listed)
    return {
        passwd: "not a weights file (neither safetensors nor a PyTorch state dict)",
        jpeg: "not a weights file (neither safetensors nor a PyTorch state dict)",
        renamed: "not a weights file (neither safetensors nor a PyTorch state dict)",
        listed: "not a state dict (a mapping of names to tensors)",
        tmp_path: "not a weights file but a directory or a device",
        tmp_path / "missing.pth": "encoder weights file not found",
    }


def test_an_encoder_weights_file_that_holds_no_weights_is_named(tiny_model_dir, tmp_path):
    for number, (path, expected) in enumerate(not_weights(tmp_path).items()):
        model = torchvision_model(tiny_model_dir, tmp_path / f"model{number}", str(path))
        message = load_error(model)
        assert message.startswith(f"{model / 'config.json'}: ")
        assert str(path) in message and expected in message


def test_an_encoder_weights_file_of_another_network_is_named(tiny_model_dir, tmp_path):
    resnet18 = torchvision.models.resnet18(weights=None).state_dict()
    cases = {
        "short": ({k: v for k, v in resnet18.items() if k != "fc.bias"}, "no tensor fc.bias"),
        "extra": ({**resnet18, "head.weight": torch.zeros(3)}, "head.weight is not one of its"),
        "wide": ({**resnet18, "fc.bias": torch.zeros(7)}, "fc.bias has shape [7], resnet18 needs"),
        "nan": ({**resnet18, "fc.bias": torch.full((1000,), float("nan"))}, "fc.bias holds inf"),
    }
    for label, (state, expected) in cases.items():
        weights = tmp_path / f"{label}.pth"
        torch.save(state, weights)
        model = torchvision_model(tiny_model_dir, tmp_path / label, str(weights))
        message = load_error(model)
        assert message.startswith(f"{model / 'config.json'}: {weights}: ") and expected in message


def test_an_encoder_without_local_weights_is_never_downloaded(
    tiny_model_dir, tmp_path, monkeypatch
):
    """encoder.name resnet18 and no weights: loading the model tried to download them."""
    attempts = []

    def offline(*args, **kwargs):
        attempts.append(args)
        raise OSError("network unavailable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setattr(socket.socket, "connect", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no weights downloaded before
    model = torchvision_model(tiny_model_dir, tmp_path / "model")
    message = load_error(model)
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert f"encoder resnet18: no ImageNet weights ({cached} does not exist), and none are " in (
        message
    )
    assert "set encoder.weights to a local weights file" in message
    assert attempts == []
    # Weights torchvision downloaded before, when asked to (captioner-train), are read.
    resnet18 = torchvision.models.resnet18(weights=None)
    cached.parent.mkdir(parents=True)
    torch.save(resnet18.state_dict(), cached)
    encoder = Encoder(EncoderConfig(name="resnet18"), download=False)
    torch.testing.assert_close(encoder.backbone[4][1].conv2.weight, resnet18.layer4[1].conv2.weight)
    assert attempts == []


def test_an_encoder_of_another_kind_is_refused_before_it_is_built(tiny_model_dir, tmp_path):
    """Any torchvision classifier was built before its layout was checked: 2.6 GB for this one."""
    weights = tmp_path / "weights.pth"
    torch.save({}, weights)
    edit = {"encoder": {"name": "regnet_y_128gf", "weights": str(weights)}}
    before = peak_rss_mb()
    message = load_error(copy_model(tiny_model_dir, tmp_path / "model", edit))
    assert peak_rss_mb() - before < 200
    assert "encoder 'regnet_y_128gf': not one of the supported backbones (efficientnet-lite0" in (
        message
    )


@pytest.fixture(scope="module")
def lite0_graph(tmp_path_factory):
    """A small Lite0 encoder, its freshly exported graph's cache folder, and the features that
    graph gives for a few random images."""
    encoder = Encoder(EncoderConfig(image_size=64))
    root = tmp_path_factory.mktemp("fresh")
    pixels = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    features = onnx_backend.onnx_encoder(encoder, root)(pixels)
    return encoder, root / f"encoder-{onnx_backend.graph_key(encoder)}", pixels, features


def identity_graph() -> bytes:
    """A valid ONNX graph with the encoder graph's input and output names."""
    pixels = onnx.helper.make_tensor_value_info("pixels", onnx.TensorProto.FLOAT, None)
    features = onnx.helper.make_tensor_value_info("features", onnx.TensorProto.FLOAT, None)
    node = onnx.helper.make_node("Identity", ["pixels"], ["features"])
    graph = onnx.helper.make_graph([node], "impostor", [pixels], [features])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
    return model.SerializeToString()


def digest_line(folder, graph: bytes) -> bytes:
    key = folder.name.removeprefix("encoder-")
    return f"sha256 {hashlib.sha256(graph).hexdigest()} key {key}\n".encode()


GRAPH_DAMAGE = {
    "random": lambda graph: random.Random(0).randbytes(4096),
    "truncated": lambda graph: graph[: len(graph) // 2],
    "empty": lambda graph: b"",
    "another graph": lambda graph: identity_graph(),
}


@pytest.mark.parametrize(
    "damage, digest",
    [(damage, digest) for damage in GRAPH_DAMAGE for digest in ("stale", "missing")]
    # onnxruntime cannot open these, though their digest was written with them
    + [(damage, "of the damaged graph") for damage in ("random", "truncated", "empty")],
)
def test_a_damaged_cached_encoder_graph_is_rebuilt(lite0_graph, tmp_path, damage, digest):
    """A broken encoder.onnx was used as it was on every run, until deleted by hand."""
    encoder, fresh, pixels, expected = lite0_graph
    folder = tmp_path / fresh.name
    shutil.copytree(fresh, folder)
    good = (fresh / "encoder.onnx").read_bytes()
    broken = GRAPH_DAMAGE[damage](good)
    (folder / "encoder.onnx").write_bytes(broken)
    if digest == "missing":
        (folder / "digest").unlink()
    elif digest == "of the damaged graph":
        (folder / "digest").write_bytes(digest_line(folder, broken))
    features = onnx_backend.onnx_encoder(encoder, tmp_path)(pixels)
    torch.testing.assert_close(features, expected, rtol=0, atol=0)
    assert (folder / "encoder.onnx").read_bytes() == good
    assert (folder / "digest").read_bytes() == digest_line(folder, good)


@pytest.mark.parametrize("damage", ["graph a directory", "folder a file"])
def test_an_unwritable_graph_cache_is_worked_around_with_a_warning(lite0_graph, tmp_path, damage):
    encoder, fresh, pixels, expected = lite0_graph
    folder = tmp_path / fresh.name
    if damage == "folder a file":
        folder.write_text("not a folder")
    else:
        (folder / "encoder.onnx").mkdir(parents=True)
    with pytest.warns(onnx_backend.OnnxCacheWarning, match="cannot cache the encoder's ONNX"):
        features = onnx_backend.onnx_encoder(encoder, tmp_path)(pixels)
    torch.testing.assert_close(features, expected, rtol=0, atol=0)
