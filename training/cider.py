"""CIDEr-D against a fixed corpus of training references: the reward of self-critical training.

The arithmetic is pycocoevalcap's `CiderScorer` (which is CIDEr-D: candidate n-gram weights
clipped by the reference's, a Gaussian length penalty with sigma 6, times 10), with one
difference that matters for training: document frequencies and the log corpus size come from
all training images once, not from the captions being scored. Per image we cache the
references' n-gram counts, so a batch only has to count its candidates' n-grams; the
comparison with the references is a handful of numpy operations over the whole batch.

Captions are sequences of token ids (the vocabulary's, Python ints from 0 to `MAX_TOKEN_ID`
= 55105). Every id is a word, `<end>` included: append it to candidates and references so that
a caption cut off before its end loses the n-grams that close it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

MAX_N = 4  # 1- to 4-grams, as CIDEr-D
SIGMA = 6.0  # standard deviation of the length penalty, in words
# An n-gram is packed into one int64 as base-(MAX_TOKEN_ID + 2) digits (token + 1, so that
# "0" never leads and different orders cannot collide): 4 digits must stay below 2**63.
MAX_TOKEN_ID = int(2 ** (63 / MAX_N)) - 3

Caption = Sequence[int]


def _ngrams(captions: Sequence[Caption]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every 1..MAX_N-gram occurrence: (caption index, order - 1, packed code), each [M]."""
    lengths = np.fromiter((len(c) for c in captions), dtype=np.int64, count=len(captions))
    tokens = np.fromiter(itertools.chain.from_iterable(captions), dtype=np.int64)
    if tokens.size and (tokens.min() < 0 or tokens.max() > MAX_TOKEN_ID):
        raise ValueError(f"token ids must lie in 0..{MAX_TOKEN_ID}")
    caption_of = np.repeat(np.arange(len(captions)), lengths)  # [T]
    position = np.arange(tokens.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    room = lengths[caption_of] - position  # tokens from here to the caption's end
    base = MAX_TOKEN_ID + 2
    indices, orders, codes = [], [], []
    for order in range(MAX_N):
        starts = np.flatnonzero(room > order)
        code = np.zeros(starts.size, dtype=np.int64)
        for offset in range(order + 1):
            code = code * base + tokens[starts + offset] + 1
        indices.append(caption_of[starts])
        orders.append(np.full(starts.size, order))
        codes.append(code)
    return np.concatenate(indices), np.concatenate(orders), np.concatenate(codes)


def _term_frequencies(
    captions: Sequence[Caption],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct n-grams per caption: (caption index, order - 1, code id, count), each [P], and
    the sorted distinct codes the ids index."""
    caption_of, order, code = _ngrams(captions)
    codes, code_id = np.unique(code, return_inverse=True)
    pair, count = np.unique(caption_of * codes.size + code_id, return_counts=True)
    order_of_code = np.zeros(codes.size, dtype=np.int64)
    order_of_code[code_id] = order
    pair_code = pair % codes.size
    return pair // codes.size, order_of_code[pair_code], pair_code, count, codes


def _norms(caption: np.ndarray, order: np.ndarray, weight: np.ndarray, count: int) -> np.ndarray:
    """Euclidean norm of each caption's tf-idf vector per n-gram order: [count, MAX_N]."""
    squares = np.bincount(caption * MAX_N + order, weight**2, minlength=count * MAX_N)
    return np.sqrt(squares).reshape(count, MAX_N)


def _lengths(caption: np.ndarray, order: np.ndarray, tf: np.ndarray, count: int) -> np.ndarray:
    """pycocoevalcap's caption length for the penalty: its number of bigrams (words - 1)."""
    return np.bincount(caption[order == 1], tf[order == 1], minlength=count)


class CiderD:
    """CIDEr-D of candidates against their image's references, with corpus-wide document
    frequencies computed once from `references[image]` (a list of token-id captions)."""

    def __init__(self, references: Sequence[Sequence[Caption]]) -> None:
        image_count = len(references)
        per_image = np.fromiter((len(r) for r in references), dtype=np.int64, count=image_count)
        if image_count == 0 or per_image.min() == 0:
            raise ValueError("every image needs at least one reference caption")
        image_of_ref = np.repeat(np.arange(image_count), per_image)
        slot_of_ref = np.arange(per_image.sum()) - np.repeat(
            np.cumsum(per_image) - per_image, per_image
        )
        ref, order, ngram, tf, self._codes = _term_frequencies(
            [c for refs in references for c in refs]
        )
        if self._codes.size == 0:
            raise ValueError("the reference captions have no words")

        # Every distinct reference n-gram gets an id; one row per (image, n-gram) holds its
        # count in each of the image's references, keyed image * K + n-gram id and sorted, so
        # that a batch finds its rows by binary search. df counts an n-gram's images (rows).
        self._keys, row = np.unique(
            image_of_ref[ref] * self._codes.size + ngram, return_inverse=True
        )
        document_frequency = np.bincount(self._keys % self._codes.size, minlength=self._codes.size)
        self._log_images = np.log(float(image_count))
        self._idf = self._log_images - np.log(np.maximum(1.0, document_frequency))  # [K]
        # uint16: a caption would need 65536 copies of an n-gram to overflow its count.
        self._counts = np.zeros((self._keys.size, per_image.max()), dtype=np.uint16)  # [E, R]
        self._counts[row, slot_of_ref[ref]] = tf
        refs_total = len(image_of_ref)
        ref_norms = _norms(ref, order, tf * self._idf[ngram], refs_total)  # [refs, MAX_N]
        ref_lengths = _lengths(ref, order, tf, refs_total)  # [refs]
        self._ref_norms = np.zeros((image_count, per_image.max(), MAX_N))  # [I, R, MAX_N]
        self._ref_norms[image_of_ref, slot_of_ref] = ref_norms
        self._ref_lengths = np.zeros((image_count, per_image.max()))  # [I, R]
        self._ref_lengths[image_of_ref, slot_of_ref] = ref_lengths
        self._ref_present = np.zeros((image_count, per_image.max()), dtype=bool)  # [I, R]
        self._ref_present[image_of_ref, slot_of_ref] = True
        self._per_image = per_image

    def scores(self, image_indices: Sequence[int], candidates: Sequence[Caption]) -> np.ndarray:
        """CIDEr-D of candidates[i] against the references of image image_indices[i]: [C]."""
        if len(image_indices) != len(candidates):
            raise ValueError("one image index per candidate")
        image = np.asarray(image_indices, dtype=np.int64)  # [C]
        count = len(candidates)
        if count == 0:
            return np.zeros(0)
        cand, order, code_id, tf, codes = _term_frequencies(candidates)  # [P] each

        # An n-gram no training image uses has df 0, hence the full log(images) weight: it
        # lengthens the candidate's vector without matching anything, as in pycocoevalcap.
        # Looked up once per distinct n-gram of the batch, in order: faster than per pair.
        position = np.minimum(np.searchsorted(self._codes, codes), self._codes.size - 1)
        known = (self._codes[position] == codes)[code_id]
        position = position[code_id]
        idf = np.where(known, self._idf[position], self._log_images)
        weight = tf * idf  # [P]
        norms = _norms(cand, order, weight, count)  # [C, MAX_N]
        lengths = _lengths(cand, order, tf, count)  # [C]

        key = image[cand] * self._codes.size + position
        row = np.minimum(np.searchsorted(self._keys, key), self._keys.size - 1)
        shared = known & (self._keys[row] == key)  # the image's references use this n-gram
        ref_weight = self._counts[row[shared]] * idf[shared, None]  # [S, R]
        # Clipping: a candidate repeating an n-gram gains no more than the reference holds.
        overlap = np.minimum(weight[shared, None], ref_weight) * ref_weight  # [S, R]
        dot = np.zeros((count * MAX_N, self._counts.shape[1]))
        np.add.at(dot, cand[shared] * MAX_N + order[shared], overlap)
        dot = dot.reshape(count, MAX_N, -1).transpose(0, 2, 1)  # [C, R, MAX_N]

        ref_norms = self._ref_norms[image]  # [C, R, MAX_N]
        denominator = norms[:, None, :] * ref_norms
        cosine = np.divide(dot, denominator, out=dot.copy(), where=denominator != 0)
        delta = lengths[:, None] - self._ref_lengths[image]  # [C, R]
        penalty = np.exp(-(delta**2) / (2 * SIGMA**2)) * self._ref_present[image]
        per_ref = cosine.mean(axis=2) * penalty  # [C, R]
        return 10.0 * per_ref.sum(axis=1) / self._per_image[image]
