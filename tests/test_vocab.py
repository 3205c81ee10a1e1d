import pytest

from captioner.vocab import SPECIAL_TOKENS, Vocabulary, tokenize


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
