"""Issue #27's polish of the batch command, training, export, import and the Python API."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import json
import pathlib
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import PHOTO_CAPTIONS

from captioner import Captioner, CaptionResult, ImageError
from captioner.cli.batch import command as batch_command
from captioner.cli.batch.command import main as batch_main
from captioner.encoder import Preprocessing
from captioner.files.onnx_export import export_onnx_folder
from captioner.options import DecodeOptions
from captioner.photos.images import load_image
from captioner.registry import MODELS_DIR, CheckpointError
from training import evaluate
from training.scenes import generate_split
from training.train import main as train_main


def test_caption_takes_decode_options_as_keywords(tiny_captioner, photos):
    result = tiny_captioner.caption(photos["rocket"], beam_size=3, max_length=10)
    same = tiny_captioner.caption(photos["rocket"], DecodeOptions(beam_size=3, max_length=10))
    assert result.text == same.text == PHOTO_CAPTIONS["rocket"]
    assert len(result.beams) == len(same.beams) == 3
    # Keywords are checked as DecodeOptions checks them.
    with pytest.raises(ValueError, match="beam_size"):
        tiny_captioner.caption(photos["rocket"], beam_size=0)


def test_caption_refuses_options_and_keywords_together_and_unknown_keywords(tiny_captioner, photos):
    with pytest.raises(TypeError, match="not both.*beam_size"):
        tiny_captioner.caption(photos["rocket"], DecodeOptions(), beam_size=3)
    with pytest.raises(TypeError, match="num_beams"):
        tiny_captioner.caption(photos["rocket"], num_beams=3)


def test_caption_keywords_are_exactly_decode_options_fields():
    keywords = {
        name
        for name, parameter in inspect.signature(Captioner.caption).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    assert keywords - {"batch_size"} == {field.name for field in dataclasses.fields(DecodeOptions)}


def test_caption_result_repr_is_short(tiny_captioner, photos):
    result = tiny_captioner.caption(photos["rocket"], beam_size=3)
    text = repr(result)
    assert len(text.splitlines()) == 1 and len(text) < 400
    assert repr(PHOTO_CAPTIONS["rocket"]) in text
    assert f"score={result.score:.4f}" in text
    assert f"alphas={result.alphas.shape}" in text
    assert "beams=3" in text
    failed = CaptionResult.failed("notes.jpg", "not an image")
    assert repr(failed) == "CaptionResult(source='notes.jpg', error='not an image')"


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_a_tiny_file_is_not_an_image_whatever_its_size(tmp_path, size):
    path = tmp_path / "tiny.jpg"
    path.write_bytes(b"\x07" * size)
    with pytest.raises(ImageError) as caught:
        load_image(path)
    assert caught.value.reason == "not an image, or an image format that cannot be read"


def run_batch(model_dir, *arguments) -> tuple[int, str]:
    """The batch command in this process: (exit status, stderr)."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        status = batch_main([*map(str, arguments), "--model", str(model_dir), "--workers", "0"])
    return status, stderr.getvalue()


def test_photos_sharing_a_sidecar_name_are_found_before_any_is_written(
    tmp_path, photos, tiny_model_dir
):
    cats = [tmp_path / f"cat.{kind}" for kind in ("bmp", "gif", "png", "tiff", "webp")]
    for path in cats:
        photos["chelsea"].save(path)
    photos["coffee"].save(tmp_path / "cup.jpg")
    status, stderr = run_batch(tiny_model_dir, tmp_path, "--sidecar", "-o", tmp_path / "o.jsonl")
    assert status == 1
    assert not (tmp_path / "cat.txt").exists()  # whose caption would it hold?
    assert (tmp_path / "cup.txt").read_text() == PHOTO_CAPTIONS["coffee"] + "\n"
    assert "already exists" not in stderr
    assert (
        f"{tmp_path / 'cat.png'}: shares its caption file cat.txt with cat.bmp, cat.gif, "
        "cat.tiff, cat.webp; wrote none of them (--sidecar-name full writes cat.png.txt)"
    ) in stderr
    assert "6 photos: 6 captioned, 0 failed; 5 extra outputs not written" in stderr

    status, stderr = run_batch(
        tiny_model_dir, tmp_path, "--sidecar", "--sidecar-name", "full", "-o", tmp_path / "p.jsonl"
    )
    assert status == 0, stderr
    for path in [*cats, tmp_path / "cup.jpg"]:
        assert pathlib.Path(f"{path}.txt").read_text().endswith("\n")
    assert (tmp_path / "cat.png.txt").read_text() == PHOTO_CAPTIONS["chelsea"] + "\n"


def test_sidecar_name_needs_sidecar(tmp_path, tiny_model_dir):
    with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stderr(io.StringIO()) as err:
        batch_main([str(tmp_path), "--sidecar-name", "full", "--model", str(tiny_model_dir)])
    assert exit_info.value.code == 2
    assert "--sidecar-name is for --sidecar" in err.getvalue()


