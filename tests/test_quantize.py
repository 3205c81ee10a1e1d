"""--precision int8: the encoder's graph quantized once, cached by calibration, float wherever
int8 cannot run, and captions close to float's."""

import os
import subprocess
import sys
import warnings

import numpy as np
import onnx
import pytest
import torch
from PIL import ImageOps

from captioner import Captioner, DecodeOptions, quantize
from captioner.backends import resolve_precision
from captioner.cli.batch.command import parse_args
from captioner.encoder import Encoder, EncoderConfig
from captioner.onnx_backend import (
    INT8_FILE,
    _export_encoder_bytes,
    class_head,
    graph_key,
    onnx_encoder,
)
from training import evaluate


@pytest.fixture(scope="module")
def default_model() -> Captioner:
    return Captioner.load("default", device="cpu", backend="torch")


@pytest.fixture(scope="module")
def calibration(default_model, photos) -> quantize.Calibration:
    """A small calibration: the test photos and their mirror images."""
    model = default_model
    images = [*photos.values(), *(ImageOps.mirror(image) for image in photos.values())]
    pixels = torch.stack([model.preprocess(image) for image in images]).numpy()
    graph = _export_encoder_bytes(model.encoder, class_head(model.decoder))
    batches = iter(np.split(pixels, 3))
    return quantize.calibrate(graph, batches, graph_key(model.encoder), "test photos")


