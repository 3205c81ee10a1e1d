"""Consensus reranking: samples follow the model, are repeatable per image, and rerank the beams."""

import itertools

import numpy as np
import pytest
import torch
from conftest import PHOTO_CAPTIONS, train_tiny_captioner
from test_beam import (
    BANNED,
    END,
    START,
    follows_copy_rules,
    noise_images,
    rows_counted,
    tiny_random_decoder,
)

from captioner.consensus import consensus_ranking, sample_captions
from captioner.options import DecodeOptions


def exact_caption_probabilities(decoder, features, max_length: int) -> dict[tuple, float]:
    """P(caption) for every caption of the two-word model, banned words masked out as in sampling
    and <end> before the first word; a caption of max_length words ends there for sure."""
    probabilities = {}
    for length in range(1, max_length + 1):
        for words in itertools.product([4, 5], repeat=length):
            ids = torch.tensor([[START, *words, END]])
            with torch.no_grad():
                logits, _ = decoder(features, ids)
            logits[..., list(BANNED)] = -torch.inf
            logits[:, 0, END] = -torch.inf
            log_probs = logits.log_softmax(-1)[0].gather(1, ids[0, 1:, None]).squeeze(1)
            if length == max_length:
                log_probs = log_probs[:-1]
            probabilities[words] = log_probs.sum().exp().item()
    return probabilities


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_samples_follow_the_model_distribution(temperature):
    decoder, features = tiny_random_decoder(5)
    exact = exact_caption_probabilities(decoder, features, max_length=3)
    assert sum(exact.values()) == pytest.approx(1.0, abs=1e-5)
    with torch.no_grad():  # logits times the temperature, which sampling then divides by
        decoder.output.weight.mul_(temperature)
        decoder.output.bias.mul_(temperature)
    drawn = sample_captions(
        decoder,
        features,
        num_samples=4000,
        start_id=START,
        end_id=END,
        banned_ids=BANNED,
        max_length=3,
        temperature=temperature,
    )[0]
    counts = {words: 0 for words in exact}
    for caption in drawn:
        counts[tuple(caption)] += 1
    total_variation = sum(abs(counts[w] / len(drawn) - p) for w, p in exact.items()) / 2
    assert total_variation < 0.04
    assert max(exact.values()) < 0.9  # not a degenerate model that always says the same


def test_no_sample_ends_before_its_first_word():
    """A model whose likeliest first word is <end> still samples captions of a word or more."""
    decoder, features = tiny_random_decoder(5)
    with torch.no_grad():
        decoder.output.bias[END] = 50.0
    drawn = sample_captions(
        decoder, torch.cat([features, features]), num_samples=50, start_id=START, end_id=END,
        banned_ids=BANNED, max_length=3,
    )  # fmt: skip
    assert all(len(caption) == 1 for image in drawn for caption in image)


def draw(
    captioner, features: torch.Tensor, num_samples: int, max_length: int = 20
) -> list[list[list[int]]]:
    """Samples with the special words Captioner.decode uses."""
    vocab = captioner.vocab
    return sample_captions(
        captioner.decoder,
        features,
        num_samples=num_samples,
        start_id=vocab.start_id,
        end_id=vocab.end_id,
        banned_ids=(vocab.pad_id, vocab.start_id, vocab.unk_id),
        max_length=max_length,
    )


def test_an_images_samples_do_not_depend_on_its_batch(tiny_captioner):
    features = tiny_captioner.encode(noise_images(4, seed=2))
    batched = draw(tiny_captioner, features, 12)
    assert draw(tiny_captioner, features[2:3], 12)[0] == batched[2]
    assert len({tuple(c) for c in batched[2]}) > 1  # really samples, not one caption repeated


def test_the_candidate_that_agrees_with_most_samples_ranks_first():
    usual = [1, 2, 3, 4]  # "a red circle left of" ...
    rare = [5, 6, 7, 8, 9]
    close = [1, 2, 3, 9]
    samples = [usual] * 6 + [close] * 3 + [rare] * 2
    assert consensus_ranking([rare, close, usual], samples) == [2, 1, 0]
    # Ties keep the given order: with beam captions, the more probable one.
    assert consensus_ranking([rare, list(rare)], samples) == [0, 1]


