"""--backend auto|torch|onnx: chosen the same way everywhere, and the same captions either way."""

import json

import numpy as np
import onnxruntime
import pytest
import torch
from conftest import tiny_copy_captioner

from captioner import Captioner, DecodeOptions
from captioner.backends import resolve_backend
from captioner.cli.batch.command import main as batch_main
from captioner.cli.export import main as export_main
from training import evaluate


@pytest.mark.parametrize(
    "name, device, expected",
    [
        ("auto", "cpu", "onnx"),
        ("auto", "cuda", "torch"),
        ("auto", "mps", "torch"),
        ("torch", "cpu", "torch"),
        ("onnx", "cpu", "onnx"),
    ],
)
def test_auto_is_onnx_runtime_on_a_cpu_and_pytorch_elsewhere(name, device, expected):
    assert resolve_backend(name, torch.device(device)) == expected


def test_onnx_on_a_gpu_and_unknown_backends_are_refused():
    with pytest.raises(ValueError, match="the onnx backend runs on the CPU"):
        resolve_backend("onnx", torch.device("cuda"))
    with pytest.raises(ValueError, match="backend must be one of auto, torch, onnx"):
        resolve_backend("tensorrt", torch.device("cpu"))


@pytest.fixture(scope="module")
def copy_model_dir(tiny_captioner, tmp_path_factory):
    model = tiny_copy_captioner(tiny_captioner, ["cat", "coffee cup"])
    return model.save(tmp_path_factory.mktemp("models") / "copy")


@pytest.mark.parametrize("which", ["plain", "copy"])
def test_both_backends_give_the_same_captions_scores_and_maps(
    which, tiny_model_dir, copy_model_dir, photos
):
    path = tiny_model_dir if which == "plain" else copy_model_dir
    onnx = Captioner.load(path, device="cpu")  # auto
    torch_model = Captioner.load(path, device="cpu", backend="torch")
    assert (onnx.backend, torch_model.backend) == ("onnx", "torch")
    images = list(photos.values())
    np.testing.assert_allclose(
        onnx.encode(images[:2]).numpy(), torch_model.encode(images[:2]).numpy(), atol=1e-4
    )
    options = DecodeOptions(beam_size=3, consensus_samples=5)
    for ours, theirs in zip(
        onnx.caption(images, options), torch_model.caption(images, options), strict=True
    ):
        assert [b.text for b in ours.beams] == [b.text for b in theirs.beams]
        np.testing.assert_allclose(
            [b.score for b in ours.beams], [b.score for b in theirs.beams], atol=1e-4
        )
        np.testing.assert_allclose(ours.alphas, theirs.alphas, atol=1e-4)
        np.testing.assert_allclose(ours.context_gate, theirs.context_gate, atol=1e-4)
        for name, values in theirs.gates.items():
            np.testing.assert_allclose(ours.gates[name], values, atol=1e-4)
        if which == "copy":
            np.testing.assert_allclose(ours.copy_gate, theirs.copy_gate, atol=1e-4)


def test_the_batch_command_captions_alike_on_either_backend(tiny_model_dir, photos, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, image in photos.items():
        image.save(folder / f"{name}.png")
    rows = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / f"{backend}.jsonl"
        argv = [str(folder), "--model", str(tiny_model_dir), "--backend", backend, "-o", str(out)]
        assert batch_main([*argv, "--workers", "0", "--device", "cpu"]) == 0
        rows[backend] = [json.loads(line)["caption"] for line in out.read_text().splitlines()]
    assert rows["onnx"] == rows["torch"] and len(rows["onnx"]) == len(photos)


def test_evaluate_takes_the_backend_too():
    argv = ["--model", "m", "--annotations", "a", "--images", "i", "--out", "o"]
    assert evaluate._build_parser().parse_args([*argv, "--backend", "onnx"]).backend == "onnx"
    assert evaluate._build_parser().parse_args(argv).backend == "auto"


def test_captioner_export_writes_graphs_that_run_without_captioner(
    tiny_model_dir, photos, tmp_path, capsys
):
    out = tmp_path / "graphs"
    assert export_main([str(tiny_model_dir), "--onnx", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "config.json", "decoder_step.onnx", "decoding.json", "encoder.onnx",
        "manifest.json", "prepare.onnx", "reference_decoder.py", "vocab.json",
    ]  # fmt: skip
    assert "`words`" in (out / "README.md").read_text()

    model = Captioner.load(tiny_model_dir, device="cpu", backend="torch")
    pixels = torch.stack([model.preprocess(photos["chelsea"])])
    session = onnxruntime.InferenceSession(str(out / "encoder.onnx"))
    (features,) = session.run(None, {"pixels": pixels.numpy()})
    np.testing.assert_allclose(features, model.encode(pixels).numpy(), atol=1e-4)

    with pytest.raises(SystemExit):  # never replaced without --overwrite
        export_main([str(tiny_model_dir), "--onnx", str(out)])
    assert "pass --overwrite" in capsys.readouterr().err
    assert export_main([str(tiny_model_dir), "--onnx", str(out), "--overwrite"]) == 0
