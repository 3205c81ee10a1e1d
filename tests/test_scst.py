"""Self-critical training: it raises the reward, its baselines are what they say, a copy model
trains through its copy path, and captioner-train --objective scst resumes exactly."""

import json
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import training.objectives
from captioner import Captioner
from captioner.decoder import Decoder, DecoderConfig
from captioner.distributed import Distributed
from tests import test_train
from tests.conftest import PHOTO_CAPTIONS, tiny_copy_captioner, train_tiny_captioner
from tests.test_beam import follows_copy_rules
from tests.test_train import read_log, subprocess_environment, train_args
from training.cider import CiderD
from training.model import CaptionModel
from training.objectives import SelfCritical, candidates, mean_of_others
from training.scst import CaptionSampler, MixedReward, SharedNoise
from training.train import main as train_main

scenes = test_train.scenes  # the generated shape scenes captioner-train's tests train on


@pytest.fixture(scope="module")
def photo_features(photos, tiny_captioner):
    """The six photos as frozen Lite0 features, (6, 7, 7, 1280)."""
    encoder = tiny_captioner.encoder
    with torch.no_grad():
        return encoder(torch.stack([encoder.preprocess(p) for p in photos.values()]))


def references(vocab):
    return [[vocab.encode(caption)[1:]] for caption in PHOTO_CAPTIONS.values()]


def objective(captioner, baseline="mean", num_samples=5):
    model = CaptionModel(captioner.encoder, captioner.decoder)
    scorer = CiderD(references(captioner.vocab))
    return model, SelfCritical(
        CaptionSampler(model), model, scorer, Distributed(),
        num_samples=num_samples, baseline=baseline, max_length=12,
    )  # fmt: skip


def train_steps(model, scst, features, steps, lr):
    optimizer = torch.optim.Adam(model.decoder.parameters(), lr=lr)
    images = torch.arange(len(features))
    for _ in range(steps):
        loss, _, _ = scst((features, images), torch.device("cpu"))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return scst.epoch_row()


def test_scst_raises_the_mean_reward_of_a_half_trained_model(photos, photo_features):
    captioner = train_tiny_captioner(list(photos.values()), list(PHOTO_CAPTIONS.values()), 20)
    model, scst = objective(captioner)
    _, measure = objective(captioner, num_samples=20)  # many draws: a steadier mean reward
    torch.manual_seed(0)
    before = train_steps(model, measure, photo_features, 2, lr=0.0)
    train_steps(model, scst, photo_features, 60, lr=5e-3)
    after = train_steps(model, measure, photo_features, 2, lr=0.0)
    # Seeds 0-3 gain 0.4 to 3.0 from about 4 (CIDEr-D against one reference per photo).
    assert after["sample_reward"] > before["sample_reward"] + 0.3, (before, after)
    # The drawn captions get surer of themselves as the rewarded ones take over.
    assert after["entropy"] < before["entropy"]


def test_mean_baseline_is_the_mean_of_the_other_samples():
    rewards = torch.tensor([[1.0, 2.0, 3.0, 7.0], [0.0, 0.0, 0.0, 4.0]])
    baseline = mean_of_others(rewards)
    for image in range(2):
        for k in range(4):
            others = [r for j, r in enumerate(rewards[image].tolist()) if j != k]
            assert baseline[image, k].item() == pytest.approx(sum(others) / 3)
    # A sample is pushed up when it beats its image's mean reward, and down otherwise.
    above = rewards > rewards.mean(1, keepdim=True)
    assert torch.equal(rewards - baseline > 0, above)


def test_greedy_baseline_is_the_reward_of_the_greedy_caption(photos, photo_features):
    captioner = train_tiny_captioner(list(photos.values()), list(PHOTO_CAPTIONS.values()), 40)
    model, scst = objective(captioner, baseline="greedy", num_samples=3)
    scorer = scst.scorer
    torch.manual_seed(0)
    row = train_steps(model, scst, photo_features, 1, lr=0.0)
    model.eval()
    with torch.no_grad():
        greedy = CaptionSampler(model)(photo_features, 1, 12)
    greedy_rewards = scorer.scores(list(range(6)), candidates(greedy.words))
    assert row["baseline_reward"] == pytest.approx(float(greedy_rewards.mean()), abs=1e-5)
    assert row["sample_reward"] != pytest.approx(row["baseline_reward"], abs=1e-5)