def test_decode_with_consensus_puts_the_best_agreeing_beam_first(photos):
    # Half trained, so its beams are close calls that the samples can overturn.
    captioner = train_tiny_captioner(list(photos.values()), list(PHOTO_CAPTIONS.values()), 20)
    features = captioner.encode(list(photos.values()))
    plain = captioner.decode(features, DecodeOptions(beam_size=4))
    reranked = captioner.decode(features, DecodeOptions(beam_size=4, consensus_samples=10))
    moved = 0
    for before, after, drawn in zip(plain, reranked, draw(captioner, features, 10), strict=True):
        candidates = [captioner.vocab.encode(b.text)[1:-1] for b in before.beams]
        order = consensus_ranking(candidates, drawn)
        assert [b.text for b in after.beams] == [before.beams[i].text for i in order]
        np.testing.assert_array_equal(after.alphas, before.beams[order[0]].alphas)
        assert after.text == after.beams[0].text
        moved += after.text != before.text
    assert moved > 0


def test_images_whose_samples_all_ended_leave_the_batch(tiny_captioner, photos):
    # Six and seven words: the tiny model has learned these captions by heart.
    names = ["chelsea", "astronaut", "hubble_deep_field", "coffee"]
    features = tiny_captioner.encode([photos[name] for name in names])
    with rows_counted(tiny_captioner.decoder) as rows_per_step:
        batched = draw(tiny_captioner, features, 6, max_length=40)
    assert rows_per_step[0] == 4 * 6
    assert rows_per_step == sorted(rows_per_step, reverse=True)
    assert rows_per_step[-1] < 4 * 6
    for i, samples in enumerate(batched):
        assert draw(tiny_captioner, features[i : i + 1], 6, max_length=40)[0] == samples


def test_samples_keep_the_rules_beam_search_keeps():
    """A copy model that would rather end at once, or say its noun again and again, samples
    only captions of the form it learned; no n-gram twice when told so."""
    decoder, features = tiny_random_decoder(3, copy=True)
    with torch.no_grad():
        decoder.output.bias[END] = 8.0  # <end> as soon as it is allowed
        decoder.copy_gate.bias.fill_(6.0)  # and nouns, nouns, nouns
    search = {"start_id": START, "end_id": END, "banned_ids": BANNED, "max_length": 6}
    for caption in sample_captions(decoder, features, num_samples=200, **search)[0]:
        assert follows_copy_rules(decoder, tuple(caption), 6), caption
    plain, _ = tiny_random_decoder(5)
    once = sample_captions(plain, features, num_samples=200, no_repeat_ngram_size=1, **search)
    assert all(len(set(caption)) == len(caption) for caption in once[0])


def test_samples_read_the_memory_the_search_read():
    """The API hands the search's memory (the encoder graph's class maps, the people the face
    detector found) to the sampler; a memory whose every cell shows a dog gives dogs."""
    from pathlib import Path

    from captioner import Captioner
    from captioner.vocab import Vocabulary

    model = Captioner.load(device="cpu")
    decoder = model.decoder
    samples = Path(__file__).parent.parent / "captioner" / "samples"
    with torch.inference_mode():
        features = model.encode([samples / "chelsea.jpg"])
        memory = decoder.prepare(features)
        dog = model._copy_nouns().index("dog")
        dogs = torch.full_like(memory.noun_probs, 1e-6)  # never exactly 0, as a softmax's
        dogs[..., dog] = 1.0 - 1e-6 * (dogs.shape[-1] - 1)
        memory = memory._replace(noun_probs=dogs)
        special = {"start_id": Vocabulary.start_id, "end_id": Vocabulary.end_id}
        drawn = sample_captions(decoder, features, num_samples=8, memory=memory, **special)[0]
        own = sample_captions(decoder, features, num_samples=8, **special)[0]
    said = [set(model.vocab.decode(words)) for words in drawn]
    assert all(words & {"dog", "dogs"} for words in said), said
    assert not any({"dog", "dogs"} & set(model.vocab.decode(words)) for words in own)
