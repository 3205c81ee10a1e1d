"""CiderD equals pycocoevalcap's CIDEr-D and the paper's formula, with corpus document
frequencies, and rewards what self-critical training needs it to reward."""

import math
import random
from collections import Counter

import numpy as np
import pytest
from pycocoevalcap.cider.cider import Cider

from training.cider import MAX_TOKEN_ID, CiderD

END = 0  # the id the tests use for <end>


def random_corpus(seed: int, images: int = 30) -> list[list[list[int]]]:
    """References over a small vocabulary (so n-grams repeat across images), 1 to 6 per image,
    0 to 12 words each, every one closed by <end>."""
    rng = random.Random(seed)
    return [
        [
            [rng.randint(1, 12) for _ in range(rng.randint(0, 12))] + [END]
            for _ in range(rng.randint(1, 6))
        ]
        for _ in range(images)
    ]


def candidates_for(corpus: list[list[list[int]]], seed: int) -> list[list[int]]:
    """One candidate per image: a copy of a reference, a truncated or shuffled one, a random
    caption, one repeating a word, or an empty one."""
    rng = random.Random(seed)
    candidates = []
    for references in corpus:
        reference = list(rng.choice(references))
        kind = rng.randrange(6)
        if kind == 1:
            reference = reference[: rng.randint(0, len(reference))]
        elif kind == 2:
            rng.shuffle(reference)
        elif kind == 3:
            reference = [rng.randint(1, 14) for _ in range(rng.randint(1, 15))]
        elif kind == 4:
            reference = [reference[0]] * rng.randint(2, 9)
        elif kind == 5:
            reference = []
        candidates.append(reference)
    return candidates


def pycocoevalcap_cider(corpus: list[list[list[int]]], candidates: list[list[int]]) -> np.ndarray:
    """pycocoevalcap's CIDEr-D, one candidate for every image of the corpus, so that its
    document frequencies (from the scored images' references) are the corpus's."""

    def words(caption):
        return " ".join(map(str, caption))

    references = {i: [words(r) for r in refs] for i, refs in enumerate(corpus)}
    tests = {i: [words(c)] for i, c in enumerate(candidates)}
    return Cider().compute_score(references, tests)[1]


def formula_cider(
    corpus: list[list[list[int]]],
    image: int,
    candidate: list[int],
    clip: bool = True,
    sigma: float | None = 6.0,
) -> float:
    """Vedantam et al. 2015 written out: tf-idf n-gram vectors g = tf * log(N / max(1, df)),
    CIDEr-D_n = 10 / m * sum_refs exp(-(l_c - l_s)^2 / 2 sigma^2) * <min(g_c, g_s), g_s> /
    (|g_c| |g_s|), averaged over n = 1..4. `clip=False` and `sigma=None` switch off what
    CIDEr-D adds to CIDEr (the x10 stays)."""

    def grams(caption, n):
        return Counter(tuple(caption[i : i + n]) for i in range(len(caption) - n + 1))

    document_frequency = Counter(
        gram
        for refs in corpus
        for gram in {g for r in refs for n in range(1, 5) for g in grams(r, n)}
    )

    def vector(caption, n):
        return {
            g: tf * math.log(len(corpus) / max(1, document_frequency[g]))
            for g, tf in grams(caption, n).items()
        }

    def norm(v):
        return math.sqrt(sum(x * x for x in v.values()))

    total = 0.0
    for reference in corpus[image]:
        penalty = (
            1.0
            if sigma is None
            else math.exp(-((len(candidate) - len(reference)) ** 2) / (2 * sigma**2))
        )
        for n in range(1, 5):
            c, r = vector(candidate, n), vector(reference, n)
            dot = sum((min(w, r.get(g, 0.0)) if clip else w) * r.get(g, 0.0) for g, w in c.items())
            if norm(c) and norm(r):
                total += penalty * dot / (norm(c) * norm(r)) / 4
    return 10.0 * total / len(corpus[image])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_pycocoevalcap_and_the_formula(seed):
    corpus = random_corpus(seed)
    scorer = CiderD(corpus)
    # Several candidates per image in one batch, images in a shuffled order with repeats.
    rounds = [candidates_for(corpus, seed * 10 + k) for k in range(3)]
    images = [i for _ in rounds for i in range(len(corpus))]
    order = random.Random(seed).sample(range(len(images)), len(images))
    candidates = [c for batch in rounds for c in batch]
    ours = scorer.scores([images[j] for j in order], [candidates[j] for j in order])

    expected_coco = np.concatenate([pycocoevalcap_cider(corpus, batch) for batch in rounds])
    np.testing.assert_allclose(ours, expected_coco[order], rtol=0, atol=1e-6)
    expected_formula = [
        formula_cider(corpus, i, c) for i, c in zip(images, candidates, strict=True)
    ]
    np.testing.assert_allclose(ours, np.array(expected_formula)[order], rtol=0, atol=1e-6)
    assert ours.max() > 1.0  # copies of references are among them: the comparison is not 0 == 0


