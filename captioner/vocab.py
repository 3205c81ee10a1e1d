"""Tokenizer and vocabulary: caption text <-> word ids."""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from captioner.nouns import indefinite_article

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIAL_TOKENS = (PAD, START, END, UNK)

# Most captions are plain words and maybe a final period, which Treebank only splits at spaces,
# unless a word is one it splits in two ("cannot" -> "can", "not"). Such captions skip its 30
# regex passes: at COCO scale those took most of the time to the first training batch.
_PLAIN_CAPTION = re.compile(r"[a-z0-9 ]*\.?")
_TREEBANK_SPLITS = re.compile(r"\b(?:cannot|gimme|gonna|gotta|lemme|wanna)\b")


class _PunctuationTable(dict):
    """str.translate table for normalize_punctuation, filled in as characters are met."""

    _APOSTROPHES = "\u2018\u2019\u201b\u02bc"  # ‘ ’ ‛ and the modifier letter apostrophe
    _HYPHENS = "\u2010\u2011"  # join words, as "-" does

    def __missing__(self, code: int) -> str:
        char = chr(code)
        category = unicodedata.category(char)
        if code < 128:
            value = char
        elif char in self._APOSTROPHES:
            value = "'"
        elif char in self._HYPHENS:
            value = "-"
        elif char == "\u2026":  # …
            value = " ... "
        elif category == "Pd":  # dashes between words: "tux—the"
            value = " -- "
        elif category in ("Pi", "Pf"):  # “ ” « »
            value = '"'
        elif category[0] in "PS":  # other punctuation and symbols (€ © ° ×) separate words
            value = " "
        else:
            value = char
        self[code] = value
        return value


_PUNCTUATION_TABLE = _PunctuationTable()


def normalize_punctuation(text: str) -> str:
    """Write Unicode punctuation the ASCII way, so that every tokenizer splits it alike.

    ’ ‘ become ', “ ” « » become ", … becomes ..., dashes become -- between words and the hyphens
    U+2010/U+2011 become -; any other non-ASCII punctuation or symbol (€ © ° ×) becomes a space.
    Accents are composed (NFC). The vocabulary, training and both metric tokenizers (Java PTB and
    its Python fallback) read captions through this.
    """
    if text.isascii():  # nearly every caption: skip the work
        return text
    return unicodedata.normalize("NFC", text).translate(_PUNCTUATION_TABLE)


@functools.cache
def _treebank():
    from nltk.tokenize import TreebankWordTokenizer  # nltk takes a second to import: only on use

    return TreebankWordTokenizer()


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens; punctuation is dropped because captions are compared without it.

    Contractions stay split the Treebank way ("man's" -> "man", "s"); Unicode punctuation counts
    as its ASCII counterpart (see normalize_punctuation), so "knight’s" splits like "knight's".

    TreebankWordTokenizer needs no nltk data download, unlike word_tokenize's sentence splitter.
    """
    text = normalize_punctuation(text).lower()
    if _PLAIN_CAPTION.fullmatch(text) and not _TREEBANK_SPLITS.search(text):
        return text.rstrip(".").split()
    return _treebank_tokens(text)


def _treebank_tokens(text: str) -> list[str]:
    tokens = (token.strip(string.punctuation) for token in _treebank().tokenize(text))
    return [token for token in tokens if token]


def fix_articles(words: Sequence[str]) -> list[str]:
    """The words with each "a" or "an" made the one the next word's sound takes: "a apple" ->
    "an apple", "an dog" -> "a dog". A decoder writes the article before it chooses the noun,
    and a copy model's noun may be one it never saw after an article."""
    fixed = list(words)
    for i in range(len(fixed) - 1):
        if fixed[i] in ("a", "an"):
            fixed[i] = indefinite_article(fixed[i + 1])
    return fixed


class Vocabulary:
    """Words <-> ids. Ids 0-3 are always `<pad> <start> <end> <unk>` in that order.

    A word may be a phrase of several tokens ("teddy bear"): a decoder that copies nouns says
    a two-word noun as one word, with one attention map. tokenize never makes a token with a
    space, so encoding joins a caption's tokens that spell a phrase of the vocabulary.
    """

    def __init__(self, words: Iterable[str]) -> None:
        self.itos: list[str] = list(SPECIAL_TOKENS)
        self.itos += [w for w in words if w not in SPECIAL_TOKENS]
        self.stoi: dict[str, int] = {word: i for i, word in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("vocabulary words must be unique")
        self._phrases: dict[str, list[tuple[str, ...]]] = {}  # first token -> phrases
        for word in self.itos:
            if " " in word:
                parts = tuple(word.split())
                self._phrases.setdefault(parts[0], []).append(parts)
        for phrases in self._phrases.values():
            phrases.sort(key=len, reverse=True)  # the longest match wins

    pad_id, start_id, end_id, unk_id = range(4)

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 5) -> Vocabulary:
        """Keep words seen at least `min_count` times, most frequent first (ties alphabetical)."""
        return cls.from_tokens((tokenize(caption) for caption in captions), min_count)

    @classmethod
    def from_tokens(cls, captions: Iterable[Sequence[str]], min_count: int = 5) -> Vocabulary:
        """build() from captions already tokenized (with tokenize)."""
        counts = Counter(itertools.chain.from_iterable(captions))
        kept = sorted(
            (w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w)
        )
        return cls(kept)

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.itos == other.itos

    def encode(self, text: str) -> list[int]:
        """`<start> words... <end>` as ids; unknown words map to `<unk>`."""
        return self.encode_tokens(tokenize(text))

    def encode_tokens(self, tokens: Iterable[str]) -> list[int]:
        """encode() of a caption already tokenized (with tokenize)."""
        if self._phrases:
            tokens = self.join_phrases(tokens)
        ids = [self.stoi.get(token, self.unk_id) for token in tokens]
        return [self.start_id, *ids, self.end_id]

    def join_phrases(self, tokens: Iterable[str]) -> list[str]:
        """Tokens with each run that spells a phrase of the vocabulary joined into it:
        ["a", "teddy", "bear"] -> ["a", "teddy bear"] when "teddy bear" is a word."""
        tokens, joined, i = list(tokens), [], 0
        while i < len(tokens):
            for parts in self._phrases.get(tokens[i], ()):
                if tuple(tokens[i : i + len(parts)]) == parts:
                    joined.append(" ".join(parts))
                    i += len(parts)
                    break
            else:
                joined.append(tokens[i])
                i += 1
        return joined

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Word tokens up to the first `<end>`, without special tokens."""
        words = []
        for i in ids:
            if i == self.end_id:
                break
            if i >= len(SPECIAL_TOKENS):
                words.append(self.itos[i])
        return words

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps({"itos": self.itos}, ensure_ascii=False, indent=0) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocabulary:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        itos = data.get("itos") if isinstance(data, dict) else None
        if not isinstance(itos, list) or tuple(itos[:4]) != SPECIAL_TOKENS:
            raise ValueError(
                f"{path}: not a captioner vocabulary (expected 'itos' starting with "
                f"{', '.join(SPECIAL_TOKENS)})"
            )
        return cls(itos[4:])
