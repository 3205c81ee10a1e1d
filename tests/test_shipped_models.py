"""What ships in the package: models found by name (never mistaken for a folder) with their
model cards, and sample photos that may be shipped, each with its licence."""

from __future__ import annotations

import fnmatch
import importlib.util
import re
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from captioner import Captioner, CheckpointError
from captioner.registry import MODELS_DIR, resolve_model, shipped_model, shipped_models

ROOT = Path(__file__).resolve().parent.parent
CARD_SECTIONS = ("## Data", "## Recipe", "## Scores", "## Licences")
SAMPLES_DIR = ROOT / "captioner" / "samples"


def make_samples_script():
    spec = importlib.util.spec_from_file_location("make_samples", ROOT / "scripts/make_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_models_are_found_by_name():
    assert {"default", "shapes"} <= set(shipped_models())
    assert resolve_model("shapes") == MODELS_DIR / "shapes"
    assert resolve_model(None) == resolve_model("default") == MODELS_DIR / "default"
    assert Captioner.load("shapes", device="cpu").name == "scenes-default"


def test_an_existing_path_wins_over_a_shipped_name(tiny_model_dir, tmp_path, monkeypatch):
    shutil.copytree(tiny_model_dir, tmp_path / "shapes")
    monkeypatch.chdir(tmp_path)
    assert Captioner.load("shapes", device="cpu").name == "tiny-test-model"
    assert Captioner.load(shipped_model("shapes"), device="cpu").name == "scenes-default"
    # A path spelled as one ("./default", "default/") is never looked up as a name.
    with pytest.raises(CheckpointError, match="no such model directory"):
        Captioner.load("./default")


def test_an_unknown_name_lists_the_shipped_models(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match=r"\(those are: .*default.*shapes"):
        Captioner.load("landscapes")
    with pytest.raises(CheckpointError, match="those are"):
        shipped_model("../models/shapes")  # names are names, not paths into the package


@pytest.mark.parametrize("name", ["default", "shapes"])
def test_every_shipped_model_has_a_model_card(name):
    card = (shipped_model(name) / "README.md").read_text(encoding="utf-8")
    assert all(section in card for section in CARD_SECTIONS)
    assert "Apache-2.0" in card


def test_package_data_ships_every_model_with_its_card():
    with open(ROOT / "pyproject.toml", "rb") as file:
        patterns = tomllib.load(file)["tool"]["setuptools"]["package-data"]["captioner"]
    package = ROOT / "captioner"
    for name in ("default", "shapes"):
        for file in ("config.json", "vocab.json", "model.safetensors", "README.md"):
            relative = (package / "models" / name / file).relative_to(package).as_posix()
            assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), relative


def test_samples_are_licensed_photos_the_script_makes(tmp_path):
    script = make_samples_script()
    shipped = sorted(p.name for p in SAMPLES_DIR.iterdir() if p.suffix == ".jpg")
    assert shipped == sorted(f"{sample.function}.jpg" for sample in script.SAMPLES)
    assert len(shipped) >= 5
    licences = dict(
        re.findall(
            r"^\| (\S+\.jpg) \|.*\| ([^|]+) \|$", (SAMPLES_DIR / "LICENSES.md").read_text(), re.M
        )
    )
    assert sorted(licences) == shipped
    assert all(re.match(r"(public domain|CC0)", licence) for licence in licences.values())
    # The shipped files are what the script makes now from the installed scikit-image.
    made = script.write_samples(tmp_path)
    assert sorted(path.name for path in made) == shipped
    for path in made:
        with Image.open(SAMPLES_DIR / path.name) as ours, Image.open(path) as fresh:
            assert max(ours.size) <= script.MAX_SIDE and ours.size == fresh.size
            difference = np.abs(np.asarray(ours, float) - np.asarray(fresh, float))
            assert difference.mean() < 2.0, path.name
