"""Decoding rules: each one's mask on a crafted history, and rows followed wherever they go."""

import math
from types import SimpleNamespace

import pytest
import torch

from captioner.rules import (
    BANNED_IDS,
    CopyGrammar,
    EachNounOnce,
    NoRepeatNgram,
    SpecialTokens,
    apply_rules,
    decoding_rules,
)
from captioner.vocab import Vocabulary

END = Vocabulary.end_id
WORDS = (4, 5)  # "a", "two"
DOG, DOGS, SHEEP = 6, 7, 8  # noun 0 in the singular and plural; noun 1 is both
VOCAB = 9


def copy_decoder(copy_nouns: int = 2) -> SimpleNamespace:
    """What the rules read of a decoder: its config and, for a copy model, its nouns' ids."""
    return SimpleNamespace(
        config=SimpleNamespace(vocab_size=VOCAB, copy_nouns=copy_nouns),
        noun_singular_ids=torch.tensor([DOG, SHEEP]),
        noun_plural_ids=torch.tensor([DOGS, SHEEP]),
    )


def noun_of_word() -> torch.Tensor:
    table = torch.full((VOCAB,), -1)
    table[[DOG, DOGS, SHEEP]] = torch.tensor([0, 0, 1])
    return table


def banned(rule, *captions: list[int]) -> list[set[int]]:
    """The words `rule` bans after each caption (all of one length)."""
    history = torch.tensor(captions, dtype=torch.long).view(len(captions), -1)
    scores = rule(torch.zeros(len(captions), VOCAB), history)
    return [set(torch.isinf(row).nonzero().flatten().tolist()) for row in scores]


def test_special_tokens_are_never_said_and_end_not_before_the_first_word():
    rule = SpecialTokens(VOCAB, BANNED_IDS, END, "cpu")
    assert banned(rule, []) == [{*BANNED_IDS, END}]
    assert banned(rule, [4], [DOG]) == [set(BANNED_IDS)] * 2


@pytest.mark.parametrize(
    "n, caption, expected",
    [
        (2, [4, 5, 4], {5}),  # "4 5" again
        (2, [4, 4], {4}),
        (2, [4, 5, DOG], set()),  # no bigram starts with DOG yet
        (1, [4, DOG], {4, DOG}),
        (3, [4, 5], set()),  # no trigram yet
        (2, [4, END, 4], set()),  # <end> is never banned, so a caption can finish
    ],
)
def test_no_repeat_ngram_bans_the_word_that_would_repeat_an_ngram(n, caption, expected):
    assert banned(NoRepeatNgram(n, END), caption) == [expected]


def test_copy_grammar_ends_only_after_a_noun_and_never_puts_two_nouns_side_by_side():
    rule = CopyGrammar(noun_of_word(), END)
    assert banned(rule, []) == [{END}]
    assert banned(rule, [4], [DOG]) == [{END}, {DOG, DOGS, SHEEP}]
    assert banned(rule, [4, DOG, 5], [5, SHEEP, DOG]) == [set(), {DOG, DOGS, SHEEP}]


def test_each_noun_once_bans_its_singular_and_plural_once_either_is_said():
    rule = EachNounOnce(noun_of_word())
    assert banned(rule, []) == [set()]
    assert banned(rule, [5, DOGS], [4, 4], [SHEEP, 4]) == [{DOG, DOGS}, set(), {SHEEP}]
    assert banned(rule, [4, DOG, 5, SHEEP]) == [{DOG, DOGS, SHEEP}]


def test_decoding_rules_are_the_special_tokens_then_the_copy_rules_then_ngrams():
    kinds = [type(rule) for rule in decoding_rules(copy_decoder(0), end_id=END)]
    assert kinds == [SpecialTokens]
    rules = decoding_rules(copy_decoder(), end_id=END, no_repeat_ngram_size=2)
    assert [type(rule) for rule in rules] == [SpecialTokens, CopyGrammar, EachNounOnce,
                                              NoRepeatNgram]  # fmt: skip
    # Masking leaves the words allowed with the scores they had.
    scores = torch.randn(2, VOCAB)
    history = torch.tensor([[4, DOG, 4], [5, 4, 5]])
    ruled = apply_rules(rules, scores, history)
    assert banned(lambda s, h: apply_rules(rules, s, h), *history.tolist()) == [
        {*BANNED_IDS, DOG, DOGS},  # "dog" said, and "a dog" would come again after "a"
        {*BANNED_IDS, END, 4},  # nothing named yet, and "two a" was said
    ]
    allowed = torch.isfinite(ruled)
    assert torch.equal(ruled[allowed], scores[allowed])
    assert (ruled[~allowed] == -math.inf).all()


@pytest.mark.parametrize("steps", [0, 1, 5])
def test_every_rule_follows_rows_the_search_reorders_repeats_or_drops(steps):
    """Rules keep no state: a row moved with its history gets the mask it had."""
    generator = torch.Generator().manual_seed(steps)
    history = torch.randint(0, VOCAB, (6, steps), generator=generator)
    scores = torch.randn(6, VOCAB, generator=generator)
    rows = torch.tensor([3, 0, 0, 5])  # reordered, row 0 twice, rows 1, 2 and 4 gone
    for rule in decoding_rules(copy_decoder(), end_id=END, no_repeat_ngram_size=1):
        assert torch.equal(rule(scores[rows], history[rows]), rule(scores, history)[rows]), rule
