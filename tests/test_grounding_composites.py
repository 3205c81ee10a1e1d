"""Grounding on composites: nouns (plural, two-word) name the stamps' objects, copied nouns count
apart, and captioner-evaluate scores a composites split."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_composites import SYNTHETIC, stamps  # noqa: F401  (stamps: the fake stamps fixture)
from test_grounding import SIZE, peaked

import training.evaluate
from captioner import CaptionResult
from captioner.nouns import pluralize
from training.evaluate import main
from training.grounding import OBJECT_WORDS, ground_caption, grounding_scores
from training.scenes import generate_split
from training.scenes.composites import describe, load_config, read_stamp_list, scene_maker

# 100 x 100 image, 4 x 4 grid of 25 px cells (as in test_grounding): the apple lies in cell
# (1, 1), the large teddy bear covers cells (2..3, 2..3), the small one cell (0, 3).
APPLE = {"noun": "apple", "color": "red", "size": "small", "bbox": [30, 30, 15, 15]}
BIG_TEDDY = {"noun": "teddy bear", "color": None, "size": "large", "bbox": [55, 55, 40, 40]}
SMALL_TEDDY = {"noun": "teddy bear", "color": None, "size": "small", "bbox": [80, 5, 10, 10]}


def test_nouns_and_plurals_name_the_objects_of_their_noun():
    tokens = ["two", "teddy bears", "and", "a", "red", "apple"]  # a copy model's words
    alphas = np.stack(
        [peaked((0, 0)), peaked((0, 3)), *[peaked((0, 0))] * 2, *[peaked((1, 1))] * 2]
    )
    alphas[5] = peaked((2, 2))  # the apple's map looks at the big teddy bear
    result = ground_caption(tokens, alphas, [APPLE, BIG_TEDDY, SMALL_TEDDY], SIZE)
    assert [(w.position, w.word, w.objects, w.pointing_hit, w.noun) for w in result.grounded] == [
        (1, "teddy bears", (1, 2), True, True),  # the small one's cell: in the union of boxes
        (4, "red", (0,), True, False),
        (5, "apple", (0,), False, True),
    ]
    assert result.grounded[0].chance == pytest.approx(5 / 16)
    assert result.ungrounded == []


def test_a_plain_models_two_tokens_are_one_noun_scored_with_their_mean_map():
    teddy, bear = peaked((2, 2), 0.5), peaked((0, 0), 0.4)
    plain = ground_caption(
        ["a", "teddy", "bear"], np.stack([peaked((0, 0)), teddy, bear]), [BIG_TEDDY], SIZE
    )
    (word,) = plain.grounded
    assert (word.position, word.word, word.objects, word.noun) == (1, "teddy bear", (0,), True)
    # The mean map peaks in the box, (0.5 + 0.6 / 15) / 2 against (0.5 / 15 + 0.4) / 2, though
    # "bear" alone looks outside it.
    assert word.pointing_hit is True
    assert word.attention_in_box == pytest.approx(((0.5 + 3 * 0.5 / 15) + 4 * 0.6 / 15) / 2)
    assert word.chance == pytest.approx(4 / 16)
    # A copy model that says the noun as one word with that map scores the same.
    copy = ground_caption(
        ["a", "teddy bear"], np.stack([peaked((0, 0)), (teddy + bear) / 2]), [BIG_TEDDY], SIZE
    )
    assert copy.grounded == [word]


def test_nouns_absent_from_the_image_are_hallucinations_and_part_words_are_not_nouns():
    tokens = ["a", "koala", "a", "red", "teddy", "bear", "a", "bear", "teddy", "sea"]
    alphas = np.stack([peaked((2, 2))] * len(tokens))
    result = ground_caption(tokens, alphas, [BIG_TEDDY], SIZE)
    assert [(w.position, w.word) for w in result.grounded] == [(4, "teddy bear")]
    # "red": the teddy bear has no colour; "bear" alone is a bear, a noun of its own; "teddy"
    # and "sea" alone are no nouns of the table.
    assert result.ungrounded == ["koala", "red", "bear"]


def test_a_word_that_is_a_noun_and_a_colour_names_both():
    orange = {"noun": "orange", "color": None, "bbox": [30, 30, 15, 15]}
    orange_apple = {"noun": "apple", "color": "orange", "bbox": [55, 55, 40, 40]}
    alphas = np.stack([peaked((1, 1))] * 2)
    result = ground_caption(["orange", "oranges"], alphas, [orange, orange_apple], SIZE)
    assert [(w.word, w.objects) for w in result.grounded] == [("orange", (0, 1)), ("oranges", (0,))]


def test_copied_noun_scores_count_the_table_nouns_alone():
    alphas = np.stack([peaked((1, 1)), peaked((1, 1)), peaked((0, 0))])
    captions = [
        ground_caption(["red", "apple", "teddy bear"], alphas, [APPLE, BIG_TEDDY], SIZE),
        ground_caption(["koala"], peaked((0, 0))[None], [APPLE], SIZE),
    ]
    scores = grounding_scores(captions, copied_nouns=True)
    assert scores["pointing_accuracy"] == pytest.approx(2 / 3)  # red and apple hit
    assert scores["pointing_nouns"] == pytest.approx(1 / 2)  # apple hits, teddy bear misses
    assert scores["pointing_chance_nouns"] == pytest.approx((1 / 16 + 4 / 16) / 2)
    assert scores["grounded_nouns"] == 2
    assert scores["ungrounded_words"] == 1
    assert "pointing_nouns" not in grounding_scores(captions)  # not a copy model's captions


# End to end: captioner-evaluate on a composites split of the fake stamps, with a stand-in model.

HALLUCINATION = "dog"  # a noun of the table that no fake stamp is


class ScriptedCaptioner:
    """A stand-in model whose words and maps the test chooses: per image, each noun once
    (plural for two objects, after its colour word if it has one), then HALLUCINATION. Every
    map peaks at the centre of the image's first object, on a grid of two cells per pixel, so
    a word points at its objects exactly when it names that object (boxes never overlap)."""

    name = "scripted"
    device = torch.device("cpu")

    def __init__(self, objects: dict[str, list[dict]], size: int, copy: bool) -> None:
        self.objects, self.size, self.copy = objects, size, copy
        self.tokens: dict[str, list[str]] = {}  # file name -> the words said, as the model's
        self.by_number = {int(Path(name).stem): name for name in objects}

    # What the captioning engine calls (reading may run in worker processes): a photo's
    # "pixels" and "features" are the number its file is named by.
    def preprocess(self, path) -> torch.Tensor:
        return torch.tensor([float(Path(path).stem)])

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels

    def decode(self, features: torch.Tensor, options) -> list[CaptionResult]:
        return [self._caption(self.by_number[int(number)]) for number in features[:, 0]]

    def _caption(self, file_name: str) -> CaptionResult:
        objects = self.objects[file_name]
        words = []
        for noun in dict.fromkeys(obj["noun"] for obj in objects):
            same = [obj for obj in objects if obj["noun"] == noun]
            words += [same[0]["color"]] if same[0]["color"] else []
            words.append(noun if len(same) == 1 else pluralize(noun))
        words.append(HALLUCINATION)
        tokens = words if self.copy else " ".join(words).split(" ")
        self.tokens[file_name] = tokens
        x, y, w, h = objects[0]["bbox"]
        alpha = np.zeros((2 * self.size, 2 * self.size))
        alpha[int(2 * (y + h / 2)), int(2 * (x + w / 2))] = 1.0
        return CaptionResult(
            " ".join(tokens),
            tokens,
            0.0,
            0.0,
            np.stack([alpha] * len(tokens)),
            np.ones(len(tokens)),
            copy_gate=np.full(len(tokens), 0.9) if self.copy else None,
        )


@pytest.fixture(scope="module")
def composites_split(stamps, tmp_path_factory):  # noqa: F811
    config = load_config(stamps[0], stamps[1], backgrounds=SYNTHETIC)[0]
    out = tmp_path_factory.mktemp("composites")
    annotations = generate_split(
        out, "test", 12, 5, 96, "png", 1, scene_maker(config), describe(config)
    )
    return annotations, out / "test"


@pytest.mark.parametrize("copy", [True, False], ids=["copy-model", "plain-model"])
def test_evaluate_scores_nouns_on_a_composites_split(
    composites_split, copy, tmp_path, monkeypatch, capsys
):
    annotations, images = composites_split
    coco_images = json.loads(annotations.read_text())["images"]
    objects = {image["file_name"]: image["objects"] for image in coco_images}
    scripted = ScriptedCaptioner(objects, 96, copy)
    monkeypatch.setattr(training.evaluate.Captioner, "load", lambda *args, **kwargs: scripted)
    per_image = tmp_path / "per_image.jsonl"
    argv = ["--model", str(tmp_path), "--annotations", str(annotations), "--images", str(images)]
    argv += ["--out", str(tmp_path / "metrics.json"), "--per-image", str(per_image)]
    assert main([*argv, "--device", "cpu", "--no-meteor"]) == 0
    report = json.loads((tmp_path / "metrics.json").read_text())

    nouns = [dict.fromkeys(obj["noun"] for obj in image["objects"]) for image in coco_images]
    # Only apples have a colour word: one per image that shows apples.
    coloured = [{obj["noun"] for obj in image["objects"] if obj["color"]} for image in coco_images]
    first_has_colour = sum(image["objects"][0]["color"] is not None for image in coco_images)
    said = sum(map(len, nouns)) + sum(map(len, coloured))
    assert sum(map(len, nouns)) > len(coco_images)  # some images show two different nouns
    assert report["grounded_words"] == said
    assert report["ungrounded_words"] == len(coco_images)  # HALLUCINATION in each
    # Each image's first object is looked at: its noun and its colour word hit, nothing else.
    assert report["pointing_accuracy"] == pytest.approx(
        (len(coco_images) + first_has_colour) / said
    )
    if copy:
        assert report["grounded_nouns"] == sum(map(len, nouns))
        assert report["pointing_nouns"] == pytest.approx(len(coco_images) / sum(map(len, nouns)))
        assert 0 < report["pointing_chance_nouns"] < 1
    else:
        assert "pointing_nouns" not in report and "grounded_nouns" not in report
    assert ("pointing_nouns" in capsys.readouterr().out) == copy

    teddy_bears = plurals = 0
    for line in per_image.read_text().splitlines():
        record = json.loads(line)
        image_objects = objects[Path(record["path"]).name]
        tokens = scripted.tokens[Path(record["path"]).name]
        for word in record["grounded_words"]:
            if word["noun"]:
                singular = word["word"].removesuffix("s")  # the fake stamps' plurals add an s
                named = [i for i, obj in enumerate(image_objects) if obj["noun"] == singular]
                teddy_bears += singular == "teddy bear"
                plurals += singular != word["word"]
            else:
                named = [i for i, obj in enumerate(image_objects) if obj["color"] == word["word"]]
            assert word["objects"] == named and named, word
            length = 1 if copy else len(word["word"].split(" "))
            assert " ".join(tokens[word["position"] : word["position"] + length]) == word["word"]
    assert teddy_bears > 0 and plurals > 0


def test_objects_naming_neither_shape_nor_noun_are_refused(
    composites_split, tmp_path, monkeypatch, capsys
):
    annotations, images = composites_split
    # The objects are checked before any image is captioned.
    scripted = ScriptedCaptioner({}, 96, copy=True)
    monkeypatch.setattr(training.evaluate.Captioner, "load", lambda *args, **kwargs: scripted)
    coco = json.loads(annotations.read_text())
    del coco["images"][0]["objects"][0]["noun"]
    broken = tmp_path / "captions_test.json"
    broken.write_text(json.dumps(coco))
    argv = ["--model", str(tmp_path), "--annotations", str(broken), "--images", str(images)]
    assert main([*argv, "--out", str(tmp_path / "metrics.json"), "--device", "cpu"]) == 1
    assert "objects[0] needs 'shape' or 'noun'" in capsys.readouterr().err


def test_every_colour_of_the_stamp_list_is_an_object_word():
    colours = {stamp.color for stamp in read_stamp_list() if stamp.color}
    assert {"brown", "pink"} <= colours  # colours the shapes scenes do not have
    assert all(("color", colour) in OBJECT_WORDS[colour] for colour in colours)
