"""captioner-train end to end on generated scenes: it learns, resumes exactly, and DDP matches."""

import json
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import training.train
from captioner import Captioner
from training.scenes import generate_split
from training.train import main as train_main

SMALL_MODEL = ["--embed-dim", "32", "--decoder-dim", "64", "--attention-dim", "32"]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    generate_split(root, "train", 48, seed=11, size=128, workers=1)
    generate_split(root, "val", 12, seed=11, size=128, workers=1)
    return root


def train_args(scenes, out, *extra):
    return [
        "--data", str(scenes / "captions_train.json"), "--images", str(scenes / "train"),
        "--val-data", str(scenes / "captions_val.json"), "--val-images", str(scenes / "val"),
        "--out", str(out), "--cache-dir", str(scenes / "cache"), "--min-word-count", "1",
        "--batch-size", "24", "--no-progress", "--workers", "0", "--device", "cpu", *SMALL_MODEL,
        *extra,
    ]  # fmt: skip


def read_log(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_training_lowers_val_loss_and_raises_bleu(scenes, tmp_path):
    run = tmp_path / "run"
    args = train_args(scenes, run, "--epochs", "8", "--lr", "3e-3", "--dropout", "0.1",
                      "--patience", "8", "--metric", "Bleu_4")  # fmt: skip
    assert train_main(args) == 0
    log = read_log(run)
    assert [row["epoch"] for row in log] == list(range(1, 9))
    assert {"train_loss", "val_loss", "Bleu_1", "Bleu_4", "CIDEr", "ROUGE_L"} <= set(log[0])
    assert log[-1]["val_loss"] < 0.7 * log[0]["val_loss"]
    assert max(row["Bleu_4"] for row in log) > 0.25  # an untrained decoder scores ~0
    assert (run / "curves.png").stat().st_size > 1000
    model = Captioner.load(run / "best", device="cpu")
    assert model.name == "run"
    shapes = {"circle", "square", "triangle", "star", "diamond", "cross"}
    shapes |= {shape + ("es" if shape == "cross" else "s") for shape in shapes}
    captions = model.caption(sorted((scenes / "val").glob("*.png")), beam_size=3)
    assert sum(bool(shapes & set(r.tokens)) for r in captions) >= 0.75 * len(captions)


def test_resume_after_an_epoch_gives_the_same_losses(scenes, tmp_path):
    """Dropout is on, so this also checks the RNG state travels with the checkpoint."""
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert train_main(train_args(scenes, straight, "--epochs", "2", "--val-max-images", "4")) == 0
    assert train_main(train_args(scenes, stopped, "--epochs", "1", "--val-max-images", "4")) == 0
    assert (
        train_main(
            train_args(scenes, stopped, "--epochs", "2", "--val-max-images", "4", "--resume")
        )
        == 0
    )
    assert read_log(stopped) == [
        {**row, "train_tokens_per_s": r["train_tokens_per_s"]}
        for row, r in zip(read_log(straight), read_log(stopped), strict=True)
    ]
    a, b = (
        load_file(straight / "last" / "model.safetensors"),
        load_file(stopped / "last" / "model.safetensors"),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ctrl_c_mid_epoch_finishes_the_batch_saves_and_resumes_exactly(
    scenes, tmp_path, monkeypatch
):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    common = ("--epochs", "1", "--val-max-images", "4")
    assert train_main(train_args(scenes, straight, *common)) == 0

    real_loss, calls = training.train.caption_loss, []

    def interrupt_on_fourth_batch(*args):
        calls.append(1)
        if len(calls) == 4:
            signal.raise_signal(signal.SIGINT)  # as if the user pressed Ctrl-C mid-batch
        return real_loss(*args)

    monkeypatch.setattr(training.train, "caption_loss", interrupt_on_fourth_batch)
    assert train_main(train_args(scenes, interrupted, *common)) == 130
    state = json.loads((interrupted / "last" / "training_state.json").read_text())
    assert state["progress"]["batch"] == 4 and state["progress"]["epoch"] == 0
    monkeypatch.setattr(training.train, "caption_loss", real_loss)
    assert train_main(train_args(scenes, interrupted, *common, "--resume")) == 0
    assert read_log(interrupted)[0]["train_loss"] == read_log(straight)[0]["train_loss"]
    assert read_log(interrupted)[0]["val_loss"] == read_log(straight)[0]["val_loss"]


def test_feature_cache_is_reused(scenes, tmp_path, monkeypatch):
    assert (
        train_main(train_args(scenes, tmp_path / "first", "--epochs", "1", "--val-max-images", "2"))
        == 0
    )

    def no_encoding(*args, **kwargs):
        raise AssertionError("the second run re-encoded photos")

    monkeypatch.setattr(training.train.Encoder, "forward", no_encoding)
    assert (
        train_main(
            train_args(scenes, tmp_path / "second", "--epochs", "1", "--val-max-images", "2")
        )
        == 0
    )


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_other_decoder_cells_train_and_load(scenes, tmp_path, cell):
    run = tmp_path / cell
    assert (
        train_main(
            train_args(scenes, run, "--epochs", "1", "--cell", cell, "--val-max-images", "2")
        )
        == 0
    )
    model = Captioner.load(run / "best", device="cpu")
    assert model.decoder.config.cell == cell
    assert model.caption(scenes / "val" / "000001.png", beam_size=2).gates.keys() == (
        {"reset", "update"} if cell == "gru" else set()
    )


def test_bad_data_file_is_a_usage_error(tmp_path, capsys):
    bad = tmp_path / "captions.json"
    bad.write_text('{"images": [}')
    assert (
        train_main(["--data", str(bad), "--images", str(tmp_path), "--out", str(tmp_path / "r")])
        == 2
    )
    assert "captions.json" in capsys.readouterr().err


@pytest.mark.slow
def test_two_process_ddp_equals_one_process(scenes, tmp_path):
    """torchrun with 2 CPU processes (gloo) on the same global batch gives the same model."""
    common = ("--epochs", "1", "--dropout", "0", "--val-max-images", "2")
    single, double = tmp_path / "single", tmp_path / "double"
    assert train_main(train_args(scenes, single, *common)) == 0
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    command = [*launcher, "--module", "training.train", *train_args(scenes, double, *common)]
    subprocess.run(command, check=True, timeout=600, env={"OMP_NUM_THREADS": "1", **_env()})
    a, b = (
        load_file(single / "last" / "model.safetensors"),
        load_file(double / "last" / "model.safetensors"),
    )
    for key in a:
        # Gradients are all-reduced in another order; Adam scales that rounding up where a
        # gradient is near zero. A real difference (a shard lost or seen twice) moves weights by
        # about the learning rate, 1e-3.
        torch.testing.assert_close(a[key], b[key], atol=1e-4, rtol=1e-4)
    assert read_log(double)[0]["train_loss"] == pytest.approx(
        read_log(single)[0]["train_loss"], rel=1e-5
    )


def _env():
    import os

    return dict(os.environ)
