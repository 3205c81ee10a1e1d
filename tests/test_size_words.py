"""Size words (rules.py's SizeOnlyAfterANoun): a copy model's caption opens with one only on a
photo showing things whose sizes tell them apart, and only "small" on one showing one small
thing (rules.size_openings)."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from captioner.noun_tree import Hedge, NounTree
from captioner.rules import (
    ANY_SIZE,
    NO_SIZE,
    ONLY_SMALL,
    SizeOnlyAfterANoun,
    apply_rules,
    decoding_rules,
    size_openings,
)
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


def banned(rule, caption: list[int], images=None) -> set[int]:
    history = torch.tensor([caption], dtype=torch.long)
    scores = apply_rules([rule], torch.zeros(1, VOCAB), history, images)
    return set(torch.isinf(scores[0]).nonzero().flatten().tolist())


GRID = 49  # the default model's 7 x 7 cells
JAGUAR, LEOPARD, DOG, CUP, ANIMAL = range(5)  # copy columns: 4 table nouns, then a hypernym


def cells(*things: tuple[int, int], columns: int = 4) -> torch.Tensor:
    """(num_pixels, columns) cell distributions: `count` cells sure of each (column, count),
    the rest unsure (spread evenly, no noun above a third)."""
    probs = torch.full((GRID, columns), 1.0 / columns)
    start = 0
    for column, count in things:
        probs[start : start + count] = 0.0
        probs[start : start + count, column] = 1.0
        start += count
    return probs


def test_a_size_word_may_open_where_two_sure_things_differ_in_size():
    images = torch.stack(
        [
            cells((JAGUAR, 24), (CUP, 4)),  # a large jaguar and a small cup
            cells((JAGUAR, 40)),  # one thing filling the frame: "large" says nothing
            cells((JAGUAR, 14), (CUP, 10)),  # two things of about one size
            cells((JAGUAR, 24), (CUP, 1)),  # one sure cell is no thing
            cells((CUP, 5)),  # one thing, small in the frame: "a small cup", never "large"
            cells(),  # nothing the model is sure of
        ]
    )
    assert size_openings(images).tolist() == [
        ANY_SIZE,
        NO_SIZE,
        NO_SIZE,
        NO_SIZE,
        ONLY_SMALL,
        NO_SIZE,
    ]


def test_a_hypernyms_cells_are_the_thing_below_it_not_a_second_thing():
    tree = NounTree(("jaguar", "leopard", "dog", "cup", "animal"), (4, 4, 4, -1, -1))
    hedge = Hedge.build(tree, ["jaguar", "leopard", "dog", "cup"], 0.7)
    assert hedge.words == ("animal",)
    # 24 cells say "jaguar", 6 (its edge, where the classifier hesitates) "animal".
    image = cells((JAGUAR, 24), (ANIMAL, 6), columns=5).unsqueeze(0)
    assert size_openings(image).tolist() == [ANY_SIZE]  # two things without the tree
    assert size_openings(image, hedge).tolist() == [NO_SIZE]
    # A dog beside the jaguar is another thing, though both are animals.
    image = cells((JAGUAR, 24), (ANIMAL, 6), (DOG, 4), columns=5).unsqueeze(0)
    assert size_openings(image, hedge).tolist() == [ANY_SIZE]


def test_no_size_word_before_the_first_noun_and_free_after_it():
    rule = SizeOnlyAfterANoun([LARGE, SMALL], noun_of_word())
    assert banned(rule, []) == {LARGE, SMALL}
    assert banned(rule, [A]) == {LARGE, SMALL}  # "a large ..." is no opening
    assert banned(rule, [THERE, A]) == {LARGE, SMALL}
    assert banned(rule, [A, DOG, AND, A]) == set()  # "a dog and a small cat"
    assert banned(rule, [A, DOGS]) == set()


def test_only_the_rows_of_an_image_whose_sizes_differ_may_open_with_a_size_word():
    openings = torch.tensor([ANY_SIZE, NO_SIZE, ONLY_SMALL])
    rule = SizeOnlyAfterANoun([LARGE, SMALL], noun_of_word(), openings, small_ids=[SMALL])
    history = torch.tensor([[A]] * 6)  # two beams of each image
    scores = apply_rules([rule], torch.zeros(6, VOCAB), history, torch.tensor([0, 1, 2]))
    assert torch.isinf(scores[:, LARGE]).tolist() == [False, False, True, True, True, True]
    assert torch.isinf(scores[:, SMALL]).tolist() == [False, False, True, True, False, False]
    # Image 0 has finished: the rows left are images 1's and 2's.
    assert banned(rule, [A], torch.tensor([1])) == {LARGE, SMALL}
    assert banned(rule, [A], torch.tensor([0])) == set()
    assert banned(rule, [A], torch.tensor([2])) == {LARGE}
    assert banned(rule, [A]) == {LARGE, SMALL}  # a sampler that does not say whose rows


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
    openings = torch.tensor([ANY_SIZE])
    rules = decoding_rules(decoder((LARGE, SMALL)), end_id=END, size_openings=openings)
    assert [r.size_openings for r in rules if isinstance(r, SizeOnlyAfterANoun)] == [openings]


@pytest.fixture(scope="module")
def model():
    from captioner.api import Captioner

    return Captioner.load("default", device="cpu")


def without_the_rule(model, run):
    """What `run()` returns while the model's size words are free to open a caption."""
    kept = model.decoder.size_word_ids
    model.decoder.size_word_ids = ()
    try:
        return run()
    finally:
        model.decoder.size_word_ids = kept


