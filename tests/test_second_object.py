"""The things the model is sure of, named (rules.py's NameTheSureThings): a copy model's caption
ends only once it names them ("a rocket and an oil rig", not "a rocket" alone), and captions of
photos with nothing more to name stay as they were."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from captioner import rules
from captioner.noun_tree import Hedge, NounTree
from captioner.options import DecodeOptions
from captioner.rules import NameTheSureThings, apply_rules, decoding_rules, things_to_name
from captioner.vocab import Vocabulary
from tests.test_size_words import cells as size_cells

SAMPLES = Path(__file__).parent.parent / "captioner" / "samples"
GRID = 49  # the default model's 7 x 7 cells
JAGUAR, LEOPARD, DOG, CUP, ANIMAL, PHOTO = range(6)  # copy columns: 4 nouns, 2 hypernyms
END = Vocabulary.end_id
A, AND = 4, 5
W_JAGUAR, W_DOG, W_CUP, W_ANIMAL = 6, 7, 8, 9
VOCAB = 10


def cells(*things: tuple[int, int]) -> torch.Tensor:
    """(num_pixels, 6) cell distributions: `count` cells sure of each (column, count)."""
    return size_cells(*things, columns=6)


def hedge() -> Hedge:
    tree = NounTree(("jaguar", "leopard", "dog", "cup", "animal"), (4, 4, 4, -1, -1))
    return Hedge.build(tree, ["jaguar", "leopard", "dog", "cup"], 0.7, root="photo")


@pytest.fixture
def name_two(monkeypatch):
    monkeypatch.setattr(rules, "SECOND_THING", 3)


def test_things_to_name_are_the_two_largest_sure_things(name_two):
    images = torch.stack(
        [
            cells((JAGUAR, 20), (CUP, 4), (DOG, 3)),  # a jaguar and a cup; the dog is third
            cells((JAGUAR, 20), (CUP, 2)),  # the cup is sure, but below SECOND_THING cells
            cells((CUP, 1)),  # one sure cell is no thing
            cells(),  # nothing the model is sure of
            cells((PHOTO, GRID)),  # sure of nothing below the root: "a photo" names no thing
        ]
    )
    to_name = things_to_name(images, hedge(), 2)
    named_by = [[row.nonzero().flatten().tolist() for row in image] for image in to_name]
    # A thing is named by its noun and the hypernyms above it ("an animal"), never "a photo".
    assert named_by == [
        [[JAGUAR, ANIMAL], [CUP]],
        [[JAGUAR, ANIMAL], []],
        [[], []],
        [[], []],
        [[], []],
    ]


def test_a_hypernyms_thing_is_named_by_the_nouns_below_it(name_two):
    to_name = things_to_name(cells((ANIMAL, 20), (CUP, 4)).unsqueeze(0), hedge(), 2)
    assert to_name[0, 0].nonzero().flatten().tolist() == [JAGUAR, LEOPARD, DOG, ANIMAL]


def test_off_names_nothing():
    assert things_to_name(cells((JAGUAR, 20), (CUP, 4)).unsqueeze(0), hedge()) is None
    assert DecodeOptions().name_things == 0


def noun_of_word() -> torch.Tensor:
    table = torch.full((VOCAB,), -1)
    table[[W_JAGUAR, W_DOG, W_CUP, W_ANIMAL]] = torch.tensor([JAGUAR, DOG, CUP, ANIMAL])
    return table


def ends(rule, captions: list[list[int]], images: torch.Tensor | None) -> list[bool]:
    """Whether each caption (one row each) may end now."""
    history = torch.tensor(captions, dtype=torch.long)
    scores = apply_rules([rule], torch.zeros(len(captions), VOCAB), history, images)
    return (~torch.isinf(scores[:, END])).tolist()


def test_a_caption_ends_only_once_it_names_each_sure_thing(name_two):
    to_name = things_to_name(torch.stack([cells((JAGUAR, 20), (CUP, 4)), cells()]), hedge(), 2)
    rule = NameTheSureThings(noun_of_word(), to_name, END)
    image_0 = torch.tensor([0])
    assert ends(rule, [[A, W_JAGUAR]], image_0) == [False]  # the cup is still to name
    assert ends(rule, [[A, W_CUP]], image_0) == [False]
    assert ends(rule, [[A, W_JAGUAR, AND, A, W_CUP]], image_0) == [True]
    assert ends(rule, [[A, W_ANIMAL, AND, A, W_CUP]], image_0) == [True]  # "an animal" names it
    # Image 1 is sure of nothing: its caption ends where it would.
    assert ends(rule, [[A, W_DOG]], torch.tensor([1])) == [True]
    # Two beams of each image, in a batch.
    assert ends(rule, [[A, W_JAGUAR]] * 4, torch.tensor([0, 1])) == [False, False, True, True]
    assert ends(rule, [[A, W_JAGUAR]], None) == [True]  # a sampler that does not say whose rows


def test_a_caption_that_cannot_name_them_ends_after_naming_words(name_two):
    to_name = things_to_name(cells((JAGUAR, 20), (CUP, 4)).unsqueeze(0), hedge(), 2)
    rule = NameTheSureThings(noun_of_word(), to_name, END)
    short = [A, W_DOG] + [AND] * (rules.NAMING_WORDS - 3)
    assert ends(rule, [short], torch.tensor([0])) == [False]
    assert ends(rule, [[*short, AND]], torch.tensor([0])) == [True]


def test_a_copy_model_gets_the_rule_only_with_things_to_name():
    decoder = SimpleNamespace(
        config=SimpleNamespace(vocab_size=VOCAB, copy_nouns=3, end_after_noun=True),
        noun_singular_ids=torch.tensor([W_JAGUAR, W_DOG, W_CUP]),
        noun_plural_ids=torch.tensor([W_JAGUAR, W_DOG, W_CUP]),
    )
    assert not any(isinstance(r, NameTheSureThings) for r in decoding_rules(decoder, end_id=END))
    to_name = torch.zeros(1, 2, 3, dtype=torch.bool)
    found = [
        r for r in decoding_rules(decoder, end_id=END, to_name=to_name)
        if isinstance(r, NameTheSureThings)
    ]  # fmt: skip
    assert [r.to_name for r in found] == [to_name]


@pytest.fixture(scope="module")
def model():
    from captioner.api import Captioner

    return Captioner.load("default", device="cpu")


def nouns_named(model, text: str) -> int:
    nouns = set(model._copy_nouns()) | set(model.decoder.hedge.words)
    words = text.replace("oil rig", "oil_rig").split()
    return sum(word.replace("_", " ").removesuffix("s") in nouns for word in words)


def test_the_default_model_names_the_second_thing_it_is_sure_of(model, monkeypatch):
    photos = [SAMPLES / f"{name}.jpg" for name in ("rocket", "chelsea", "coffee", "camera")]
    before = [result.text for result in model.caption(photos)]
    after = [result.text for result in model.caption(photos, name_things=2)]
    # The rocket's photo shows a rocket and a launch tower the classifier reads as an oil rig,
    # both surely: the caption names both, where it named the rocket alone.
    assert nouns_named(model, before[0]) == 1, before
    assert "rocket" in after[0] and "oil rig" in after[0], after
    # The others show one sure thing: their captions are as they were.
    assert after[1:] == before[1:]
    # Each image of a batch is captioned as alone.
    assert [model.caption([photo], name_things=2)[0].text for photo in photos] == after


def test_a_hypernyms_column_follows_the_taught_words_even_one_the_table_has():
    """The copy memory's columns are the table's nouns, the taught words, the hypernyms. The
    last taught word here ("cup") is a table noun and keeps the table's column, so counting
    the columns in use put "animal" on the taught words' last column: the rule then took
    "an animal" for naming nothing and the jaguar unnamed."""
    nouns = ("jaguar", "leopard", "dog", "cup")
    leopard, widget, animal = VOCAB, VOCAB + 1, VOCAB + 2  # then the taught words', hypernyms'
    ids = torch.tensor([W_JAGUAR, leopard, W_DOG, W_CUP])
    decoder = SimpleNamespace(
        config=SimpleNamespace(vocab_size=VOCAB + 1, copy_nouns=4, end_after_noun=True),
        noun_singular_ids=ids,
        noun_plural_ids=ids,
        hedge=Hedge.build(NounTree((*nouns, "animal"), (4, 4, 4, -1, -1)), nouns, 0.7),
    )
    taught = SimpleNamespace(
        words=("widget", "cup"),  # a word the model did not have, then a table noun
        singular_ids=torch.tensor([widget, W_CUP]),
        plural_ids=torch.tensor([widget, W_CUP]),
        word_count=VOCAB + 2,
    )
    columns = 4 + 2 + 1  # nouns, taught words, "animal"
    to_name = torch.zeros(1, 1, columns, dtype=torch.bool)
    to_name[0, 0, [JAGUAR, 6]] = True  # the jaguar, named by "jaguar" or "animal"
    found = decoding_rules(decoder, end_id=END, taught=taught, to_name=to_name)
    (rule,) = [r for r in found if isinstance(r, NameTheSureThings)]
    history = torch.tensor([[A, animal]])
    scores = apply_rules([rule], torch.zeros(1, animal + 1), history, torch.tensor([0]))
    assert not torch.isinf(scores[0, END])  # "an animal" named the jaguar: it may end
