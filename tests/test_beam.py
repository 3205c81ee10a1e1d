"""Beam search: batched equals per-image, exact on an enumerable model, documented ranking."""

import contextlib
import itertools
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from captioner.beam import beam_search, length_penalty
from captioner.decoder import Decoder, DecoderConfig
from captioner.options import DecodeOptions

START, END = 1, 2
BANNED = (0, 1, 3)


def noise_images(count: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)) for _ in range(count)
    ]


@pytest.mark.parametrize(
    "options",
    [
        {"beam_size": 5},
        {"beam_size": 1},
        {"beam_size": 4, "length_penalty": 1.0, "no_repeat_ngram_size": 2},
    ],
)
def test_batched_equals_one_image_at_a_time(tiny_captioner, photos, options):
    images = noise_images(6) + list(photos.values())[:2]
    features = tiny_captioner.encode(images)
    batched = tiny_captioner.decode(features, DecodeOptions(max_length=15, **options))
    for i, result in enumerate(batched):
        alone = tiny_captioner.decode(features[i : i + 1], DecodeOptions(max_length=15, **options))[
            0
        ]
        assert [b.tokens for b in result.beams] == [b.tokens for b in alone.beams]
        np.testing.assert_allclose(
            [b.score for b in result.beams], [b.score for b in alone.beams], atol=1e-5
        )
        np.testing.assert_allclose(result.alphas, alone.alphas, atol=1e-5)


def test_result_invariants(tiny_captioner):
    results = tiny_captioner.decode(
        tiny_captioner.encode(noise_images(4, seed=1)), DecodeOptions(beam_size=5, max_length=6)
    )
    for result in results:
        assert result.beams[0].tokens == result.tokens
        scores = [b.score for b in result.beams]
        assert scores == sorted(scores, reverse=True)
        for beam in result.beams:
            assert len(beam.tokens) <= 6
            assert not {"<end>", "<start>", "<pad>", "<unk>"} & set(beam.tokens)
            assert beam.alphas.shape == (len(beam.tokens), 7, 7)
            np.testing.assert_allclose(beam.alphas.sum(axis=(1, 2)), 1.0, atol=1e-5)
            assert beam.gates["forget"].shape == (len(beam.tokens), 128)
            assert ((beam.context_gate > 0) & (beam.context_gate < 1)).all()


def attach_random_noun_head(decoder: Decoder, singular: list[int], plural: list[int]) -> None:
    """A random classifier and class -> noun table (some classes name no noun) for the nouns
    whose word ids are given; a plural equal to its singular is a noun like "sheep"."""
    config = decoder.config
    class_to_noun = torch.rand(config.copy_classes, config.copy_nouns)
    class_to_noun[::3] = 0.0
    decoder.attach_noun_head(
        3.0 * torch.randn(config.copy_classes, config.encoder_dim),
        torch.randn(config.copy_classes),
        class_to_noun,
        torch.tensor(singular),
        torch.tensor(plural),
    )


def tiny_random_decoder(
    seed: int, copy: bool = False, semantic: bool = False
) -> tuple[Decoder, torch.Tensor]:
    """Vocabulary of two real words (with copy, also a noun and its plural, said only by
    copying them): every caption up to length 3 can be enumerated."""
    torch.manual_seed(seed)
    config = DecoderConfig(
        8 if copy else 6, 8, embed_dim=4, decoder_dim=8, attention_dim=4, dropout=0.0,
        copy_nouns=1 if copy else 0, copy_classes=3, semantic_features=semantic,
    )  # fmt: skip
    decoder = Decoder(config).eval()
    with torch.no_grad():
        decoder.output.weight.mul_(6.0)  # peakier distributions make rankings differ more
        if copy:
            attach_random_noun_head(decoder, [6], [7])
            decoder.copy_gate.weight.mul_(6.0)
            decoder.plural_switch.weight.mul_(6.0)
    return decoder, torch.randn(1, 2, 2, 8)