def test_clipping_and_length_penalty_are_what_cider_d_adds():
    corpus = random_corpus(3)
    scorer = CiderD(corpus)
    reference = next(r for r in corpus[0] if len(r) > 3)
    repeated = [reference[0]] * 6  # a reference word said over and over
    longer = reference[:-1] + [5, 6, 7, END]  # a reference padded with more words
    ours = scorer.scores([0, 0], [repeated, longer])

    assert ours[0] == pytest.approx(formula_cider(corpus, 0, repeated), abs=1e-9)
    assert ours[0] < formula_cider(corpus, 0, repeated, clip=False) - 1e-3
    assert ours[1] == pytest.approx(formula_cider(corpus, 0, longer), abs=1e-9)
    assert ours[1] < formula_cider(corpus, 0, longer, sigma=None) - 1e-3


def test_a_reference_beats_its_shuffled_words():
    corpus = random_corpus(4)
    scorer = CiderD(corpus)
    rng = random.Random(4)
    images, candidates = [], []
    for image, references in enumerate(corpus):
        reference = max(references, key=len)
        if len(set(reference)) < 4:
            continue
        shuffled = list(reference)
        while shuffled == reference:
            rng.shuffle(shuffled)
        images += [image, image]
        candidates += [reference, shuffled]
    scores = scorer.scores(images, candidates).reshape(-1, 2)
    assert len(scores) >= 5
    assert (scores[:, 0] > scores[:, 1]).all()


def test_end_token_counts_so_a_truncated_caption_scores_lower():
    corpus = random_corpus(5)
    scorer = CiderD(corpus)
    images = [i for i, refs in enumerate(corpus) for r in refs if len(r) > 2]
    whole = [r for refs in corpus for r in refs if len(r) > 2]
    without_end = [r[:-1] for r in whole]  # what a caption cut at the length limit looks like
    assert (scorer.scores(images, whole) > scorer.scores(images, without_end)).all()


def test_empty_candidates_score_zero():
    scorer = CiderD(random_corpus(6))
    assert scorer.scores([0, 1], [[], []]).tolist() == [0.0, 0.0]
    assert scorer.scores([0, 1], [[], [1, 2, END]])[0] == 0.0
    assert scorer.scores([], []).shape == (0,)


def test_unseen_words_score_zero_and_token_ids_are_checked():
    corpus = random_corpus(7)
    scorer = CiderD(corpus)
    assert scorer.scores([0], [[100, 101, 102]]).tolist() == [0.0]
    with pytest.raises(ValueError, match="token ids"):
        scorer.scores([0], [[MAX_TOKEN_ID + 1]])
    with pytest.raises(ValueError, match="one image index per candidate"):
        scorer.scores([0, 1], [[1]])
    with pytest.raises(ValueError, match="at least one reference"):
        CiderD([[[1, END]], []])
    with pytest.raises(ValueError, match="no words"):
        CiderD([[[]], [[]]])