def test_copy_model_trains_through_its_copy_path(tiny_captioner, photo_features):
    captioner = tiny_copy_captioner(tiny_captioner, ["cat", "coffee cup"])
    model, scst = objective(captioner)
    decoder = captioner.decoder
    head = decoder.noun_head_weight.clone()
    gate = decoder.copy_gate.weight.detach().clone()
    torch.manual_seed(0)
    drawn = scst.trained(photo_features, 5, 12)
    copied = {decoder.noun_singular_ids[0].item(), decoder.noun_plural_ids[0].item()}
    assert torch.isfinite(drawn.log_probs).all()
    assert copied & set(drawn.words.flatten().tolist())  # the drawn captions copy "cat"
    row = train_steps(model, scst, photo_features, 3, lr=1e-3)
    assert not torch.equal(decoder.copy_gate.weight, gate)  # the reward reached the copy gate
    assert torch.equal(decoder.noun_head_weight, head)  # the ImageNet classifier stays as it was
    assert row["sample_reward"] > 0


def test_bleu_mix_adds_its_weight_for_a_reference_and_little_for_a_stranger(tiny_captioner):
    refs = references(tiny_captioner.vocab)
    cider = CiderD(refs)
    mixed = MixedReward(cider, refs, bleu_weight=0.5)
    exact, reordered = refs[1][0], refs[1][0][::-1]  # "a cat looking ..." and backwards
    gain = mixed.scores([1, 1], [exact, reordered]) - cider.scores([1, 1], [exact, reordered])
    assert gain[0] == pytest.approx(0.5)  # BLEU-4 of the reference itself is 1
    assert 0 <= gain[1] < 0.05


@pytest.mark.parametrize(
    "options",
    [{"cell": "gru"}, {"cell": "rnn"}, {"word_attention": True, "coordinates": True}],
)
def test_every_decoder_option_trains(tiny_captioner, photo_features, options):
    vocab = tiny_captioner.vocab
    decoder = Decoder(DecoderConfig(len(vocab), 1280, 16, 32, 16, dropout=0.0, **options))
    captioner = Captioner(tiny_captioner.encoder, decoder, vocab, name="options")
    model, scst = objective(captioner)
    torch.manual_seed(0)
    loss, _, _ = scst((photo_features, torch.arange(6)), torch.device("cpu"))
    loss.backward()
    for name, weight in decoder.named_parameters():
        assert weight.grad is not None and torch.isfinite(weight.grad).all(), name
    assert decoder.output.weight.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def cross_entropy_run(scenes, tmp_path_factory):
    run = tmp_path_factory.mktemp("ce") / "run"
    assert train_main(train_args(scenes, run, "--epochs", "2", "--lr", "3e-3",
                                 "--val-max-images", "2")) == 0  # fmt: skip
    return run


def scst_args(scenes, cross_entropy_run, out, *extra):
    return train_args(scenes, out, "--init-from", str(cross_entropy_run / "best"),
                      "--objective", "scst", "--scst-samples", "3", "--val-max-images", "2",
                      *extra)  # fmt: skip


def test_scst_run_resumes_exactly_and_logs_its_guardrails(scenes, cross_entropy_run, tmp_path):
    """Dropout is on and every caption is drawn: an exact resume restores the sampling RNG."""
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert train_main(scst_args(scenes, cross_entropy_run, straight, "--epochs", "2")) == 0
    assert train_main(scst_args(scenes, cross_entropy_run, stopped, "--epochs", "1")) == 0
    # The objective and its options come from the checkpoint.
    assert train_main(train_args(scenes, stopped, "--epochs", "2", "--val-max-images", "2",
                                 "--resume")) == 0  # fmt: skip
    a, b = (load_file(run / "last" / "model.safetensors") for run in (straight, stopped))
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = read_log(straight)
    assert [{k: v for k, v in row.items() if k != "train_tokens_per_s"} for row in log] == [
        {k: v for k, v in row.items() if k != "train_tokens_per_s"} for row in read_log(stopped)
    ]
    assert {"sample_reward", "baseline_reward", "caption_length", "entropy", "CIDEr"} <= set(log[0])
    state = json.loads((stopped / "last" / "training_state.json").read_text())
    assert state["options"]["objective"] == "scst" and state["options"]["lr"] == 5e-5
    config = json.loads((straight / "best" / "config.json").read_text())
    assert (
        config["decoder"]
        == json.loads((cross_entropy_run / "best" / "config.json").read_text())["decoder"]
    )


