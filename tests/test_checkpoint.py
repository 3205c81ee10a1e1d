"""Model directories: round trip, refusal of pickles, clear errors, atomic writes."""

import json
import os
import stat

import pytest
import torch

import captioner.api
import captioner.checkpoint
from captioner import Captioner, CheckpointError


def test_round_trip_gives_identical_captions(tiny_captioner, tiny_model_dir, photos):
    assert sorted(p.name for p in tiny_model_dir.iterdir()) == [
        "config.json", "model.safetensors", "vocab.json"
    ]  # fmt: skip
    loaded = Captioner.load(tiny_model_dir, device="cpu")
    images = list(photos.values())
    before = tiny_captioner.caption(images, beam_size=3)
    after = loaded.caption(images, beam_size=3)
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

    monkeypatch.setattr(captioner.checkpoint, "save", crash)
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
    monkeypatch.setattr(captioner.api, "DEFAULT_MODEL_DIR", tmp_path)
    with pytest.raises(CheckpointError, match="Pass a model directory"):
        Captioner.load()
