"""Where a caption's word was read: the map each word of a result shows.

A step's attention alpha is where the decoder looked before it chose its word: for "dog" in "a
large dog", the map made while the state had read only "a large", the same for every beam
sharing those words. A copy model says a noun by reading it off the cells it attends to,
p_copy(w) = sum_cell alpha(cell) p(w | cell) (copy_head.py), so where the noun was read is the
posterior over cells

    p(cell | w) = alpha(cell) p(w | cell) / sum_cell' alpha(cell') p(w | cell')

whose peak is on the thing named even where alpha peaks elsewhere. A plural reads the same
noun's column. Words that are not copied keep their attention as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

READ = "read"  # a copied noun: where it was read, p(cell | word)
ATTENTION = "attention"  # any other word: the step's attention as it is
MAP_KINDS = (READ, ATTENTION)


def word_columns(
    word_ids: Sequence[int], copy_words: np.ndarray, copy_slots: np.ndarray
) -> list[np.ndarray]:
    """Per word id, the copy nouns (columns of the copy memory's noun_probs) that say it:
    empty for a word the copy path never says. copy_words (distinct words,) sorted, as
    torch.unique returns them; copy_slots (2 * copy_nouns,): every singular, then every plural,
    as indices into copy_words."""
    nouns = len(copy_slots) // 2
    columns = []
    for word in word_ids:
        at = int(np.searchsorted(copy_words, word))
        if at < len(copy_words) and copy_words[at] == word:
            columns.append(np.unique(np.nonzero(copy_slots == at)[0] % nouns))
        else:
            columns.append(np.zeros(0, dtype=np.int64))
    return columns


def read_map(alpha: np.ndarray, noun_probs: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """p(cell | word) from the step's attention alpha (num_pixels,) and each cell's noun
    distribution noun_probs (num_pixels, copy_nouns), over the word's noun columns."""
    likelihood = noun_probs[:, columns].sum(-1)  # (num_pixels,) p(word | cell)
    joint = alpha * likelihood
    total = joint.sum()
    return joint / total if total > 0 else alpha


def word_maps(
    word_ids: Sequence[int],
    alphas: np.ndarray,
    noun_probs: np.ndarray | None,
    copy_words: np.ndarray | None,
    copy_slots: np.ndarray | None,
) -> tuple[np.ndarray, list[str]]:
    """Each word's map (len(word_ids), num_pixels) and its kind (READ or ATTENTION).

    alphas (len(word_ids), num_pixels): the steps' attention; noun_probs (num_pixels,
    copy_nouns), copy_words and copy_slots: one image's copy memory (None for a model
    without a copy path: every map is its attention). A word the copy path can say is a
    copied noun: a copy model says those words only by copying them (forced copy)."""
    alphas = np.asarray(alphas, dtype=np.float64)
    maps, kinds = alphas.copy(), [ATTENTION] * len(word_ids)
    if noun_probs is None or copy_words is None or copy_slots is None:
        return maps, kinds
    noun_probs = np.asarray(noun_probs, dtype=np.float64)
    for t, columns in enumerate(word_columns(word_ids, copy_words, copy_slots)):
        if len(columns):
            maps[t], kinds[t] = read_map(alphas[t], noun_probs, columns), READ
    return maps, kinds


def map_label(word: str, kind: str) -> str:
    """What a word's map shows, in a few words for the app and the figures."""
    if kind == READ:
        return f"where “{word}” was read"
    return f"attention before “{word}”"