def opens_with_size(text: str) -> bool:
    """ "a large dog", "there is a small cat", "two large dogs": a size word in the opening."""
    return any(word in ("large", "small", "big") for word in text.split()[:4])


def test_the_default_models_captions_of_photos_mostly_open_without_a_size_word(model):
    photos = [SAMPLES / f"{name}.jpg" for name in ("rocket", "coffee", "chelsea", "camera")]
    assert model.decoder.size_word_ids  # the vocabulary's "large", "small", "big"
    texts = [result.text for result in model.caption(photos)]
    # The rocket, thin against the sky, is one thing in a small part of the frame.
    assert [opens_with_size(text) for text in texts] == [True, False, False, False], texts
    # Without the rule, the model opens with "a large" as it learned on composites.
    unruled = without_the_rule(model, lambda: [result.text for result in model.caption(photos)])
    assert sum(opens_with_size(text) for text in unruled) >= 3, unruled


def test_the_search_lets_the_images_whose_sizes_differ_open_with_a_size_word(model, monkeypatch):
    photos = [SAMPLES / f"{name}.jpg" for name in ("rocket", "coffee", "chelsea", "camera")]
    unruled = without_the_rule(model, lambda: [result.text for result in model.caption(photos)])
    # Say that the coffee's and the camera's photos (of the batch) show things of two sizes.
    monkeypatch.setattr(
        "captioner.rules.size_openings",
        lambda noun_probs, hedge: torch.tensor([NO_SIZE, ANY_SIZE, NO_SIZE, ANY_SIZE]),
    )
    texts = [result.text for result in model.caption(photos)]
    assert [texts[1], texts[3]] == [unruled[1], unruled[3]]
    assert not opens_with_size(texts[0]) and not opens_with_size(texts[2]), texts


def test_consensus_samples_follow_each_photos_size_openings(model, monkeypatch):
    from captioner.consensus import sample_captions

    photos = [SAMPLES / f"{name}.jpg" for name in ("coffee", "chelsea", "camera")]
    features = model.encode(photos)
    vocab = model.vocab

    def openings(samples) -> list[int]:
        return [
            # Ids past the vocabulary are hypernyms ("animal"): no size word either way.
            sum(
                opens_with_size(" ".join(vocab.itos[i] if i < len(vocab) else "?" for i in ids))
                for ids in image
            )
            for image in samples
        ]

    def draw():
        return sample_captions(
            model.decoder, features, num_samples=8, start_id=vocab.start_id, end_id=vocab.end_id
        )

    unruled = without_the_rule(model, draw)
    assert all(count > 0 for count in openings(unruled)), openings(unruled)
    # The middle photo shows two things of different sizes: its samples are drawn as without
    # the rule (the same noise), the others open with no size word.
    monkeypatch.setattr(
        "captioner.rules.size_openings",
        lambda noun_probs, hedge: torch.tensor([NO_SIZE, ANY_SIZE, NO_SIZE]),
    )
    ruled = draw()
    assert ruled[1] == unruled[1]
    assert openings(ruled)[0] == openings(ruled)[2] == 0
