"""Size words (rules.py's SizeOnlyAfterANoun): never the opening of a copy model's caption."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from captioner.rules import SizeOnlyAfterANoun, decoding_rules
from captioner.vocab import Vocabulary

END = Vocabulary.end_id
A, THERE, LARGE, SMALL, AND = 4, 5, 6, 7, 8
DOG, DOGS, CAT = 9, 10, 11
VOCAB = 12
SAMPLES = Path(__file__).parent.parent / "captioner" / "samples"


def noun_of_word() -> torch.Tensor:
    table = torch.full((VOCAB,), -1)
    table[[DOG, DOGS, CAT]] = torch.tensor([0, 0, 1])
    return table


def banned(rule, caption: list[int]) -> set[int]:
    scores = rule(torch.zeros(1, VOCAB), torch.tensor([caption], dtype=torch.long))
    return set(torch.isinf(scores[0]).nonzero().flatten().tolist())


def test_no_size_word_before_the_first_noun_and_free_after_it():
    rule = SizeOnlyAfterANoun([LARGE, SMALL], noun_of_word())
    assert banned(rule, []) == {LARGE, SMALL}
    assert banned(rule, [A]) == {LARGE, SMALL}  # "a large ..." is no opening
    assert banned(rule, [THERE, A]) == {LARGE, SMALL}
    assert banned(rule, [A, DOG, AND, A]) == set()  # "a dog and a small cat"
    assert banned(rule, [A, DOGS]) == set()


def decoder(size_word_ids=()) -> SimpleNamespace:
    return SimpleNamespace(
        config=SimpleNamespace(vocab_size=VOCAB, copy_nouns=2, end_after_noun=True),
        noun_singular_ids=torch.tensor([DOG, CAT]),
        noun_plural_ids=torch.tensor([DOGS, CAT]),
        size_word_ids=size_word_ids,
    )


def test_a_copy_model_with_size_words_gets_the_rule():
    assert not any(isinstance(r, SizeOnlyAfterANoun) for r in decoding_rules(decoder(), end_id=END))
    rules = decoding_rules(decoder((LARGE, SMALL)), end_id=END)
    assert any(isinstance(r, SizeOnlyAfterANoun) for r in rules)


@pytest.fixture(scope="module")
def model():
    from captioner.api import Captioner

    return Captioner.load("default", device="cpu")


def opens_with_size(text: str) -> bool:
    """ "a large dog", "there is a small cat", "two large dogs": a size word in the opening."""
    return any(word in ("large", "small", "big") for word in text.split()[:4])


def test_the_default_models_captions_of_photos_open_without_a_size_word(model):
    photos = [SAMPLES / f"{name}.jpg" for name in ("rocket", "coffee", "chelsea", "camera")]
    assert model.decoder.size_word_ids  # the vocabulary's "large", "small", "big"
    texts = [result.text for result in model.caption(photos)]
    assert not any(opens_with_size(text) for text in texts), texts
    # Without the rule, the model opens with "a large" as it learned on composites.
    kept = model.decoder.size_word_ids
    model.decoder.size_word_ids = ()
    try:
        unruled = [result.text for result in model.caption(photos)]
    finally:
        model.decoder.size_word_ids = kept
    assert sum(opens_with_size(text) for text in unruled) >= 2, unruled
