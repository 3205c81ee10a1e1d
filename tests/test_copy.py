"""The copy mechanism: nouns copied from a per-cell ImageNet-style classifier (issue #12).

A toy task stands in for photos: each grid cell holds a one-hot "class" channel that a fixed
head reads, as Lite0's classifier reads its 1280 features. Table nouns can only be said by
copying them, so a noun the training captions never use is still named from the cell that
holds it.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from captioner.beam import beam_search
from captioner.consensus import sample_captions
from captioner.decoder import Decoder, DecoderConfig
from captioner.options import DecodeOptions

START, END, A, TWO = 1, 2, 4, 5
CLASSES, NOUNS = 8, 4  # classes 0-3 are nouns 0-3; classes 4-7 (background) name no noun
SINGULAR = torch.tensor([6, 7, 8, 9])
PLURAL = torch.tensor([10, 11, 8, 12])  # noun 2's plural is its singular, like "sheep"
VOCAB = 13
UNSEEN = 3  # never in a training caption
GRID, FEATURES = 4, CLASSES + 2 + 4  # class channels, objectness, count, noise
OBJECTNESS, COUNT = CLASSES, CLASSES + 1


def toy_head() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A classifier that reads class c from channel c, and the class -> noun matrix."""
    weight = torch.zeros(CLASSES, FEATURES)
    weight[:, :CLASSES] = 8.0 * torch.eye(CLASSES)  # a set channel: p(class) = 0.998
    class_to_noun = torch.zeros(CLASSES, NOUNS)
    class_to_noun[torch.arange(NOUNS), torch.arange(NOUNS)] = 1.0
    return weight, torch.zeros(CLASSES), class_to_noun


def copy_decoder(**options) -> Decoder:
    config = DecoderConfig(
        VOCAB, FEATURES, 8, 32, 16, dropout=0.0, cell="gru", copy_nouns=NOUNS,
        copy_classes=CLASSES, **options,
    )  # fmt: skip
    decoder = Decoder(config)
    decoder.attach_noun_head(*toy_head(), SINGULAR, PLURAL)
    return decoder


