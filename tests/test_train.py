"""captioner-train end to end on generated scenes: it learns, resumes exactly, and DDP matches."""

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

import training.features
import training.objectives
import training.train
from captioner import Captioner
from captioner.options import DecodeOptions
from captioner.registry import shipped_model
from captioner.vocab import Vocabulary
from training.features import human_size
from training.run_dir import check_run_dir
from training.scenes import generate_split
from training.train import main as train_main
from training.train_run import resolve_run

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
    captions = model.caption(sorted((scenes / "val").glob("*.png")), DecodeOptions(beam_size=3))
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


def test_a_resumed_copy_model_validates_the_captions_the_straight_run_did(scenes, tmp_path):
    """Captioner.load hedges a copy model's nouns (noun_tree.py); the run it resumes hedged
    nothing, so neither may its validation, or the two runs pick their best epochs by
    different captions."""
    common = ("--copy-nouns", "--val-max-images", "12", "--lr", "3e-3")
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert train_main(train_args(scenes, straight, "--epochs", "2", *common)) == 0
    assert train_main(train_args(scenes, stopped, "--epochs", "1", *common)) == 0
    resumed = train_args(scenes, stopped, "--epochs", "2", *common, "--resume")
    assert train_main(resumed) == 0
    assert read_log(stopped) == [
        {**row, "train_tokens_per_s": r["train_tokens_per_s"]}
        for row, r in zip(read_log(straight), read_log(stopped), strict=True)
    ]
    parser = training.train.build_parser()
    run = resolve_run(parser, *training.train.parse_args(parser, resumed))
    _, start = training.train.build_encoder(run, torch.device("cpu"))
    assert Captioner.load(stopped / "last", backend="torch").hedging is not None  # as a user
    assert start.decoder.hedge is None


def test_ctrl_c_mid_epoch_finishes_the_batch_saves_and_resumes_exactly(
    scenes, tmp_path, monkeypatch
):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    common = ("--epochs", "1", "--val-max-images", "4")
    assert train_main(train_args(scenes, straight, *common)) == 0

    real_loss, calls = training.objectives.caption_loss, []

    def interrupt_on_fourth_batch(*args):
        calls.append(1)
        if len(calls) == 4:
            signal.raise_signal(signal.SIGINT)  # as if the user pressed Ctrl-C mid-batch
        return real_loss(*args)

    monkeypatch.setattr(training.objectives, "caption_loss", interrupt_on_fourth_batch)
    assert train_main(train_args(scenes, interrupted, *common)) == 130
    state = json.loads((interrupted / "last" / "training_state.json").read_text())
    assert state["progress"]["batch"] == 4 and state["progress"]["epoch"] == 0
    assert state["options"]["batch_size"] == 24 and state["options"]["min_word_count"] == 1
    monkeypatch.setattr(training.objectives, "caption_loss", real_loss)
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
    assert model.caption(
        scenes / "val" / "000001.png", DecodeOptions(beam_size=2)
    ).gates.keys() == ({"reset", "update"} if cell == "gru" else set())


def test_config_names_the_data_by_file_name_and_hash_not_machine_path(scenes, tmp_path):
    run = tmp_path / "run"
    assert train_main(train_args(scenes, run, "--epochs", "1", "--val-max-images", "2")) == 0
    for model in ("best", "last"):
        config = json.loads((run / model / "config.json").read_text())
        assert not [s for s in strings_in(config) if "/" in s or "\\" in s], model
        assert config["training"]["data"] == {
            "train": {"captions": "captions_train.json", "images": "train",
                      "sha256": sha256_of(scenes / "captions_train.json")},
            "val": {"captions": "captions_val.json", "images": "val",
                    "sha256": sha256_of(scenes / "captions_val.json")},
        }  # fmt: skip


@pytest.mark.parametrize("name", ["default", "shapes"])
def test_shipped_configs_hold_no_machine_path(name):
    config = json.loads((shipped_model(name) / "config.json").read_text())
    assert not [s for s in strings_in(config) if "/" in s or "\\" in s]


def strings_in(value):
    """Every string in a JSON value, however deeply nested."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_in(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    return [value] if isinstance(value, str) else []


def sha256_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
    subprocess.run(command, check=True, timeout=600, env=subprocess_environment())
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


def subprocess_environment() -> dict[str, str]:
    """This process's environment for a launched one, one thread a process (2 cores here)."""
    return {"OMP_NUM_THREADS": "1", **os.environ}


# --- an existing run is never replaced by accident ---------------------------------------------


@pytest.mark.parametrize("left_over", ["best", "last", "log.jsonl", "curves.png"])
def test_an_existing_run_is_refused_without_resume_or_overwrite(tmp_path, capsys, left_over):
    run = tmp_path / "run"
    run.mkdir()
    if "." in left_over:
        (run / left_over).write_text("from the first run\n")
    else:
        (run / left_over).mkdir()
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--data", "x.json", "--images", "x", "--out", str(run)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"{run} already holds a training run" in err
    assert "--resume" in err and "--overwrite" in err
    assert sorted(p.name for p in run.iterdir()) == [left_over]  # nothing touched


