import copy
import random

import numpy as np
import pytest

from captioner.beam import Hypothesis
from captioner.vocab import SPECIAL_TOKENS, Vocabulary, _treebank_tokens, fix_articles, tokenize


def test_tokenize_lowercases_and_drops_punctuation():
    assert tokenize("A Dog, running on the beach!") == ["a", "dog", "running", "on", "the", "beach"]
    assert tokenize("Two dogs. A man's hat") == ["two", "dogs", "a", "man", "s", "hat"]


def test_build_keeps_frequent_words_in_order():
    vocab = Vocabulary.build(["a red circle", "a blue circle", "a red star"], min_count=2)
    assert vocab.itos == [*SPECIAL_TOKENS, "a", "circle", "red"]
    assert vocab.encode("a green circle") == [1, 4, 3, 5, 2]
    assert vocab.decode([4, 6, 5, 2, 4]) == ["a", "red", "circle"]


def test_save_load_round_trip_and_bad_file(tmp_path):
    vocab = Vocabulary.build(["un café très chaud"], min_count=1)
    vocab.save(tmp_path / "vocab.json")
    assert Vocabulary.load(tmp_path / "vocab.json") == vocab
    (tmp_path / "bad.json").write_text('{"words": ["a"]}')
    with pytest.raises(ValueError, match="bad.json: not a captioner vocabulary"):
        Vocabulary.load(tmp_path / "bad.json")


@pytest.mark.parametrize(
    ("caption", "tokens"),
    [
        ("Tux—the Linux mascot!", ["tux", "the", "linux", "mascot"]),
        ("A “Fuji” apple.", ["a", "fuji", "apple"]),
        ("A knight’s helmet.", ["a", "knight", "s", "helmet"]),  # as "knight's"
        ("It’s one—or two… for €5.", ["it", "s", "one", "or", "two", "for", "5"]),
        ("A dog – running ‘fast’ «here».", ["a", "dog", "running", "fast", "here"]),
        ("A double‐decker bus", ["a", "double-decker", "bus"]),  # U+2010 is a hyphen
        ("¿Qué? 25°C © 2×4", ["qué", "25", "c", "2", "4"]),
        ("Un cafe\u0301", ["un", "café"]),  # a decomposed accent is the same word
    ],
)
def test_tokenize_treats_unicode_punctuation_like_ascii(caption, tokens):
    assert tokenize(caption) == tokens


def test_vocabulary_collects_no_punctuation_glued_to_words():
    vocab = Vocabulary.build(
        ["It’s one—or two… for €5.", "It's one or two", "A “Fuji” apple — for 5€"], min_count=1
    )
    assert sorted(vocab.itos[4:]) == [
        "5",
        "a",
        "apple",
        "for",
        "fuji",
        "it",
        "one",
        "or",
        "s",
        "two",
    ]


def test_plain_captions_tokenize_as_treebank_does():
    # tokenize() skips the Treebank tokenizer on plain captions; the result must not change
    words = ["a", "dog", "2", "3rd", "cannot", "gonna", "wanna", "wannabe", "gimme", "lemme"]
    words += ["gotta", "cannotx", "can", "not", "x1"]
    rng = random.Random(0)
    captions = [".", "", "a", "a.", "a dog.", "a  dog .", "wanna.", "a dog. ", "a dog.."]
    for _ in range(2000):
        text = " ".join(rng.choices(words, k=rng.randint(1, 6))) + rng.choice(["", ".", " ."])
        captions.append(text.capitalize() if rng.random() < 0.5 else text)
    for caption in captions:
        assert tokenize(caption) == _treebank_tokens(caption.lower()), caption


def test_a_phrase_is_one_word_and_captions_that_spell_it_are_joined(tmp_path):
    """A copy model says "teddy bear" as one word; training captions must read it as one."""
    vocab = Vocabulary(["a", "bear", "dog", "hot dog", "teddy bear", "teddy bears", "on"])
    ids = vocab.encode("A teddy bear on a hot dog, a bear, a teddy")
    words = ["a", "teddy bear", "on", "a", "hot dog", "a", "bear", "a", "<unk>"]
    assert ids == [vocab.start_id, *(vocab.stoi[w] for w in words), vocab.end_id]
    assert vocab.decode(ids[1:]) == [w for w in words if w != "<unk>"]
    assert vocab.encode("two teddy bears") == [1, 3, vocab.stoi["teddy bears"], 2]
    vocab.save(tmp_path / "vocab.json")
    assert Vocabulary.load(tmp_path / "vocab.json").encode("a teddy bear") == vocab.encode(
        "a teddy bear"
    )


@pytest.mark.parametrize(
    ("words", "fixed"),
    [
        ("a apple on a table", "an apple on a table"),
        ("an dog and an umbrella", "a dog and an umbrella"),
        ("a hour with a unicorn", "an hour with a unicorn"),
        ("a european car and an", "a european car and an"),  # nothing follows the last
    ],
)
def test_articles_agree_with_the_next_word(words, fixed):
    assert fix_articles(words.split()) == fixed.split()
    assert fix_articles(["an", "teddy bear"]) == ["a", "teddy bear"]  # a phrase's first word


def test_captions_get_the_article_their_copied_noun_takes(tiny_captioner):
    captioner = copy.copy(tiny_captioner)
    captioner.vocab = Vocabulary([*tiny_captioner.vocab.itos[4:-1], "apple"])  # the last word
    apple = captioner.vocab.stoi["apple"]
    hypothesis = Hypothesis([captioner.vocab.stoi["a"], apple], -1.0, -1.0, np.zeros((2, 49)),
                            np.zeros(2))  # fmt: skip
    result = captioner._to_result(hypothesis, captioner._words, (7, 7), (None, None, None))
    assert result.text == "an apple"
    assert result.tokens == ["an", "apple"]