def scenes(
    count: int, nouns: list[int], generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One object of a noun class in a random cell of a 4 x 4 grid of background classes; one
    or two of it ("a dog", "two dogs", told by a count channel in every cell). Returns features
    (count, 4, 4, FEATURES), captions (count, 4) and the object's cell (count,)."""
    cells = GRID * GRID
    features = 0.1 * torch.randn(count, cells, FEATURES, generator=generator)
    features[:, :, :OBJECTNESS] = 0.0
    background = torch.randint(NOUNS, CLASSES, (count, cells), generator=generator)
    features.scatter_(2, background.unsqueeze(-1), 1.0)
    index = torch.arange(count)
    where = torch.randint(0, cells, (count,), generator=generator)
    noun = torch.tensor(nouns)[torch.randint(0, len(nouns), (count,), generator=generator)]
    two = torch.rand(count, generator=generator) < 0.5
    features[index, where, :CLASSES] = 0.0
    features[index, where, noun] = 1.0
    features[index, where, OBJECTNESS] = 1.0
    features[:, :, COUNT] = two.float().unsqueeze(1)
    words = torch.where(two, PLURAL[noun], SINGULAR[noun])
    captions = torch.stack([torch.full_like(noun, START), torch.where(two, TWO, A), words,
                            torch.full_like(noun, END)], 1)  # fmt: skip
    return features.view(count, GRID, GRID, FEATURES), captions, where


def train(decoder: Decoder, steps: int, generator: torch.Generator) -> Decoder:
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-2)
    for _ in range(steps):
        features, captions, _ = scenes(64, [0, 1, 2], generator)
        logits, _ = decoder(features, captions)
        loss = F.cross_entropy(logits.transpose(1, 2), captions[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return decoder.eval()


@pytest.fixture(scope="module")
def trained() -> Decoder:
    torch.manual_seed(0)
    return train(copy_decoder(), 300, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("nouns", [[0, 1, 2], [UNSEEN]])
def test_the_decoder_names_the_object_by_copying_even_a_noun_no_caption_used(trained, nouns):
    features, captions, where = scenes(200, nouns, torch.Generator().manual_seed(1))
    found = beam_search(
        trained, features, start_id=START, end_id=END, banned_ids=(0, 1, 3), beam_size=3,
        max_length=5,
    )  # fmt: skip
    best = [hypotheses[0] for hypotheses in found]
    right = [h.token_ids == captions[i, 1:3].tolist() for i, h in enumerate(best)]
    assert sum(right) / len(right) >= 0.9
    # It reads the noun where the object is, with the copy gate open there and shut elsewhere.
    noun_looks = torch.tensor([h.alphas[1].argmax() for h in best])
    assert (noun_looks == where).float().mean() >= 0.9
    gates = torch.tensor([h.copy_gate.tolist() for h in best if len(h.token_ids) == 2])
    assert gates[:, 1].mean() > 0.9  # at the noun
    assert gates[:, 0].mean() < 0.1  # at "a" / "two", which only the vocabulary can say


def test_count_words_get_plurals(trained):
    features, captions, _ = scenes(200, [0, 1, UNSEEN], torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits, _ = trained(features, captions)
    said = logits[:, 1].argmax(-1)  # the word after the (teacher-forced) count word
    two = captions[:, 1] == TWO
    assert (said[two] == captions[two, 2]).float().mean() >= 0.9  # plurals
    assert (said[~two] == captions[~two, 2]).float().mean() >= 0.9  # singulars


def test_samples_drawn_from_the_mixture_copy_the_noun_too(trained):
    """Consensus reranking samples with Gumbel-max on the logits: the log-mixture works as is."""
    features, captions, _ = scenes(50, [0, 1, UNSEEN], torch.Generator().manual_seed(6))
    drawn = sample_captions(
        trained, features, num_samples=4, start_id=START, end_id=END, banned_ids=(0, 1, 3),
        max_length=5,
    )  # fmt: skip
    samples = [(sample, captions[i, 1:3].tolist()) for i, image in enumerate(drawn)
               for sample in image]  # fmt: skip
    assert sum(sample == expected for sample, expected in samples) >= 0.9 * len(samples)


def test_the_mixture_is_a_distribution_whose_nouns_come_only_from_the_copy_path():
    torch.manual_seed(0)
    decoder = copy_decoder().eval()
    with torch.no_grad():
        decoder.output.weight.mul_(4.0)
        decoder.plural_switch.bias.fill_(0.7)
    features, _, _ = scenes(3, [0, 1, 2, 3], torch.Generator().manual_seed(3))
    memory = decoder.prepare(features)
    state = decoder.initial_state(memory).repeat_rows(2)  # two beams per image
    words = torch.tensor([START, A, START, TWO, START, A])
    with torch.no_grad():
        out = decoder.step(words, state, memory)
    log_p = out.logits  # (6, VOCAB)
    torch.testing.assert_close(log_p.logsumexp(-1), torch.zeros(6), atol=1e-6, rtol=0)
    torch.testing.assert_close(log_p.log_softmax(-1), log_p, atol=1e-6, rtol=0)
    p = log_p.exp()
    copy_words = torch.unique(torch.cat([SINGULAR, PLURAL]))
    torch.testing.assert_close(p[:, copy_words].sum(-1), out.copy_gate)
    # Per noun: g * sum_i alpha_i p_i(noun), split by the plural switch (both shares for "sheep").
    cells = memory.noun_probs.repeat_interleave(2, 0)  # (6, 16, NOUNS)
    copied = out.copy_gate.unsqueeze(1) * torch.einsum("rp,rpn->rn", out.alpha, cells)
    plural = torch.sigmoid(torch.tensor(0.7) + decoder.plural_switch.weight @ out.state.h.T)[0]
    torch.testing.assert_close(p[:, SINGULAR[:2]], copied[:, :2] * (1 - plural).unsqueeze(1))
    torch.testing.assert_close(p[:, PLURAL[:2]], copied[:, :2] * plural.unsqueeze(1))
    torch.testing.assert_close(p[:, 8], copied[:, 2])
    # The other words share 1 - g as the vocabulary path's softmax over them.
    others = [w for w in range(VOCAB) if w not in copy_words.tolist()]
    vocab = decoder.output(out.state.h)[:, others].softmax(-1)
    torch.testing.assert_close(p[:, others], (1 - out.copy_gate).unsqueeze(1) * vocab)


def test_background_cells_carry_little_noun_mass_and_every_noun_keeps_some_probability():
    decoder = copy_decoder()
    features, _, where = scenes(4, [1], torch.Generator().manual_seed(4))
    memory = decoder.prepare(features)
    mass = memory.noun_mass  # (4, 16)
    object_mass = mass[torch.arange(4), where]
    assert (object_mass > 0.99).all()
    assert mass.sum(1).sub(object_mass).max() < 15 * 0.002  # each background cell < 0.002
    torch.testing.assert_close(memory.noun_probs.sum(-1), torch.ones(4, 16))
    assert memory.noun_probs.min() > 0  # a log-probability is never -inf
    assert (memory.noun_probs[torch.arange(4), where].argmax(-1) == 1).all()


def test_attach_refuses_a_head_that_reads_other_features():
    decoder = Decoder(DecoderConfig(VOCAB, 16, copy_nouns=NOUNS, copy_classes=CLASSES))
    weight, bias, class_to_noun = toy_head()
    with pytest.raises(ValueError, match=r"reads 14 features per cell, but the decoder's "
                       r"encoder_dim is 16: .*feature_stride 32"):  # fmt: skip
        decoder.attach_noun_head(weight, bias, class_to_noun, SINGULAR, PLURAL)
    with pytest.raises(ValueError, match="below vocab_size 13"):
        decoder.attach_noun_head(
            torch.zeros(CLASSES, 16), bias, class_to_noun, SINGULAR, PLURAL + 10
        )
    with pytest.raises(ValueError, match="no copy mechanism"):
        Decoder(DecoderConfig(VOCAB, 16)).attach_noun_head(weight, bias, class_to_noun,
                                                           SINGULAR, PLURAL)  # fmt: skip


def test_training_with_autocast_keeps_the_copy_path_in_float32():
    """float16 rounds small copy probabilities to 0; their logs would be -inf."""
    decoder = copy_decoder()
    features, captions, _ = scenes(8, [0, 1], torch.Generator().manual_seed(5))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, _ = decoder(features, captions)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits.gather(2, captions[:, 1:, None])).all()
    assert not math.isnan(F.cross_entropy(logits.transpose(1, 2), captions[:, 1:]).item())


def test_lite0_classifier_reads_the_encoder_grid_and_only_at_stride_32(photos):
    from captioner.encoder import Encoder, EncoderConfig

    encoder = Encoder(EncoderConfig())
    weight, bias = encoder.imagenet_classifier()
    assert weight.shape == (1000, encoder.encoder_dim) and bias.shape == (1000,)
    pixels = encoder.preprocess(photos["chelsea"]).unsqueeze(0)
    with torch.no_grad():
        grid = encoder(pixels)  # (1, 7, 7, 1280)
        # Linear, so the classifier on the mean cell is the backbone's own ImageNet logits.
        torch.testing.assert_close(
            F.linear(grid.mean((1, 2)), weight, bias), encoder.backbone(pixels), atol=1e-3, rtol=0
        )
        decoder = Decoder(DecoderConfig(10, 1280, copy_nouns=2))
        class_to_noun = torch.zeros(1000, 2)
        class_to_noun[281:286, 0] = 1.0  # the cat classes
        class_to_noun[[504, 967, 968], 1] = 1.0  # cups
        decoder.attach_noun_head(weight, bias, class_to_noun, torch.tensor([4, 5]),
                                 torch.tensor([6, 7]))  # fmt: skip
        memory = decoder.prepare(grid)
    # Weighted by how much of each cell the table names, the cells say "cat", not "cup".
    nouns = (memory.noun_mass.unsqueeze(-1) * memory.noun_probs).sum(1)[0]
    assert nouns[0] > 10 * nouns[1]
    with pytest.raises(ValueError, match="feature_stride 32; this encoder is .* at stride 16"):
        Encoder(EncoderConfig(feature_stride=16), pretrained=False).imagenet_classifier()


def test_captioner_train_copy_nouns_attaches_the_classifier_and_every_noun(tmp_path):
    from test_train import read_log, train_args

    from captioner import Captioner
    from captioner.nouns import NounTable
    from training.scenes import generate_split
    from training.train import main as train_main

    scenes = tmp_path / "scenes"
    generate_split(scenes, "train", 24, seed=11, size=128, workers=1)
    generate_split(scenes, "val", 4, seed=11, size=128, workers=1)
    run = tmp_path / "run"
    options = ("--epochs", "3", "--lr", "3e-3", "--dropout", "0.1", "--copy-nouns")
    assert train_main(train_args(scenes, run, *options)) == 0
    log = read_log(run)
    assert log[-1]["train_loss"] < 0.8 * log[0]["train_loss"]
    model = Captioner.load(run / "last", device="cpu")
    table = NounTable.load()
    assert model.decoder.config.copy_nouns == len(table.nouns)
    assert set(table.nouns) | set(table.plurals) <= set(model.vocab.itos)  # "teddy bear" too
    assert torch.equal(model.decoder.noun_head_weight, model.encoder.imagenet_classifier()[0])
    singular = [model.vocab.itos[i] for i in model.decoder.noun_singular_ids.tolist()]
    assert singular == list(table.nouns)
    result = model.caption(scenes / "val" / "000001.png", DecodeOptions(beam_size=2))
    assert result.copy_gate.shape == (len(result.tokens),)


def test_captioner_train_copy_nouns_needs_the_classifier_features(tmp_path, capsys):
    from training.train import main as train_main

    with pytest.raises(SystemExit) as stopped:
        train_main(["--data", "x.json", "--images", ".", "--out", str(tmp_path / "run"),
                    "--copy-nouns", "--feature-stride", "16"])  # fmt: skip
    assert stopped.value.code == 2
    assert "--copy-nouns reads the ImageNet classifier" in capsys.readouterr().err


def test_resume_checks_copy_nouns_like_other_model_options(tmp_path, capsys):
    from test_train import fake_checkpoint

    import training.train
    from training.run_dir import check_run_dir

    plain, copying = tmp_path / "plain", tmp_path / "copying"
    fake_checkpoint(plain)
    fake_checkpoint(copying, copy_nouns=504)
    parser = training.train.build_parser()
    for run in (plain, copying):
        argv = ["--data", "x.json", "--images", "x", "--out", str(run), "--resume", "--copy-nouns"]
        args, given = training.train.parse_args(parser, argv)
        if run == copying:
            assert check_run_dir(parser, args, given)
            continue
        with pytest.raises(SystemExit):
            check_run_dir(parser, args, given)
        assert "--copy-nouns differs from the run's model (made without it)" in (
            capsys.readouterr().err
        )
