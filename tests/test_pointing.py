"""Where a copied noun was read: the posterior p(cell | word) from the attention and the copy
memory, and the maps and kinds a result carries (issue #25)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from captioner import Captioner
from captioner.pointing import ATTENTION, READ, map_label, word_maps
from tests.test_taught import series

# Three nouns; word ids: singulars 10, 11, 12, plurals 20, 21 and 12 ("sheep" is its own plural).
SINGULAR, PLURAL = [10, 11, 12], [20, 21, 12]


def constructed_memory() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four cells: noun 1 ("dog", id 11) fills cell 2, the others show other nouns."""
    noun_probs = np.array(
        [
            [0.80, 0.10, 0.10],
            [0.70, 0.10, 0.20],
            [0.05, 0.90, 0.05],
            [0.10, 0.10, 0.80],
        ]
    )  # (cells, nouns)
    ids = torch.tensor(SINGULAR + PLURAL)
    words, slots = torch.unique(ids, return_inverse=True)  # as CopyHead.prepare makes them
    return noun_probs, words.numpy(), slots.numpy()


def test_a_copied_noun_peaks_on_the_cell_that_holds_it_where_attention_peaks_elsewhere():
    alpha = np.array([0.5, 0.2, 0.2, 0.1])  # the attention before "dog" looks at cell 0
    maps, kinds = word_maps([4, 11], np.stack([alpha, alpha]), *constructed_memory())
    assert kinds == [ATTENTION, READ]
    np.testing.assert_array_equal(maps[0], alpha)  # not a copied word: its attention as it is
    assert int(maps[1].argmax()) == 2
    expected = alpha * np.array([0.10, 0.10, 0.90, 0.10])
    np.testing.assert_allclose(maps[1], expected / expected.sum())


def test_a_plural_reads_its_nouns_column_and_a_shared_word_is_read_once():
    alpha = np.full(4, 0.25)
    noun_probs, words, slots = constructed_memory()
    maps, kinds = word_maps([21, 12], np.stack([alpha, alpha]), noun_probs, words, slots)
    assert kinds == [READ, READ]
    np.testing.assert_allclose(maps[0], noun_probs[:, 1] / noun_probs[:, 1].sum())  # "dogs"
    np.testing.assert_allclose(maps[1], noun_probs[:, 2] / noun_probs[:, 2].sum())  # "sheep"


def test_without_a_copy_path_every_map_is_the_attention():
    alphas = np.random.default_rng(0).dirichlet(np.ones(4), size=3)
    maps, kinds = word_maps([4, 11, 5], alphas, None, None, None)
    assert kinds == [ATTENTION] * 3
    np.testing.assert_array_equal(maps, alphas)


def test_labels_say_which_map_is_shown():
    assert map_label("dog", READ) == "where “dog” was read"
    assert map_label("on", ATTENTION) == "attention before “on”"


@pytest.fixture(scope="module")
def model() -> Captioner:
    return Captioner.load("default", device="cpu", backend="torch")


def test_a_results_copied_noun_shows_where_it_was_read_and_other_words_their_attention(
    model, photos
):
    result = model.caption(photos["chelsea"])
    assert "cat" in result.tokens
    assert len(result.map_kinds) == len(result.tokens) == len(result.maps)
    features = model.encode(photos["chelsea"])
    memory = model.decoder.prepare(features)
    # The noun's column, found through the table's word ids rather than pointing.py's lookup.
    column = int((model.decoder.noun_singular_ids == model.vocab.stoi["cat"]).nonzero()[0, 0])
    p_cat = memory.noun_probs[0, :, column].numpy().reshape(result.alphas.shape[1:])
    for beam in result.beams:
        for t, token in enumerate(beam.tokens):
            if token == "cat":
                assert beam.map_kinds[t] == READ
                expected = beam.alphas[t] * p_cat
                np.testing.assert_allclose(beam.maps[t], expected / expected.sum(), rtol=1e-4)
                assert not np.allclose(beam.maps[t], beam.alphas[t])
            elif token in {"a", "an", "two", "large", "small", "and"}:
                assert beam.map_kinds[t] == ATTENTION
                np.testing.assert_array_equal(beam.maps[t], beam.alphas[t])


def test_a_taught_word_is_a_copied_noun_too(model, photos):
    rocket = series(photos["rocket"])
    try:
        model.teach("widget", rocket[:3])
        result = model.caption(rocket[3])
        assert "widget" in result.tokens
        assert result.map_kinds[result.tokens.index("widget")] == READ
    finally:
        model.forget("widget")


def test_a_failed_or_hand_made_result_keeps_working_without_maps():
    from captioner.results import CaptionResult

    alphas = np.full((2, 3, 3), 1 / 9)
    result = CaptionResult("a cat", ["a", "cat"], -1.0, -1.0, alphas, np.zeros(2))
    assert result.maps is alphas and result.map_kinds == [ATTENTION, ATTENTION]
    assert CaptionResult.failed("x.jpg", "not an image").map_kinds == []
