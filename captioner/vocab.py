"""Tokenizer and vocabulary: caption text <-> word ids."""

from __future__ import annotations

import functools
import json
import os
import string
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIAL_TOKENS = (PAD, START, END, UNK)


@functools.cache
def _treebank():
    from nltk.tokenize import TreebankWordTokenizer  # nltk takes a second to import: only on use

    return TreebankWordTokenizer()


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens; punctuation is dropped because captions are compared without it.

    Contractions stay split the Treebank way ("man's" -> "man", "s").

    TreebankWordTokenizer needs no nltk data download, unlike word_tokenize's sentence splitter.
    """
    tokens = (token.strip(string.punctuation) for token in _treebank().tokenize(text.lower()))
    return [token for token in tokens if token]


class Vocabulary:
    """Words <-> ids. Ids 0-3 are always `<pad> <start> <end> <unk>` in that order."""

    def __init__(self, words: Iterable[str]) -> None:
        self.itos: list[str] = list(SPECIAL_TOKENS)
        self.itos += [w for w in words if w not in SPECIAL_TOKENS]
        self.stoi: dict[str, int] = {word: i for i, word in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("vocabulary words must be unique")

    pad_id, start_id, end_id, unk_id = range(4)

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 5) -> Vocabulary:
        """Keep words seen at least `min_count` times, most frequent first (ties alphabetical)."""
        counts = Counter(token for caption in captions for token in tokenize(caption))
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
        ids = [self.stoi.get(token, self.unk_id) for token in tokenize(text)]
        return [self.start_id, *ids, self.end_id]

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
