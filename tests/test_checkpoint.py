"""Model directories: round trip, refusal of pickles, clear errors, atomic writes."""

import json
import os
import stat

import numpy as np
import pytest
import torch
from conftest import tiny_copy_captioner
from safetensors.torch import load_file, save_file

import captioner.api
import captioner.files.checkpoint
import captioner.registry
from captioner import Captioner, CheckpointError
from captioner.options import DecodeOptions


def test_round_trip_gives_identical_captions(tiny_captioner, tiny_model_dir, photos):
    assert sorted(p.name for p in tiny_model_dir.iterdir()) == [
        "config.json", "model.safetensors", "vocab.json"
    ]  # fmt: skip
    loaded = Captioner.load(tiny_model_dir, device="cpu", backend="torch")
    images = list(photos.values())
    before = tiny_captioner.caption(images, DecodeOptions(beam_size=3))
    after = loaded.caption(images, DecodeOptions(beam_size=3))
    assert [r.text for r in after] == [r.text for r in before]
    assert [r.score for r in after] == pytest.approx([r.score for r in before], abs=1e-6)
    assert loaded.name == "tiny-test-model"
    assert loaded.vocab == tiny_captioner.vocab


def test_frozen_encoder_weights_are_not_duplicated(tiny_model_dir):
    size_mb = (tiny_model_dir / "model.safetensors").stat().st_size / 1e6
    assert size_mb < 5  # decoder only; Lite0 alone would be ~14 MB


def test_pickle_file_is_refused(tmp_path, tiny_captioner):
    pickled = tmp_path / "model.pt"
    torch.save(tiny_captioner.decoder.state_dict(), pickled)
    with pytest.raises(CheckpointError, match="refusing to load a pickle"):
        Captioner.load(pickled)
    renamed = tmp_path / "weights.data"  # a pickle is recognised by its bytes, not only its name
    pickled.rename(renamed)
    with pytest.raises(CheckpointError, match="refusing to load a pickle"):
        Captioner.load(renamed)


def test_directory_holding_only_a_pickle_is_refused(tmp_path, tiny_captioner):
    torch.save(tiny_captioner.decoder.state_dict(), tmp_path / "checkpoint.pth")
    with pytest.raises(CheckpointError, match="checkpoint.pth: refusing to load a pickle"):
        Captioner.load(tmp_path)


def test_incomplete_and_wrong_directories_name_the_problem(tmp_path, tiny_model_dir):
    with pytest.raises(CheckpointError, match="no such model directory"):
        Captioner.load(tmp_path / "nowhere")
    with pytest.raises(
        CheckpointError, match=r"missing config.json, vocab.json, model.safetensors"
    ):
        Captioner.load(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "vocab.json"):
        (broken / name).write_bytes((tiny_model_dir / name).read_bytes())
    (broken / "model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        Captioner.load(broken)
    config = json.loads((tiny_model_dir / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "format_version": 99}))
    with pytest.raises(CheckpointError, match="format_version 99 is not supported"):
        Captioner.load(broken)


