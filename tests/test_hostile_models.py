"""Model directories and cached graphs written by someone else: every one is refused in one
line naming the file, or repaired, before anything large is allocated or downloaded."""

import json
import resource
import shutil

import pytest
import torch
from safetensors.torch import load_file, save, save_file

from captioner import Captioner, CheckpointError


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