def test_resume_and_overwrite_together_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--data", "x.json", "--images", "x", "--out", str(tmp_path), "--resume",
                    "--overwrite"])  # fmt: skip
    assert exit_info.value.code == 2
    assert "--overwrite" in capsys.readouterr().err


def test_overwrite_starts_the_run_again(scenes, tmp_path):
    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    (run / "best" / "old.txt").write_text("the old run's model")
    (run / "log.jsonl").write_text("".join(json.dumps({"epoch": e}) + "\n" for e in (1, 2, 3)))
    args = train_args(scenes, run, "--epochs", "1", "--val-max-images", "2", "--overwrite")
    assert train_main(args) == 0
    assert [row["epoch"] for row in read_log(run)] == [1]
    assert not (run / "best" / "old.txt").exists()
    assert Captioner.load(run / "best", device="cpu").decoder.config.decoder_dim == 64


RUN_OPTIONS = {"min_word_count": 1, "batch_size": 24, "seed": 3, "lr": 0.001,
               "encoder_lr": 0.0001, "metric": "Bleu_4", "lr_patience": 2}  # fmt: skip


def fake_checkpoint(run, **decoder):
    """A last/ as a run writes it, as far as the option check reads it (no training needed)."""
    from dataclasses import asdict

    from captioner.decoder import DecoderConfig
    from captioner.encoder import EncoderConfig

    config = DecoderConfig(20, 320, embed_dim=32, decoder_dim=64, attention_dim=32, **decoder)
    (run / "last").mkdir(parents=True)
    (run / "last" / "config.json").write_text(
        json.dumps({"name": "run", "encoder": asdict(EncoderConfig()), "decoder": asdict(config)})
    )
    (run / "last" / "training_state.json").write_text(json.dumps({"options": RUN_OPTIONS}))


@pytest.mark.parametrize(
    ("given", "named"),
    [
        (["--decoder-dim", "128"], "--decoder-dim 128 differs from the run's 64"),
        (["--decoder-dim=128"], "--decoder-dim 128 differs from the run's 64"),
        (["--cell", "gru"], "--cell gru differs from the run's lstm"),
        (["--coordinates"], "--coordinates differs from the run's"),
        (["--dropout", "0.1"], "--dropout 0.1 differs from the run's 0.5"),
        (["--image-size", "160"], "--image-size 160 differs from the run's 224"),
        (["--batch-size", "64"], "--batch-size 64 differs from the run's 24"),
        (["--lr", "0.002"], "--lr 0.002 differs from the run's 0.001"),
        (["--metric", "CIDEr"], "--metric CIDEr differs from the run's Bleu_4"),
        (["--min-word-count", "5"], "--min-word-count 5 differs from the run's 1"),
        (["--fine-tune-blocks", "2"], "--fine-tune-blocks 2 differs from the run's 0"),
        (["--grid-size", "4"], "--grid-size 4 differs from the run's default"),
    ],
)
def test_resume_with_changed_model_options_is_refused(tmp_path, capsys, given, named):
    run = tmp_path / "run"
    fake_checkpoint(run)
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--data", "x.json", "--images", "x", "--out", str(run), "--resume",
                    *SMALL_MODEL, *given])  # fmt: skip
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert named in err
    assert "drop it to resume, or start a new --out" in err


def test_resume_takes_the_options_it_keeps_from_the_run(tmp_path):
    """Not repeating --batch-size or --seed must not change the batches of the resumed run."""
    run = tmp_path / "run"
    fake_checkpoint(run)
    parser = training.train.build_parser()
    args, given = training.train.parse_args(
        parser, ["--data", "x.json", "--images", "x", "--out", str(run), "--resume", "--seed", "3"]
    )
    assert check_run_dir(parser, args, given)
    resumed = resolve_run(parser, args, given)
    assert {name: getattr(resumed, name) for name in RUN_OPTIONS} == RUN_OPTIONS


def test_resume_without_a_checkpoint_in_an_existing_run_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text(json.dumps({"epoch": 1}) + "\n")
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--data", "x.json", "--images", "x", "--out", str(run), "--resume"])
    assert exit_info.value.code == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (run / "log.jsonl").read_text() == json.dumps({"epoch": 1}) + "\n"


# --- messages and figures -------------------------------------------------------------------------


