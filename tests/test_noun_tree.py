"""The noun tree (captioner/noun_tree.py): the shipped file, its checks, and hedging."""

import pytest
import torch
from PIL import Image

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


# --- the hedged copy path -------------------------------------------------------------------

JAGUAR, LEOPARD, DOG = 5, 7, 9  # word ids of the three nouns; their plurals follow each
VOCAB = 11


def copy_path(confidence: float | None):
    """A copy head over jaguar, leopard and dog, whose cell sees 0.4 / 0.35 / 0.25 of them,
    its gate wide open and its plural switch on the singular; the step's p(word)."""
    from captioner.copy_head import CopyHead

    head = CopyHead(vocab_size=VOCAB, encoder_dim=4, decoder_dim=3, classes=3, nouns=3)
    head.attach(
        torch.zeros(3, 4),
        torch.zeros(3),
        torch.eye(3),
        torch.tensor([JAGUAR, LEOPARD, DOG]),
        torch.tensor([JAGUAR + 1, LEOPARD + 1, DOG + 1]),
    )
    with torch.no_grad():
        head.copy_gate.bias.fill_(20.0)
        head.plural_switch.bias.fill_(-20.0)
    tree = NounTree(("jaguar", "leopard", "dog", "cat", "animal"), (3, 3, 4, 4, -1))
    hedge = None
    if confidence is not None:
        hedge = Hedge.build(tree, ["jaguar", "leopard", "dog"], confidence)
    classes = torch.tensor([0.4, 0.35, 0.25]).log().view(1, 1, 1, 3)
    memory = head.prepare(torch.zeros(1, 1, 1, 4), class_log_probs=classes, hedge=hedge)
    log_p, _ = head(torch.zeros(1, VOCAB), torch.zeros(1, 3), torch.ones(1, 1), memory)
    return log_p[0].exp(), memory


def test_the_copy_path_says_the_hypernym_with_its_nouns_summed_probability():
    p, memory = copy_path(0.5)
    # Hypernym ids follow the vocabulary: cat 11, animal 12, then their plurals 13, 14.
    assert memory.word_count == VOCAB + 4 and p.shape == (VOCAB + 4,)
    assert float(p[11]) == pytest.approx(0.75, abs=1e-3)  # "cat" = jaguar + leopard
    assert float(p[DOG]) == pytest.approx(0.25, abs=1e-3)
    assert float(p[JAGUAR]) < 1e-3 and float(p[LEOPARD]) < 1e-3
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-3)


def test_without_a_tree_or_with_a_sure_noun_the_copy_path_is_as_before():
    before, memory = copy_path(None)
    assert memory.word_count is None and before.shape == (VOCAB,)
    assert float(before[JAGUAR]) == pytest.approx(0.4, abs=1e-3)
    sure, _ = copy_path(0.3)  # jaguar's 0.4 reaches 0.3: nothing moves
    assert torch.allclose(sure[:VOCAB], before, atol=1e-4)


# --- models and their trees -----------------------------------------------------------------


def test_a_models_broken_tree_stops_it_loading_naming_the_file(tmp_path):
    import shutil

    from captioner.api import Captioner
    from captioner.registry import CheckpointError, shipped_model

    model = tmp_path / "model"
    shutil.copytree(shipped_model("default"), model)
    (model / "noun_tree.tsv").write_text("noun\tparent\ncat\tanimal\nanimal\tcat\n")
    with pytest.raises(CheckpointError, match="circle") as error:
        Captioner.load(model, device="cpu")
    assert str(model / "noun_tree.tsv") in str(error.value)


def test_a_copy_model_whose_nouns_the_tree_lacks_works_as_before():
    from captioner.noun_tree import model_tree

    assert model_tree(None, ["jaguar", "flux capacitor"]) is None
    assert model_tree(None, ["jaguar", "dog"]) is not None  # the shipped tree covers them


def test_a_photo_sure_of_nothing_says_the_root_and_each_cell_hedges_alone():
    tree = NounTree(("jaguar", "leopard", "cheetah", "cat", "dog", "animal", "cup", "container"),
                    (3, 3, 3, 5, 5, -1, 7, -1))  # fmt: skip
    hedge = Hedge.build(tree, ["jaguar", "leopard", "cheetah", "dog", "cup"], 0.6, root="photo")
    assert hedge.words[-1] == "photo" and hedge.plurals[-1] == "photo"
    noun_probs = torch.tensor(
        [
            [
                [0.3, 0.25, 0.2, 0.1, 0.15],
                [0.9, 0.02, 0.02, 0.03, 0.03],
            ],  # a split cell, a sure one
            [[0.15, 0.1, 0.1, 0.1, 0.55], [0.2, 0.1, 0.1, 0.1, 0.5]],  # nothing reaches 0.6
        ]
    )  # (2 photos, 2 cells, 5 nouns)
    cells = hedge.cells(noun_probs)  # columns: 5 nouns | cat animal container photo
    assert cells[0, 0].tolist() == pytest.approx([0, 0, 0, 0.1, 0.15, 0.75, 0, 0, 0])
    assert cells[0, 1, :5].tolist() == pytest.approx(noun_probs[0, 1].tolist())
    assert (cells[1, :, -1] == 1).all() and cells[1, :, :-1].sum() == 0


def test_a_hypernym_the_model_says_already_is_left_out_and_its_nouns_hang_higher():
    tree = NounTree(("jaguar", "dog", "cat", "animal"), (2, 3, 3, -1))
    hedge = Hedge.build(tree, ["jaguar", "dog"], 0.5, known=["cat", "a", "dog"])
    assert hedge.words == ("animal",)  # "cat" is a word of the model's (a taught word)
    assert hedge.under.tolist() == [[1, 0, 1], [0, 1, 1]]  # jaguar now right under animal


def test_a_model_without_a_copy_path_has_no_tree_and_cannot_hedge():
    from captioner.api import Captioner

    shapes = Captioner.load("shapes", device="cpu")
    assert shapes.hedging is None
    with pytest.raises(ValueError, match="no noun tree"):
        shapes.set_hedging(0.5)
    assert shapes.caption(Image.new("RGB", (64, 64), "red")).text  # captions as before


def test_teacher_forcing_scores_the_captions_own_nouns_unhedged():
    """A validation loss (learn.py's early stop) must not see "jaguar" moved to "animal"."""
    from pathlib import Path

    from captioner.api import Captioner

    model = Captioner.load("default", device="cpu")
    assert model.hedging is not None
    features = model.encode(Path(__file__).parent.parent / "captioner" / "samples" / "chelsea.jpg")
    caption = torch.tensor([model.vocab.encode("a large cat")])
    with torch.no_grad():
        hedged, _ = model.decoder(features, caption)
        model.set_hedging(None)
        try:
            plain, _ = model.decoder(features, caption)
        finally:
            model.set_hedging(0.7)
    assert hedged.shape == plain.shape and torch.equal(hedged, plain)