def follows_copy_rules(decoder, words: tuple[int, ...], max_length: int) -> bool:
    """A copy model's caption ends only after a copied noun (unless max_length ends it), never
    copies two nouns in a row and names each noun once, singular or plural; any caption of
    another model does."""
    if not decoder.config.copy_nouns:
        return True
    singular, plural = decoder.noun_singular_ids.tolist(), decoder.noun_plural_ids.tolist()
    nouns = set(singular) | set(plural)
    if any(a in nouns and b in nouns for a, b in itertools.pairwise(words)):
        return False
    said = [singular.index(w) if w in singular else plural.index(w) for w in words if w in nouns]
    if len(said) != len(set(said)):
        return False
    return len(words) == max_length or bool(nouns & set(words))


def exhaustive_best(decoder, features, max_length: int, alpha: float) -> tuple[list[int], float]:
    """Score every caption of 1..max_length words (plus <end>) that beam search may return by
    teacher forcing."""
    best = ([], -math.inf)
    for length in range(1, max_length + 1):
        for words in itertools.product(range(4, decoder.config.vocab_size), repeat=length):
            if not follows_copy_rules(decoder, words, max_length):
                continue
            ids = torch.tensor([[START, *words, END]])
            with torch.no_grad():
                logits, _ = decoder(features, ids)
            log_prob = logits.log_softmax(-1)[0].gather(1, ids[0, 1:, None]).sum().item()
            score = log_prob / length_penalty(length + 1, alpha)
            if score > best[1]:
                best = (list(words), score)
    return best


@pytest.mark.parametrize("copy", [False, True])
def test_wide_beam_finds_the_exhaustive_optimum_and_length_penalty_reranks(copy):
    rankings_differ = False
    for seed in range(8):
        decoder, features = tiny_random_decoder(seed, copy)
        bests = {}
        for alpha in (0.0, 3.0):
            words, score = exhaustive_best(decoder, features, max_length=3, alpha=alpha)
            found = beam_search(
                decoder,
                features,
                start_id=START,
                end_id=END,
                banned_ids=BANNED,
                beam_size=16,  # every two-word prefix stays live: the search is exhaustive
                max_length=3,
                length_alpha=alpha,
            )[0][0]
            assert found.token_ids == words
            assert found.score == pytest.approx(score, abs=1e-5)
            assert found.score == pytest.approx(
                found.log_prob / length_penalty(len(found.token_ids) + 1, alpha), abs=1e-6
            )
            bests[alpha] = words
        # A larger length penalty never prefers a shorter caption.
        assert len(bests[3.0]) >= len(bests[0.0])
        rankings_differ |= bests[3.0] != bests[0.0]
    assert rankings_differ, "length penalty should change the best caption for some model"


@pytest.mark.parametrize("copy, semantic", [(False, False), (True, False), (True, True)])
def test_every_returned_beam_scores_as_its_caption_does_under_teacher_forcing(copy, semantic):
    """Beams are reordered every step; a state left unreordered would make a beam's score and
    maps those of another caption."""
    decoder, features = tiny_random_decoder(2, copy, semantic)
    features = torch.cat([features, torch.randn(3, 2, 2, 8)])
    found = beam_search(  # a length bonus keeps long captions, whose beams were reordered
        decoder, features, start_id=START, end_id=END, banned_ids=BANNED, beam_size=6,
        max_length=6, length_alpha=4.0, num_return=6,
    )  # fmt: skip
    longest = 0
    for image, hypotheses in enumerate(found):
        for hypothesis in hypotheses:
            ids = torch.tensor([[START, *hypothesis.token_ids, END]])
            with torch.no_grad():
                logits, alphas = decoder(features[image : image + 1], ids)
            log_prob = logits.log_softmax(-1)[0].gather(1, ids[0, 1:, None]).sum().item()
            assert hypothesis.log_prob == pytest.approx(log_prob, abs=1e-5)
            words = len(hypothesis.token_ids)
            np.testing.assert_allclose(hypothesis.alphas, alphas[0, :words].numpy(), atol=1e-6)
            longest = max(longest, words)
    assert longest == 6


