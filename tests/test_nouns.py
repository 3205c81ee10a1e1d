"""The ImageNet class -> caption noun table, its probability mapping, articles and plurals."""

import pytest
import torch
from torchvision.models._meta import _IMAGENET_CATEGORIES

from captioner.nouns import (
    NOUN_TABLE_PATH,
    WEIGHTINGS,
    NounTable,
    indefinite_article,
    pluralize,
)


@pytest.fixture(scope="module")
def table() -> NounTable:
    return NounTable.load()


def test_rows_follow_torchvision_class_order():
    lines = NOUN_TABLE_PATH.read_text(encoding="utf-8").splitlines()
    assert lines[0].split("\t") == ["index", "wnid", "imagenet_name", "noun", "plural"]
    rows = [line.split("\t") for line in lines[1:]]
    assert [int(row[0]) for row in rows] == list(range(1000))
    assert [row[2] for row in rows] == list(_IMAGENET_CATEGORIES)
    wnids = [row[1] for row in rows]
    assert wnids == sorted(wnids) and len(set(wnids)) == 1000
    assert rows[0][1] == "n01440764"  # tench
    # a left-out class has neither noun nor plural
    assert all((row[3] == "-") == (row[4] == "-") for row in rows)


def test_table_shape_and_every_noun_has_a_plural(table):
    assert len(table.class_noun) == 1000
    assert list(table.nouns) == sorted(set(table.nouns))
    assert len(table.plurals) == len(table.nouns)
    assert all(plural and plural != "-" for plural in table.plurals)
    assert all(noun == noun.lower() and noun.strip() == noun for noun in table.nouns)
    assert 200 <= len(table.nouns) <= 600
    assert sum(n >= 0 for n in table.class_noun) > 850


def noun_of_class(table, class_index: int) -> str | None:
    """The noun of an ImageNet class, or None if the class is left out."""
    noun = table.class_noun[class_index]
    return table.nouns[noun] if noun >= 0 else None


def test_known_mappings(table):
    assert {noun_of_class(table, i) for i in range(151, 269)} == {"dog"}
    name = {name: i for i, name in enumerate(_IMAGENET_CATEGORIES)}
    expected = {
        "tabby": "cat",
        "Egyptian cat": "cat",
        "Granny Smith": "apple",
        "school bus": "bus",
        "sports car": "car",
        "teddy": "teddy bear",
        "traffic light": "traffic light",
        "coffee mug": "mug",
        "daisy": "flower",
        "scuba diver": "person",
        "military uniform": "person",
        "goldfish": "goldfish",
        "mouse": "mouse",
        "plane": None,  # the carpenter's tool, deliberately left out
        "web site": None,
    }
    assert {n: noun_of_class(table, name[n]) for n in expected} == expected


def test_plurals(table):
    plurals = {n: table.plural_of(n) for n in ("dog", "person", "bus", "butterfly", "fish")}
    assert plurals == {
        "dog": "dogs",
        "person": "people",
        "bus": "buses",
        "butterfly": "butterflies",
        "fish": "fish",
    }
    assert table.plural_of("teddy bear") == "teddy bears"
    with pytest.raises(ValueError):
        table.plural_of("category")
    # the table's plurals are pluralize's, so nouns outside the table plural the same way
    assert all(table.plural_of(n) == pluralize(n) for n in table.nouns)


@pytest.mark.parametrize(
    ("noun", "plural"),
    [
        ("woman", "women"),
        ("box", "boxes"),
        ("monkey", "monkeys"),
        ("strawberry", "strawberries"),
        ("knife", "knives"),
        ("starfish", "starfish"),
        ("traffic light", "traffic lights"),
        ("sunglasses", "sunglasses"),
    ],
)
def test_pluralize(noun, plural):
    assert pluralize(noun) == plural


@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_one_hot_class_gives_its_noun(table, weighting):
    probs = torch.zeros(3, 1000)
    probs[0, 281] = 1.0  # tabby
    probs[1, 948] = 1.0  # Granny Smith
    probs[2, 916] = 1.0  # web site: left out, so no noun gets anything
    nouns = table.noun_probabilities(probs, weighting)
    assert nouns.shape == (3, len(table.nouns))
    assert nouns[0, table.nouns.index("cat")] == pytest.approx(1.0)
    assert nouns[1, table.nouns.index("apple")] == pytest.approx(1.0)
    assert nouns[2].abs().sum() == 0


@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_noun_rows_sum_to_the_mapped_mass(table, weighting):
    probs = torch.softmax(torch.randn(2, 5, 1000, generator=torch.Generator().manual_seed(0)), -1)
    nouns = table.noun_probabilities(probs, weighting)
    mapped = torch.tensor([n >= 0 for n in table.class_noun])
    assert nouns.shape == (2, 5, len(table.nouns))
    assert (nouns >= 0).all()
    assert torch.allclose(nouns.sum(-1), probs[..., mapped].sum(-1), atol=1e-5)
    assert (nouns.sum(-1) <= 1 + 1e-6).all()


def test_weightings_stop_many_class_nouns_winning_by_default(table):
    # The head hesitates between all dog breeds (little each) and a tabby cat (more than any
    # one breed): summing says dog, the per-class weightings say cat.
    probs = torch.zeros(1000)
    probs[151:269] = 0.6 / 118
    probs[281] = 0.3
    cat, dog = table.nouns.index("cat"), table.nouns.index("dog")
    assert table.noun_probabilities(probs, "sum").argmax() == dog
    for weighting in ("mean", "max"):
        assert table.noun_probabilities(probs, weighting).argmax() == cat
    matrix = table.class_to_noun_matrix("sum")
    assert matrix.shape == (1000, len(table.nouns))
    assert torch.equal(probs @ matrix, table.noun_probabilities(probs, "sum"))


def test_unknown_weighting_is_refused(table):
    with pytest.raises(ValueError, match="weighting"):
        table.noun_probabilities(torch.zeros(1000), "median")
    with pytest.raises(ValueError, match="weighting"):
        table.class_to_noun_matrix("max")


@pytest.mark.parametrize(
    ("phrase", "article"),
    [
        ("apple", "an"),
        ("dog", "a"),
        ("hour", "an"),
        ("unicorn", "a"),
        ("umbrella", "an"),
        ("one-way street", "a"),
        ("elephant", "an"),
        ("European car", "a"),
        ("honest man", "an"),
        ("teddy bear", "a"),
        ("Owl", "an"),
    ],
)
def test_indefinite_article(phrase, article):
    assert indefinite_article(phrase) == article
