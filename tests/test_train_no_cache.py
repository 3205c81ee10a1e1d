"""The feature cache at COCO scale: its size is checked before it is built, and --no-cache
encodes on the fly to the cached run's result."""

from collections import namedtuple
from types import SimpleNamespace

import pytest
from safetensors.torch import load_file

import training.features
from captioner import Captioner
from captioner.distributed import Distributed
from captioner.encoder import Encoder, EncoderConfig
from tests.test_train import read_log
from training.features import (
    CacheBuiltElsewhereError,
    CacheTooLargeError,
    DiskFeatureCache,
    human_size,
    model_inputs,
)
from training.readers import read_samples
from training.scenes import generate_split
from training.train import main as train_main

SMALL_MODEL = ["--embed-dim", "16", "--decoder-dim", "32", "--attention-dim", "16"]
Usage = namedtuple("Usage", "total used free")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    generate_split(root, "train", 16, seed=3, size=96, workers=1)
    generate_split(root, "val", 4, seed=3, size=96, workers=1)
    return root


def train_args(scenes, out, *extra):
    return [
        "--data", str(scenes / "captions_train.json"), "--images", str(scenes / "train"),
        "--val-data", str(scenes / "captions_val.json"), "--val-images", str(scenes / "val"),
        "--out", str(out), "--min-word-count", "1", "--batch-size", "8", "--image-size", "96",
        "--no-progress", "--workers", "0", "--device", "cpu", "--val-max-images", "4",
        "--dropout", "0.3", *SMALL_MODEL, *extra,
    ]  # fmt: skip


def test_a_cache_too_large_for_the_disk_is_refused_before_encoding(
    scenes, tmp_path, capsys, monkeypatch
):
    cache = tmp_path / "cache" / "not-yet-made"
    monkeypatch.setattr(training.features.shutil, "disk_usage", lambda path: Usage(1e9, 0, 5000))
    args = train_args(scenes, tmp_path / "run", "--epochs", "1", "--cache-dir", str(cache))
    assert train_main(args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    # efficientnet-lite0 at 96 px: a 3 x 3 x 1280 float16 grid, 23,040 bytes + a 128-byte
    # header, in 4,096-byte blocks: 24,576 bytes
    assert (
        f"the feature cache needs about {human_size(20 * 24_576)} for 20 photos "
        f"({human_size(24_576)} each) but the disk holding {cache} has 5.0 kB free: give "
        "--cache-dir on a disk with more space, or --no-cache to encode the photos on the fly"
    ) in err
    assert not cache.exists() and not (tmp_path / "run").exists()


def test_the_estimate_covers_what_the_cache_writes(scenes, tmp_path):
    cache = tmp_path / "cache"
    assert train_main(train_args(scenes, tmp_path / "run", "--epochs", "1", "--cache-dir",
                                 str(cache))) == 0  # fmt: skip
    files = list(cache.rglob("*.npy"))
    assert len(files) == 20
    written = sum(f.stat().st_size for f in files)
    encoder = Captioner.load(tmp_path / "run" / "best").encoder
    estimate = 20 * DiskFeatureCache(cache, encoder).file_size()
    assert written <= estimate < written + 20 * 4096  # whole blocks, at most one more a file


def test_no_cache_trains_to_the_cached_result_within_float16_rounding(scenes, tmp_path):
    """The cache stores float16 features, on-the-fly encoding keeps float32: the two runs see
    features that differ by float16 rounding (~5e-4 relative), and their losses stay within
    that of each other, not bit for bit. (Weights are not compared: Adam takes a step of about
    the learning rate whatever a gradient's size, so a weight whose gradient is near zero can
    step either way.)"""
    cache = tmp_path / "cache"
    cached, fly = tmp_path / "cached", tmp_path / "fly"
    common = ["--epochs", "2", "--lr", "3e-3"]
    assert train_main(train_args(scenes, cached, *common, "--cache-dir", str(cache))) == 0
    assert train_main(train_args(scenes, fly, *common, "--no-cache")) == 0
    assert len(list(cache.rglob("*.npy"))) == 20  # the first run's; the second wrote none
    for a, b in zip(read_log(cached), read_log(fly), strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=3e-3)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=3e-3)
    weights = [load_file(run / "last" / "model.safetensors") for run in (cached, fly)]
    differs = max((weights[0][n] - w).abs().max() for n, w in weights[1].items())
    assert differs > 0  # not bit for bit: the features did differ by float16 rounding


def test_no_cache_with_a_cache_dir_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_main(["--data", "x", "--images", "y", "--out", str(tmp_path), "--no-cache",
                    "--cache-dir", str(tmp_path)])  # fmt: skip
    assert "not allowed with argument" in capsys.readouterr().err


class TwoProcessWorld(Distributed):
    """This process's place in a 2-process torchrun launch, the other process's part of each
    sum given: what model_inputs tells the other process, without launching one."""

    def __init__(self, rank: int, other_sum: float) -> None:
        super().__init__(rank=rank, world_size=2)
        self.other_sum, self.sums = other_sum, []

    def barrier(self) -> None:
        raise AssertionError("a bare barrier: a process whose partner failed would wait for ever")

    def sum(self, value: float) -> float:
        self.sums.append(value)
        return value + self.other_sum


def model_inputs_args(tmp_path):
    return SimpleNamespace(
        no_cache=False, cache_dir=tmp_path / "cache", workers=0, no_progress=True
    )


def test_under_torchrun_a_cache_error_reaches_every_process(scenes, tmp_path, monkeypatch):
    """The main process says it failed before raising; the others raise instead of waiting."""
    monkeypatch.setattr(training.features.shutil, "disk_usage", lambda path: Usage(1e9, 0, 5000))
    samples = read_samples(scenes / "captions_train.json", scenes / "train").samples
    encoder = Encoder(EncoderConfig(image_size=96))
    main = TwoProcessWorld(rank=0, other_sum=0.0)
    with pytest.raises(CacheTooLargeError):
        model_inputs(encoder, samples, [], model_inputs_args(tmp_path), main, "cpu")
    assert main.sums == [1.0]
    other = TwoProcessWorld(rank=1, other_sum=1.0)
    with pytest.raises(CacheBuiltElsewhereError):
        model_inputs(encoder, samples, [], model_inputs_args(tmp_path), other, "cpu")
    assert other.sums == [0.0]