@contextlib.contextmanager
def rows_counted(decoder: Decoder) -> Iterator[list[int]]:
    """The number of rows each `decoder.step` call is given, while the block runs."""
    rows_per_step = []
    step = decoder.step

    def counted_step(words, state, memory):
        rows_per_step.append(len(words))
        return step(words, state, memory)

    decoder.step = counted_step
    try:
        yield rows_per_step
    finally:
        del decoder.step  # the class's method again


def test_finished_images_leave_the_search(tiny_captioner, photos):
    """An image whose captions are settled stops costing steps: one long caption in a batch
    does not make every image pay for it."""
    features = tiny_captioner.encode([photos["chelsea"], photos["coffee"], *noise_images(2)])
    options = DecodeOptions(beam_size=3, max_length=40)
    with rows_counted(tiny_captioner.decoder) as rows_per_step:
        results = tiny_captioner.decode(features, options)
    longest = max(len(r.tokens) for r in results)
    shortest = min(len(r.tokens) for r in results)
    assert shortest < longest  # the test needs captions of different lengths
    assert rows_per_step[0] == 4 * 3
    assert rows_per_step == sorted(rows_per_step, reverse=True)
    assert rows_per_step[-1] < 4 * 3
    # ... and what is left is still each image's own search.
    for i, result in enumerate(results):
        alone = tiny_captioner.decode(features[i : i + 1], options)[0]
        assert [b.tokens for b in result.beams] == [b.tokens for b in alone.beams]


@pytest.mark.parametrize(
    "options",
    [
        {"beam_size": 5},
        {"beam_size": 1},
        {"beam_size": 4, "length_alpha": 1.0, "no_repeat_ngram_size": 2},
    ],
)
def test_a_copy_model_decodes_a_batch_as_one_image_at_a_time(options):
    decoder, _ = tiny_random_decoder(4, copy=True)
    features = torch.randn(6, 3, 3, 8)
    search = {"start_id": START, "end_id": END, "banned_ids": BANNED, "max_length": 7}
    batched = beam_search(decoder, features, **search, **options)
    copied = 0
    for i, hypotheses in enumerate(batched):
        alone = beam_search(decoder, features[i : i + 1], **search, **options)[0]
        assert [h.token_ids for h in hypotheses] == [h.token_ids for h in alone]
        for ours, theirs in zip(hypotheses, alone, strict=True):
            assert ours.score == pytest.approx(theirs.score, abs=1e-5)
            np.testing.assert_allclose(ours.alphas, theirs.alphas, atol=1e-6)
            np.testing.assert_allclose(ours.copy_gate, theirs.copy_gate, atol=1e-6)
            assert ours.copy_gate.shape == (len(ours.token_ids),)
            copied += sum(word in (6, 7) for word in ours.token_ids)
    assert copied > 0  # the search did say copied nouns


@pytest.mark.parametrize("beam_size", [1, 4])
def test_no_caption_ends_before_its_first_word(beam_size):
    """A model whose likeliest first word is <end> still says something, greedy or not."""
    decoder, features = tiny_random_decoder(0)
    features = torch.cat([features, torch.randn(2, 2, 2, 8)])
    with torch.no_grad():
        decoder.output.bias[END] = 50.0
    found = beam_search(
        decoder, features, start_id=START, end_id=END, banned_ids=BANNED, beam_size=beam_size,
        max_length=5, num_return=beam_size,
    )  # fmt: skip
    for hypotheses in found:
        assert len(hypotheses) == beam_size
        assert len(hypotheses[0].token_ids) == 1  # then <end>, as the model insists
        assert all(h.token_ids for h in hypotheses)


