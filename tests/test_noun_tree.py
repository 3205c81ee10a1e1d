"""The noun tree (captioner/noun_tree.py): the shipped file, its checks, and hedging."""

import pytest
import torch

from captioner.noun_tree import Hedge, NounTree, NounTreeError
from captioner.nouns import NounTable


def write(tmp_path, rows, header="noun\tparent"):
    path = tmp_path / "tree.tsv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_the_shipped_tree_covers_the_noun_table_with_everyday_hypernyms():
    nouns = NounTable.load().nouns
    tree = NounTree.load(nouns=nouns)
    assert set(nouns) <= set(tree.nodes)
    assert tree.ancestors("jaguar") == ["cat", "animal"]
    assert tree.ancestors("giraffe" if "giraffe" in nouns else "zebra")[-1] == "animal"
    assert "animal" in tree.ancestors("parrot") and "bird" in tree.ancestors("parrot")
    assert "vehicle" in tree.ancestors("bicycle")
    assert tree.ancestors("cup") == ["container"]
    assert tree.ancestors("person") == []  # garments name people, but a person is no garment


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["cat\tanimal", "animal\tcat"], "circle: cat -> animal -> cat"),
        (["cat\tfeline"], "'feline', which is no row"),
        (["cat\tanimal", "animal\t-", "spaceship\t-"], "'spaceship' is no noun of the model"),
        (["animal\t-"], "the model's nouns 'cat' are not in the tree"),
        (["cat\tanimal", "cat\t-", "animal\t-"], "'cat' is listed twice"),
        (["cat"], "line 2: expected"),
    ],
)
def test_a_broken_tree_is_refused_naming_the_file(tmp_path, rows, message):
    path = write(tmp_path, rows)
    with pytest.raises(NounTreeError, match=message) as error:
        NounTree.load(path, nouns=["cat"])
    assert str(path) in str(error.value)


def test_a_file_without_the_header_is_refused(tmp_path):
    with pytest.raises(NounTreeError, match="header"):
        NounTree.load(write(tmp_path, ["cat\t-"], header="word\tup"))


def small_hedge(confidence=0.5):
    tree = NounTree(
        ("jaguar", "leopard", "cheetah", "cat", "dog", "animal", "cup", "container"),
        (3, 3, 3, 5, 5, -1, 7, -1),
    )
    return Hedge.build(tree, ["jaguar", "leopard", "cheetah", "dog", "cup"], confidence)


def test_nodes_sum_their_nouns_and_hypernyms_get_columns_of_their_own():
    hedge = small_hedge()
    assert hedge.words == ("cat", "animal", "container")
    # cat = jaguar + leopard + cheetah; animal = those and dog; container = cup.
    copy = torch.tensor([[0.1, 0.2, 0.3, 0.15, 0.25]])
    nodes = copy @ hedge.under
    assert nodes[0, 5:].tolist() == pytest.approx([0.6, 0.75, 0.25])
    assert hedge.size.tolist() == [1, 1, 1, 1, 1, 3, 4, 1]


def test_a_split_between_cats_is_copied_as_the_cat_and_a_sure_noun_stays():
    hedge = small_hedge(0.5)
    copy = torch.tensor(
        [
            [0.3, 0.25, 0.2, 0.1, 0.15],  # no noun reaches 0.5; cat (0.75) does
            [0.2, 0.1, 0.1, 0.3, 0.3],  # cat 0.4 < 0.5; animal 0.7 does
            [0.7, 0.1, 0.1, 0.05, 0.05],  # jaguar is sure: nothing moves
            [0.1, 0.1, 0.1, 0.35, 0.35],  # none: nor cat (0.3), animal (0.65) is
        ]
    )
    hedged = hedge(copy)
    assert hedged.sum(-1).tolist() == pytest.approx([1.0] * 4)
    # Columns: jaguar leopard cheetah dog cup | cat animal container
    assert hedged[0].tolist() == pytest.approx([0, 0, 0, 0.1, 0.15, 0.75, 0, 0])
    assert hedged[1].tolist() == pytest.approx([0, 0, 0, 0, 0.3, 0, 0.7, 0])
    assert hedged[2, :5].tolist() == pytest.approx(copy[2].tolist())
    assert hedged[2, 5:].tolist() == [0, 0, 0]
    assert hedged[3].tolist() == pytest.approx([0, 0, 0, 0, 0.35, 0, 0.65, 0])


def test_a_row_with_nothing_sure_keeps_its_distribution():
    hedge = small_hedge(0.9)
    copy = torch.tensor([[0.3, 0.25, 0.2, 0.1, 0.15]])  # animal 0.85 < 0.9
    assert hedge(copy)[0, :5].tolist() == pytest.approx(copy[0].tolist())


def test_a_confidence_outside_0_1_is_refused():
    with pytest.raises(ValueError, match="confidence"):
        small_hedge(1.5)