def test_the_summary_time_includes_loading_the_model(tmp_path, photos, tiny_model_dir, monkeypatch):
    photos["coffee"].save(tmp_path / "cup.jpg")
    load = Captioner.load

    def slow_load(*args, **kwargs) -> Captioner:
        time.sleep(1.0)
        return load(*args, **kwargs)

    monkeypatch.setattr(batch_command.Captioner, "load", slow_load)
    status, stderr = run_batch(tiny_model_dir, tmp_path / "cup.jpg", "-o", tmp_path / "o.jsonl")
    assert status == 0
    found = re.search(
        r"in ([\d.]+) s \(loading the model ([\d.]+) s, captioning ([\d.]+) s, [\d.]+ photos/s\)$",
        stderr.splitlines()[-1],
    )
    assert found, stderr
    total, loading, captioning = map(float, found.groups())
    assert loading >= 1.0 and total >= loading + captioning - 0.11


def test_training_without_validation_reports_its_loss_and_draws_no_bars_in_a_log(tmp_path, capsys):
    generate_split(tmp_path / "scenes", "train", 24, seed=11, size=96, workers=1)
    run = tmp_path / "run"
    status = train_main(
        [
            "--data", str(tmp_path / "scenes" / "captions_train.json"),
            "--images", str(tmp_path / "scenes" / "train"), "--out", str(run),
            "--cache-dir", str(tmp_path / "cache"), "--min-word-count", "1", "--epochs", "2",
            "--batch-size", "12", "--workers", "0", "--device", "cpu",
            "--embed-dim", "16", "--decoder-dim", "32", "--attention-dim", "16",
        ]
    )  # fmt: skip
    assert status == 0
    out, err = capsys.readouterr()  # captured: stderr is not a terminal
    assert "\r" not in err and "epoch 1/2" not in err and "encoding photos" not in err
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch=")]
    assert len(epoch_lines) == 2  # the progress, a line per epoch
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    best = min(log, key=lambda row: row["train_loss"])
    assert (
        f"best training loss {best['train_loss']:.4f} (epoch {best['epoch']}; no validation data)"
        in out
    )
    assert "CIDEr" not in out
    assert "CIDEr" not in json.loads((run / "best" / "config.json").read_text())["training"]


def test_the_evaluate_table_shows_entirely_true(capsys):
    report = {"num_images": 4, "skipped_images": 0, "CIDEr": 1.25, "entirely_true": 0.75}
    evaluate._print_summary(report, [])
    assert "entirely_true         0.7500" in capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("name", ["default", "shapes"])
def test_shipped_models_keep_the_fast_preprocessing_and_their_files(name):
    config = json.loads((MODELS_DIR / name / "config.json").read_text())
    assert "preprocessing" not in config  # absent: the fast path
    captioner = Captioner.load(name, device="cpu", backend="torch")
    assert captioner.encoder.preprocessing == Preprocessing()
    assert captioner.encoder.decode_size == captioner.encoder.config.image_size
    # What `save` writes (and so the model's identity) has no preprocessing key either.
    assert "preprocessing" not in captioner.model_files()[0]


def test_a_preprocessing_out_of_its_choices_is_a_checkpoint_error(tiny_model_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    config = json.loads((model / "config.json").read_text())
    config["preprocessing"] = {"resize_filter": "lanczos"}
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="preprocessing.resize_filter 'lanczos'"):
        Captioner.load(model)
    config["preprocessing"] = {"resize_filter": "bilinear", "draft_decoding": False}
    (model / "config.json").write_text(json.dumps(config))
    loaded = Captioner.load(model, device="cpu", backend="torch")
    assert loaded.encoder.preprocessing == Preprocessing("bilinear", draft_decoding=False)
    assert loaded.encoder.decode_size is None
    assert loaded.model_files()[0]["preprocessing"] == config["preprocessing"]


# Run before the reference decoder: importing torch or captioner fails, as where neither is.
WITHOUT_TORCH = """
import importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "captioner", "training"):
            raise ImportError(f"{name} is not importable here")
sys.meta_path.insert(0, Refuse())
sys.path = [p for p in sys.path if p not in ("", ".")]
"""


@pytest.mark.parametrize("model", ["tiny", "default"])
def test_the_exported_reference_decoder_captions_as_captioner(
    model, tiny_captioner, tiny_model_dir, photos, tmp_path
):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    if model == "tiny":
        captioner, model_dir = tiny_captioner, tiny_model_dir
    else:
        captioner, model_dir = Captioner.load(model, backend="torch"), MODELS_DIR / model
    out = tmp_path / "onnx"
    export_onnx_folder(captioner, model_dir, out)
    # The graphs are the model's own; hedging and the person detector are captioner's Python.
    captioner.set_hedging(None)
    captioner.set_people(False)
    images = [photos[name] for name in ("chelsea", "rocket", "coffee")]
    pixels = torch.stack([captioner.preprocess(image) for image in images])
    np.save(tmp_path / "pixels.npy", pixels.numpy())
    for beam_size in (1, 3):
        expected = [r.text for r in captioner.caption(images, beam_size=beam_size)]
        script = WITHOUT_TORCH + (
            f"sys.argv = ['reference_decoder.py', '--pixels', {str(tmp_path / 'pixels.npy')!r}, "
            f"'--beam-size', '{beam_size}']\n"
            f"import runpy; runpy.run_path({str(out / 'reference_decoder.py')!r}, "
            "run_name='__main__')"
        )
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == expected