@pytest.mark.parametrize("n", [1, 2])
def test_no_repeat_ngram_blocks_repeats(n):
    decoder, features = tiny_random_decoder(3)
    for hypothesis in beam_search(
        decoder,
        features,
        start_id=START,
        end_id=END,
        banned_ids=BANNED,
        beam_size=4,
        max_length=8,
        no_repeat_ngram_size=n,
    )[0]:
        grams = [
            tuple(hypothesis.token_ids[i : i + n]) for i in range(len(hypothesis.token_ids) - n + 1)
        ]
        assert len(grams) == len(set(grams))


def test_max_length_is_respected_even_when_end_is_unlikely():
    decoder, features = tiny_random_decoder(0)
    with torch.no_grad():
        decoder.output.bias[END] = -50.0
    # A strong length penalty makes the longest captions win: they must stop at max_length.
    hypotheses = beam_search(
        decoder,
        features,
        start_id=START,
        end_id=END,
        banned_ids=BANNED,
        beam_size=3,
        max_length=5,
        length_alpha=3.0,
    )[0]
    assert [len(h.token_ids) for h in hypotheses] == [5, 5, 5]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("encoder_dim, projected", [(64, True), (8, False)])
@pytest.mark.parametrize("start_state", ["mean", "learned"])
@pytest.mark.parametrize("coordinates", [False, True])
@pytest.mark.parametrize("normalize_features, word_attention", [(False, False), (True, True)])
@pytest.mark.parametrize("copy", [False, True])
def test_decoding_steps_equal_the_teacher_forced_direct_form(
    cell, encoder_dim, projected, start_state, coordinates, normalize_features, word_attention,
    copy,
):  # fmt: skip
    """step() projects wide features once per image (prepare) and sums the projections, and
    averages narrow ones first; forward() always averages first. Same logits and maps."""
    torch.manual_seed(0)
    config = DecoderConfig(
        30, encoder_dim, 16, 32, 24, 0.0, cell, start_state, coordinates, normalize_features,
        word_attention, copy_nouns=5 if copy else 0, copy_classes=12,
    )  # fmt: skip
    decoder = Decoder(config).eval()
    if copy:  # the last noun is like "sheep": its plural is its singular
        attach_random_noun_head(decoder, [20, 21, 22, 23, 24], [25, 26, 27, 28, 24])
    if start_state == "learned":
        torch.nn.init.normal_(decoder.start_h)
    features = torch.randn(3, 4, 4, encoder_dim)
    captions = torch.randint(4, 30, (3, 7))
    captions[:, 0] = START
    with torch.no_grad():
        logits, alphas = decoder(features, captions)
        memory = decoder.prepare(features)
        assert (memory.projected_features is not None) == projected
        state = decoder.initial_state(memory)
        same_start = torch.equal(state.h[0], state.h[1])
        assert same_start == (start_state == "learned")  # else from each image's mean feature
        for t in range(captions.shape[1] - 1):
            out = decoder.step(captions[:, t], state, memory)
            state = out.state
            torch.testing.assert_close(out.logits, logits[:, t], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out.alpha, alphas[:, t], atol=1e-6, rtol=1e-5)
            assert (out.copy_gate is not None) == copy


@pytest.mark.parametrize("coordinates", [False, True])
def test_semantic_features_decode_as_teacher_forcing_from_the_classifiers_view(coordinates):
    """With semantic_features the decoder's cells are the classifier's log-probabilities; the
    steps still equal teacher forcing, and the raw features reach it only through them."""
    torch.manual_seed(0)
    config = DecoderConfig(
        30, 64, 16, 32, 24, 0.0, "gru", "learned", coordinates, True, True,
        copy_nouns=5, copy_classes=12, semantic_features=True,
    )  # fmt: skip
    decoder = Decoder(config).eval()
    attach_random_noun_head(decoder, [20, 21, 22, 23, 24], [25, 26, 27, 28, 29])
    features = torch.randn(3, 4, 4, 64)
    captions = torch.randint(4, 30, (3, 7))
    captions[:, 0] = START
    with torch.no_grad():
        logits, alphas = decoder(features, captions)
        memory = decoder.prepare(features)
        assert memory.features.shape == (3, 16, 12 + (2 if coordinates else 0))
        state = decoder.initial_state(memory)
        for t in range(captions.shape[1] - 1):
            out = decoder.step(captions[:, t], state, memory)
            state = out.state
            torch.testing.assert_close(out.logits, logits[:, t], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out.alpha, alphas[:, t], atol=1e-6, rtol=1e-5)
        # Features the classifier cannot tell apart are the same image to the decoder.
        shift = torch.randn(64)
        shift -= torch.linalg.pinv(decoder.noun_head_weight) @ (decoder.noun_head_weight @ shift)
        moved, _ = decoder(features + shift, captions)
        torch.testing.assert_close(moved, logits, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="copy model"):
        Decoder(DecoderConfig(30, 64, semantic_features=True))