def _int8(model: Captioner, cache, calibration) -> tuple:
    """The runner, and whether it was built now (else read from the cache)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runner = onnx_encoder(
            model.encoder, cache, class_head(model.decoder), "int8", calibration=calibration
        )
    built = any(issubclass(w.category, quantize.Int8BuildNote) for w in caught)
    return runner, built


def _int8_graph(cache) -> onnx.ModelProto:
    [path] = cache.glob(f"encoder-*/{INT8_FILE}")
    return onnx.load(str(path))


def test_the_int8_graph_is_built_once_cached_and_keeps_the_class_head_in_float(
    default_model, calibration, tmp_path
):
    runner, built = _int8(default_model, tmp_path, calibration)
    assert built and runner.precision == "int8"
    graph = _int8_graph(tmp_path)
    operations = [node.op_type for node in graph.graph.node]
    assert operations.count("QuantizeLinear") > 40  # the convolutions' inputs
    quantized = {
        i for node in graph.graph.node if node.op_type == "DequantizeLinear" for i in node.output
    }
    head = next(node for node in graph.graph.node if node.op_type == "MatMul")
    assert head.input[1] not in quantized  # the class head's weights stay float
    first = next(node for node in graph.graph.node if node.op_type == "Conv")
    assert not quantized & set(first.input)  # the first convolution: float pixels and weights
    second = [node for node in graph.graph.node if node.op_type == "Conv"][1]
    assert set(second.input[:2]) <= quantized  # the next one: int8 input and weights

    again, built = _int8(default_model, tmp_path, calibration)
    assert not built and again.precision == "int8"


def test_a_corrupt_int8_graph_or_another_calibration_is_rebuilt_never_used(
    default_model, calibration, tmp_path
):
    _int8(default_model, tmp_path, calibration)
    [path] = tmp_path.glob(f"encoder-*/{INT8_FILE}")
    path.write_bytes(b"not a graph")
    runner, built = _int8(default_model, tmp_path, calibration)
    assert built and runner.precision == "int8" and path.read_bytes() != b"not a graph"

    first = path.read_bytes()
    other = quantize.Calibration(calibration.encoder_key, "other photos", calibration.ranges)
    _, built = _int8(default_model, tmp_path, other)
    assert built  # same ranges, another calibration: its own key
    _, built = _int8(default_model, tmp_path, calibration)
    assert built and path.read_bytes() == first  # and back: rebuilt the same


def test_int8_features_and_captions_stay_close_to_float(
    default_model, calibration, photos, tmp_path
):
    model = default_model
    images = list(photos.values())
    pixels = torch.stack([model.preprocess(image) for image in images])
    runner, _ = _int8(model, tmp_path, calibration)
    float_runner = onnx_encoder(model.encoder, tmp_path, class_head(model.decoder))
    features, classes = runner.run(pixels)
    reference, reference_classes = float_runner.run(pixels)
    cosine = torch.nn.functional.cosine_similarity(features.flatten(1), reference.flatten(1))
    assert cosine.min() > 0.95, cosine  # measured 0.98 at worst with this calibration
    # The class head runs in float on the int8 features: the same best class nearly everywhere.
    same_class = (classes.argmax(-1) == reference_classes.argmax(-1)).float().mean()
    assert same_class > 0.8, same_class

    options = DecodeOptions(beam_size=3)
    float_texts = [r.text for r in model.decode(reference, options)]
    int8_texts = [r.text for r in model.decode(features, options)]
    same = sum(a == b for a, b in zip(float_texts, int8_texts, strict=True))
    assert same >= len(images) - 1, (float_texts, int8_texts)


def test_the_shipped_calibration_is_the_default_models_and_int8_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = Captioner.load("default", device="cpu", backend="onnx", precision="int8")
    assert model.precision == "int8"
    assert any(issubclass(w.category, quantize.Int8BuildNote) for w in caught)
    assert list(tmp_path.glob(f"captioner/onnx/encoder-*/{INT8_FILE}"))
    assert Captioner.load("default", device="cpu", backend="onnx").precision == "float"


def test_no_calibration_photos_is_a_clear_error(default_model):
    graph = _export_encoder_bytes(default_model.encoder)
    with pytest.raises(quantize.CalibrationError, match="no calibration photos"):
        quantize.calibrate(graph, iter([]), "key", "nothing")


def test_a_model_with_another_encoder_says_so_and_runs_in_float(tmp_path):
    resnet = Encoder(EncoderConfig(name="resnet18"), pretrained=False)  # a tutorial import's kind
    with pytest.warns(
        quantize.PrecisionWarning, match="another encoder than this model's resnet18"
    ):
        runner = onnx_encoder(resnet, tmp_path, precision="int8")
    assert runner.precision == "float"
    assert not list(tmp_path.glob(f"*/{INT8_FILE}"))


def test_a_missing_or_broken_calibration_file_is_a_calibration_error(tmp_path):
    (tmp_path / "broken.json").write_text("{")
    for path in (tmp_path / "missing.json", tmp_path / "broken.json"):
        with pytest.raises(quantize.CalibrationError, match="not a calibration file"):
            quantize.Calibration.load(path)


@pytest.mark.parametrize(
    "device, backend, message",
    [
        ("cuda", "torch", "on cuda the model runs in float"),
        ("cpu", "torch", "with --backend torch the model runs in float"),
    ],
)
def test_int8_where_it_cannot_run_falls_back_to_float_with_a_message(device, backend, message):
    with pytest.warns(quantize.PrecisionWarning, match=message):
        assert resolve_precision("int8", backend, torch.device(device)) == "float"


def test_auto_is_the_measured_choice_and_float_the_default(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_precision("auto", "onnx", cpu) == ("int8" if quantize.AUTO_INT8 else "float")
    monkeypatch.setattr("captioner.backends.AUTO_INT8", True)
    assert resolve_precision("auto", "onnx", cpu) == "int8"
    assert resolve_precision("auto", "onnx", torch.device("cuda")) == "float"
    with pytest.raises(ValueError, match="precision must be one of float, int8, auto"):
        resolve_precision("int4", "onnx", cpu)


def test_the_batch_command_says_it_builds_the_int8_graph_once(photos, tmp_path):
    photo, out = tmp_path / "cat.png", tmp_path / "out.jsonl"
    photos["chelsea"].save(photo)
    command = [sys.executable, "-m", "captioner.batch", str(photo), "-o", str(out)]
    command += ["--precision", "int8", "--backend", "onnx", "--workers", "0"]
    environment = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    for run in range(2):
        done = subprocess.run(
            command + ["--overwrite"], capture_output=True, text=True, env=environment
        )
        assert done.returncode == 0, done.stderr
        said = "captioner: building the encoder's int8 graph once" in done.stderr
        assert said == (run == 0), done.stderr
        assert len(out.read_text().splitlines()) == 1


def test_the_flag_parses_in_the_batch_command_and_evaluate(tmp_path, capsys):
    photo = tmp_path / "a.jpg"
    assert parse_args([str(photo), "--precision", "int8"]).precision == "int8"
    assert parse_args([str(photo)]).precision == "float"
    with pytest.raises(SystemExit):
        parse_args([str(photo), "--precision", "int4"])
    assert "--precision" in capsys.readouterr().err
    argv = ["--model", "m", "--annotations", "a", "--images", "i", "--out", "o"]
    assert evaluate._build_parser().parse_args([*argv, "--precision", "auto"]).precision == "auto"
    assert evaluate._build_parser().parse_args(argv).precision == "float"


def test_the_apps_precision_setting_persists_and_the_settings_panel_offers_it(qtbot, tmp_path):
    from gui.settings import Settings
    from gui.widgets.settings_panel import SettingsPanel

    path = str(tmp_path / "settings.ini")
    settings = Settings.from_file(path)
    assert settings.precision == "float"
    settings.precision = "int8"
    settings.store.sync()
    assert Settings.from_file(path).precision == "int8"
    settings.store.setValue("model/precision", "int4")  # from a later version, or edited
    assert settings.precision == "float"

    panel = SettingsPanel(DecodeOptions(), "auto", "auto", "default", precision="int8")
    qtbot.addWidget(panel)
    combo = panel.precision
    assert [combo.itemText(i) for i in range(combo.count())] == ["float", "int8", "auto"]
    assert combo.currentText() == "int8"
    with qtbot.waitSignal(panel.precision_changed) as signal:
        combo.setCurrentText("float")
    assert signal.args == ["float"]