def test_ctrl_c_mid_epoch_saves_and_resumes_exactly(
    scenes, cross_entropy_run, tmp_path, monkeypatch
):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    assert train_main(scst_args(scenes, cross_entropy_run, straight, "--epochs", "1")) == 0
    real_loss = training.objectives.scst_loss

    def interrupt_on_first_batch(*args):
        monkeypatch.setattr(training.objectives, "scst_loss", real_loss)
        signal.raise_signal(signal.SIGINT)  # as if the user pressed Ctrl-C mid-batch
        return real_loss(*args)

    monkeypatch.setattr(training.objectives, "scst_loss", interrupt_on_first_batch)
    assert train_main(scst_args(scenes, cross_entropy_run, interrupted, "--epochs", "1")) == 130
    state = json.loads((interrupted / "last" / "training_state.json").read_text())
    assert state["progress"]["batch"] == 1 and state["progress"]["epoch"] == 0
    resume = ("--epochs", "1", "--val-max-images", "2", "--resume")
    assert train_main(train_args(scenes, interrupted, *resume)) == 0
    a, b = (load_file(run / "last" / "model.safetensors") for run in (straight, interrupted))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_scst_needs_a_model_to_start_from(scenes, tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_main(train_args(scenes, tmp_path / "run", "--objective", "scst"))
    assert "--init-from" in capsys.readouterr().err


def test_init_from_refuses_a_different_model_option(scenes, cross_entropy_run, tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_main(scst_args(scenes, cross_entropy_run, tmp_path / "run", "--cell", "gru"))
    assert "--cell gru differs" in capsys.readouterr().err


def shard_noise(global_images, num_samples, world_size, vocab_size=7):
    """Each process's noise, seeded from the same global RNG state as torchrun's processes."""
    shards = []
    for rank in range(world_size):
        torch.manual_seed(5)
        noise = SharedNoise(global_images, num_samples, Distributed(rank, world_size), "cpu")
        shards.append(noise.draw(vocab_size).view(-1, num_samples, vocab_size))
    return shards


@pytest.mark.parametrize("global_images", [6, 7])
def test_each_process_draws_the_noise_one_process_draws_for_its_images(global_images):
    (whole,) = shard_noise(global_images, 3, 1)
    first, second = shard_noise(global_images, 3, 2)
    assert torch.equal(first, whole[0::2]) and torch.equal(second, whole[1::2])
    assert not torch.equal(first[0], second[0])


def test_gumbel_max_draws_words_as_often_as_their_probability():
    p = torch.tensor([0.6, 0.3, 0.1, 0.0])
    torch.manual_seed(0)
    noise = SharedNoise(20_000, 1, Distributed(), "cpu").draw(len(p))
    counts = torch.bincount((p.log() + noise).argmax(-1), minlength=len(p))
    torch.testing.assert_close(counts / counts.sum(), p, atol=0.015, rtol=0)


@pytest.mark.slow
def test_two_process_scst_trains_the_model_one_process_trains(scenes, tmp_path):
    """torchrun with 2 CPU processes (gloo) on the same global batch draws the same captions
    and trains the same model (no dropout: its masks are drawn per process)."""
    start = tmp_path / "cross-entropy"
    assert train_main(train_args(scenes, start, "--epochs", "1", "--dropout", "0",
                                 "--val-max-images", "2")) == 0  # fmt: skip
    single, double = tmp_path / "single", tmp_path / "double"
    common = ("--epochs", "1", "--dropout", "0", "--lr", "1e-3")
    assert train_main(scst_args(scenes, start, single, *common)) == 0
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    command = [*launcher, "--module", "training.train", *scst_args(scenes, start, double, *common)]
    subprocess.run(command, check=True, timeout=600, env=subprocess_environment())
    a, b = (load_file(run / "last" / "model.safetensors") for run in (single, double))
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-4, rtol=1e-4)  # as cross-entropy's
    one, two = read_log(single)[0], read_log(double)[0]
    for key in ("sample_reward", "caption_length", "entropy"):
        assert two[key] == pytest.approx(one[key], rel=1e-5), key


def test_drawn_captions_obey_the_copy_rules_as_beam_search_does(tiny_captioner, photo_features):
    """A copy model that copies at almost every word still draws only captions beam search
    could return: a noun before <end>, never two nouns side by side, each noun once."""
    captioner = tiny_copy_captioner(tiny_captioner, ["cat", "coffee cup"])
    decoder, max_length, num_samples = captioner.decoder, 8, 40
    sampler = CaptionSampler(CaptionModel(captioner.encoder, decoder))
    torch.manual_seed(0)
    noise = SharedNoise(len(photo_features), num_samples, Distributed(), "cpu")
    with torch.no_grad():
        drawn = sampler(photo_features, num_samples, max_length, noise)
        greedy = sampler(photo_features, 1, max_length)
    captions = candidates(drawn.words) + candidates(greedy.words)
    for words in captions:
        ended = words[-1] == captioner.vocab.end_id
        words = words[:-1] if ended else words
        assert ended or len(words) == max_length
        assert follows_copy_rules(decoder, tuple(words), max_length), words