def test_a_copy_models_caption_names_something_and_never_two_nouns_in_a_row():
    """A model that would rather end at once, or say its noun twice, still gives captions of
    the form it learned: a copied noun before <end>, never two nouns side by side."""
    decoder, features = tiny_random_decoder(3, copy=True)
    nouns = {6, 7}
    with torch.no_grad():
        decoder.output.bias[END] = 8.0  # <end> as soon as it is allowed
        decoder.copy_gate.bias.fill_(6.0)  # and nouns, nouns, nouns
    for beam_size in (1, 3):
        hypotheses = beam_search(
            decoder, features, start_id=START, end_id=END, beam_size=beam_size, max_length=6
        )[0]
        for hypothesis in hypotheses:
            ids = hypothesis.token_ids
            assert nouns & set(ids), ids
            assert not any(a in nouns and b in nouns for a, b in itertools.pairwise(ids)), ids


def test_beams_cut_at_the_length_limit_are_no_alternatives_beside_a_finished_caption():
    """A beam still going at max_length is cut there, not ended; the default model, held to 3
    words, finishes "a rocket" while "a large rocket"-like beams are cut. Where nothing ended
    by itself (the astronaut, whose captions need 4 words) the cut beams are all there is."""
    import captioner

    samples = Path(captioner.__file__).parent / "samples"
    model = captioner.Captioner.load(device="cpu")
    rocket, astronaut = model.caption(
        [samples / "rocket.jpg", samples / "astronaut.jpg"],
        DecodeOptions(beam_size=5, max_length=3),
    )
    assert rocket.text == "a rocket"
    assert [len(beam.tokens) for beam in rocket.beams] == [2]
    assert astronaut.beams and all(len(beam.tokens) == 3 for beam in astronaut.beams)


def test_each_alternative_is_another_caption():
    """Two word ids can read alike (the noun tree's root "photo" beside the vocabulary's):
    the deep-field photo's beams held "a photo" twice, at -1.96 and -3.81."""
    import captioner

    samples = sorted((Path(captioner.__file__).parent / "samples").glob("*.jpg"))
    model = captioner.Captioner.load(device="cpu")
    for result in model.caption(samples, DecodeOptions(beam_size=5)):
        texts = [beam.text for beam in result.beams]
        assert len(texts) == len(set(texts)), texts
        assert result.text == texts[0]
        assert [beam.score for beam in result.beams] == sorted(
            (beam.score for beam in result.beams), reverse=True
        )


def test_a_noun_without_a_plural_is_not_said_after_a_count():
    """The noun tree's root has no plural: the deep-field photo's beams held "two photo" and
    "there are two photo" (beam size 10)."""
    import captioner

    photo = Path(captioner.__file__).parent / "samples" / "hubble_deep_field.jpg"
    result = captioner.Captioner.load(device="cpu").caption(photo, beam_size=10)
    assert result.text == "a photo"
    texts = [beam.text.split() for beam in result.beams]
    assert len(texts) >= 5
    assert not any(
        words[i] == "two" and words[i + 1] == "photo"
        for words in texts
        for i in range(len(words) - 1)
    ), texts