def test_failed_save_keeps_the_previous_model(tmp_path, tiny_captioner, monkeypatch):
    target = tiny_captioner.save(tmp_path / "model")
    before = {p.name: p.read_bytes() for p in target.iterdir()}

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(captioner.files.checkpoint, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        tiny_captioner.save(target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary left behind


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_saved_model_can_be_shared_as_the_umask_allows(tmp_path, tiny_captioner):
    previous = os.umask(0o022)
    try:
        target = tiny_captioner.save(tmp_path / "model")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in target.iterdir()} == {
        "config.json": 0o644,
        "vocab.json": 0o644,
        "model.safetensors": 0o644,
    }


def test_missing_default_model_says_how_to_pass_one(tmp_path, monkeypatch):
    monkeypatch.setattr(captioner.registry, "DEFAULT_MODEL_DIR", tmp_path)
    with pytest.raises(CheckpointError, match="Pass a model directory"):
        Captioner.load()


def edited_copy(model_dir, target, config=None, tensors=None):
    """A copy of a model directory with some config.json sections updated and tensors replaced
    (a value of None removes the tensor)."""
    target.mkdir()
    (target / "vocab.json").write_bytes((model_dir / "vocab.json").read_bytes())
    settings = json.loads((model_dir / "config.json").read_text())
    for section, fields in (config or {}).items():
        settings[section].update(fields)
    (target / "config.json").write_text(json.dumps(settings))
    weights = {**load_file(model_dir / "model.safetensors"), **(tensors or {})}
    save_file({k: v for k, v in weights.items() if v is not None}, target / "model.safetensors")
    return target


def load_error(model_dir) -> str:
    with pytest.raises(CheckpointError) as caught:
        Captioner.load(model_dir, device="cpu")
    message = str(caught.value)
    assert "\n" not in message  # one line, not a state_dict dump
    return message


def test_absurd_sizes_are_refused_before_a_decoder_is_built(tiny_model_dir, tmp_path, monkeypatch):
    """decoder_dim 10**6 allocated 3.7 GB before failing."""
    model = edited_copy(tiny_model_dir, tmp_path / "model", {"decoder": {"decoder_dim": 10**6}})

    def no_decoder(*args, **kwargs):
        raise AssertionError("a decoder was built from an unchecked config.json")

    monkeypatch.setattr(captioner.api, "Decoder", no_decoder)
    message = load_error(model)
    assert message.endswith("config.json: decoder.decoder_dim 1000000 is out of range (1..65536)")


@pytest.mark.parametrize(
    "edit, expected",
    [
        ({"decoder": {"decoder_dim": 512}}, "decoder.decoder_dim 512 does not match the weights "
         "(decoder.hidden_proj.weight [512, 128]: 128)"),
        ({"decoder": {"vocab_size": 99}}, "decoder.vocab_size 99 does not match vocab.json"),
        ({"decoder": {"embed_dim": "64"}}, "decoder.embed_dim must be an integer, not '64'"),
        ({"decoder": {"attention_dim": True}}, "decoder.attention_dim must be an integer"),
        ({"decoder": {"dropout": 1.5}}, "decoder.dropout 1.5 is out of range"),
        ({"decoder": {"cell": "transformer"}}, "decoder.cell 'transformer' is not one of lstm"),
        ({"decoder": {"coordinates": True}}, "decoder.encoder_dim 1280 (+ 2 coordinates) does "
         "not match the weights (decoder.encoder_att.weight [64, 1280]: 1280)"),
        ({"decoder": {"cell": "gru"}}, "decoder.input_proj.weight has shape [512, 1344], but "
         "the decoder in config.json needs [384, 1344]"),
        ({"decoder": {"word_attention": True}}, "no tensor decoder.word_att.weight, which the "
         "decoder in config.json needs"),
        ({"encoder": {"image_size": 10**6}}, "encoder.image_size 1000000 is out of range"),
        ({"encoder": {"feature_stride": 16}}, "decoder.encoder_dim 1280 does not match the "
         "encoder (efficientnet-lite0 gives 112 features at stride 16)"),
    ],
)  # fmt: skip
def test_a_config_that_does_not_fit_its_weights_names_the_field(
    tiny_model_dir, tmp_path, edit, expected
):
    assert expected in load_error(edited_copy(tiny_model_dir, tmp_path / "model", edit))


def test_a_config_json_that_is_not_an_object_is_refused(tiny_model_dir, tmp_path):
    model = edited_copy(tiny_model_dir, tmp_path / "model")
    (model / "config.json").write_text("[1, 2]")
    assert "config.json: expected a JSON object" in load_error(model)
    settings = json.loads((tiny_model_dir / "config.json").read_text())
    del settings["decoder"]["vocab_size"]
    (model / "config.json").write_text(json.dumps(settings))
    assert "config.json: decoder.vocab_size is missing" in load_error(model)


def test_a_tensor_of_the_wrong_shape_is_named_in_one_line(tiny_model_dir, tmp_path):
    gate = load_file(tiny_model_dir / "model.safetensors")["decoder.context_gate.weight"]
    model = edited_copy(tiny_model_dir, tmp_path / "swapped", None, {
        "decoder.context_gate.weight": gate.T.contiguous()
    })  # fmt: skip
    assert load_error(model).endswith(
        "model.safetensors: decoder.context_gate.weight has shape [128, 1], "
        "but the decoder in config.json needs [1, 128]"
    )
    extra = edited_copy(tiny_model_dir, tmp_path / "extra", None, {"decoder.bonus": gate})
    assert "decoder.bonus is not part of the decoder in config.json" in load_error(extra)
    missing = edited_copy(tiny_model_dir, tmp_path / "missing", None, {"decoder.output.bias": None})
    assert "no tensor decoder.output.bias" in load_error(missing)


def test_a_fine_tuned_encoder_tensor_of_the_wrong_shape_is_named(
    tiny_captioner, tiny_model_dir, tmp_path
):
    state = tiny_captioner.encoder.state_dict()
    encoder = {f"encoder.{k}": v.contiguous() for k, v in state.items()}
    name = "encoder.backbone._conv_head.weight"
    encoder[name] = encoder[name][:-1].clone()
    model = edited_copy(tiny_model_dir, tmp_path / "model", {"encoder": {"fine_tune_blocks": 1}},
                        encoder)  # fmt: skip
    assert f"{name} has shape [1279, 320, 1, 1], but the encoder in config.json needs " in (
        load_error(model)
    )


@pytest.fixture(scope="module")
def copy_model_dir(tiny_captioner, tmp_path_factory):
    """A model that copies "cat" and "coffee cup" from Lite0's ImageNet classifier."""
    model = tiny_copy_captioner(tiny_captioner, ["cat", "coffee cup"])
    return model, model.save(tmp_path_factory.mktemp("models") / "copy")


def test_a_copy_model_round_trips_with_its_classifier_and_noun_table(copy_model_dir, photos):
    model, path = copy_model_dir
    loaded = Captioner.load(path, device="cpu", backend="torch")
    assert loaded.decoder.config == model.decoder.config
    for name in ("noun_head_weight", "noun_head_bias", "class_to_noun", "noun_singular_ids",
                 "noun_plural_ids"):  # fmt: skip
        assert torch.equal(getattr(loaded.decoder, name), getattr(model.decoder, name))
    images = [photos["chelsea"], photos["coffee"]]
    before, after = (
        model.caption(images, DecodeOptions(beam_size=3)),
        loaded.caption(images, DecodeOptions(beam_size=3)),
    )
    assert [r.text for r in after] == [r.text for r in before]
    for ours, theirs in zip(after, before, strict=True):
        assert ours.score == pytest.approx(theirs.score, abs=1e-6)
        assert ours.copy_gate.shape == (len(ours.tokens),)
        np.testing.assert_allclose(ours.copy_gate, theirs.copy_gate, atol=1e-6)
    # Each photo's noun is read off its own classifier's cells.
    assert "cat" in after[0].tokens or "cats" in after[0].tokens
    assert "coffee cup" in after[1].tokens or "coffee cups" in after[1].tokens


@pytest.mark.parametrize(
    "edit, expected",
    [
        ({"copy_nouns": 3}, "decoder.copy_nouns 3 does not match the weights "
         "(decoder.class_to_noun [1000, 2]: 2)"),
        ({"copy_nouns": 0}, "decoder.copy_nouns 0 does not match the weights"),
        ({"copy_classes": 1001}, "decoder.copy_classes 1001 does not match the weights "
         "(decoder.class_to_noun [1000, 2]: 1000)"),
        ({"copy_nouns": -1}, "decoder.copy_nouns -1 is out of range (0..100000)"),
        ({"copy_classes": "1000"}, "decoder.copy_classes must be an integer, not '1000'"),
    ],
)  # fmt: skip
def test_copy_fields_that_do_not_fit_the_weights_are_refused(copy_model_dir, tmp_path, edit,
                                                             expected):  # fmt: skip
    model = edited_copy(copy_model_dir[1], tmp_path / "model", {"decoder": edit})
    assert expected in load_error(model)


def test_copied_nouns_must_be_words_of_the_vocabulary(copy_model_dir, tmp_path):
    ids = torch.tensor([5, 10**6])
    model = edited_copy(copy_model_dir[1], tmp_path / "model", None,
                        {"decoder.noun_plural_ids": ids})  # fmt: skip
    assert "decoder.noun_plural_ids holds ids that are not words of vocab.json" in load_error(model)
    end = torch.tensor([2, 5])  # <end>
    model = edited_copy(copy_model_dir[1], tmp_path / "end", None,
                        {"decoder.noun_singular_ids": end})  # fmt: skip
    assert "decoder.noun_singular_ids holds ids that are not words" in load_error(model)


def test_a_plain_model_asked_to_copy_is_refused(tiny_model_dir, tmp_path):
    model = edited_copy(tiny_model_dir, tmp_path / "model", {"decoder": {"copy_nouns": 5}})
    assert "which the decoder in config.json needs" in load_error(model)