def test_data_errors_name_the_command_options(scenes, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    args = ["--images", str(images), "--out", str(tmp_path / "run"), "--no-progress"]
    assert train_main(["--data", str(scenes / "captions_train.json"), *args]) == 2
    err = capsys.readouterr().err
    assert "--skip-missing" in err
    unknown = tmp_path / "captions.txt"
    unknown.write_text("neither COCO nor Flickr\n")
    assert train_main(["--data", str(unknown), *args]) == 2
    err = capsys.readouterr().err
    assert "--format" in err


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        train_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option, default in [("--decoder-dim DECODER_DIM", "512"), ("--lr LR", "0.0004"),
                            ("--cell {lstm,gru,rnn}", "lstm"), ("--epochs EPOCHS", "20"),
                            ("--device DEVICE", "auto")]:  # fmt: skip
        after = text.rsplit(option, 1)[1].split(" --", 1)[0]  # the help, not the usage
        assert f"default: {default}" in after, option
    assert "default: None" not in text and "default: False" not in text


def test_tokens_per_second_after_resume_counts_only_the_resumed_batches(
    scenes, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    common = ("--epochs", "1", "--val-max-images", "2")
    real_loss, calls = training.objectives.caption_loss, []

    def interrupt_on_third_batch(*args):
        calls.append(1)
        if len(calls) == 3:
            signal.raise_signal(signal.SIGINT)
        return real_loss(*args)

    monkeypatch.setattr(training.objectives, "caption_loss", interrupt_on_third_batch)
    assert train_main(train_args(scenes, run, *common)) == 130

    # A clock that moves one second per batch: tokens/s is then tokens per batch run here.
    clock, tokens = [0.0], []

    def count_and_tick(logits, alphas, captions, attention_lambda):
        if torch.is_grad_enabled():  # a training batch, not validation
            clock[0] += 1.0
            tokens.append(int((captions[:, 1:] != Vocabulary.pad_id).sum()))
        return real_loss(logits, alphas, captions, attention_lambda)

    monkeypatch.setattr(training.objectives, "caption_loss", count_and_tick)
    monkeypatch.setattr(training.train, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    assert train_main(train_args(scenes, run, *common, "--resume")) == 0
    assert len(tokens) > 0
    assert read_log(run)[0]["train_tokens_per_s"] == round(sum(tokens) / len(tokens), 1)


# --- a full disk ---------------------------------------------------------------------------------


def test_a_full_disk_while_caching_says_how_much_more_is_needed(scenes, tmp_path, capsys,
                                                               monkeypatch):  # fmt: skip
    cache = tmp_path / "cache"
    real_write, written = training.features.write_atomically, []

    def fill_after_two(path, data, **kwargs):
        if len(written) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        written.append(len(data))
        return real_write(path, data, **kwargs)

    monkeypatch.setattr(training.features, "write_atomically", fill_after_two)
    args = train_args(scenes, tmp_path / "run", "--epochs", "1", "--cache-dir", str(cache))
    assert train_main(args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    images = 48 + 12
    size = written[0]
    assert (
        f"the disk holding {cache} filled while caching features (wrote "
        f"{human_size(2 * size)} of about {human_size(images * size)}; free "
        f"{human_size((images - 2) * size)} more and run again: the cache resumes)"
    ) in err
    assert len(list(cache.rglob("*.npy"))) == 2  # kept for the next run
    assert not list(cache.rglob("*.tmp"))


def test_a_bad_device_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--data", "x.json", "--images", "x", "--out", str(tmp_path / "run"),
                    "--device", "nonsense"])  # fmt: skip
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--device" in err and "'nonsense'" in err


def test_a_missing_data_file_is_a_usage_error(tmp_path, capsys):
    assert train_main(["--data", str(tmp_path / "gone.json"), "--images", str(tmp_path),
                       "--out", str(tmp_path / "run")]) == 2  # fmt: skip
    assert "gone.json" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_optimizer_moments_of_a_channels_last_conv_are_saved_and_restored(tmp_path):
    """A fine-tuned conv encoder's Adam moments are channels_last, like its weights."""
    from training.state import TrainingState, load_training_state, save_training_state

    def optimizer_and_scheduler():
        conv = torch.nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(conv.parameters())
        return conv, optimizer, torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)

    conv, optimizer, scheduler = optimizer_and_scheduler()
    conv(torch.randn(2, 3, 8, 8).to(memory_format=torch.channels_last)).sum().backward()
    optimizer.step()
    saved = optimizer.state_dict()["state"][0]["exp_avg"]
    assert not saved.is_contiguous()
    save_training_state(tmp_path, optimizer, scheduler, TrainingState(), {})
    _, restored, restored_scheduler = optimizer_and_scheduler()
    load_training_state(tmp_path, restored, restored_scheduler)
    assert torch.equal(restored.state_dict()["state"][0]["exp_avg"], saved)


def test_init_from_takes_a_shipped_models_name(tmp_path):
    """`--init-from default` is the shipped model, as `--model default` is everywhere else."""
    parser = training.train.build_parser()
    argv = ["--data", "x.json", "--images", "x", "--out", str(tmp_path / "run")]
    args, given = training.train.parse_args(parser, [*argv, "--init-from", "shapes"])
    run = resolve_run(parser, args, given)
    shapes = shipped_model("shapes")
    assert run.init_from == shapes
    config = json.loads((shapes / "config.json").read_text())
    assert run.cell == config["decoder"]["cell"]
