"""The model shipped inside the package works on scenes it has never seen."""

import json

import pytest

from captioner import Captioner
from captioner.api import DEFAULT_MODEL_DIR
from training.evaluate import main as evaluate_main
from training.scenes import generate_split

UNSEEN_SEED = 424242  # the default model was trained on seed 0; the samples use 20261121


def test_load_without_arguments_gives_the_scenes_model():
    model = Captioner.load(device="cpu")
    assert model.name == "scenes-default"
    assert (DEFAULT_MODEL_DIR / "model.safetensors").stat().st_size < 20e6


@pytest.mark.slow
def test_default_model_scores_on_fresh_scenes(tmp_path):
    annotations = generate_split(
        tmp_path, "test", 200, seed=UNSEEN_SEED, size=224, image_format="jpg"
    )
    out = tmp_path / "metrics.json"
    args = ["--model", str(DEFAULT_MODEL_DIR), "--annotations", str(annotations),
            "--images", str(tmp_path / "test"), "--no-meteor", "--device", "cpu",
            "--out", str(out)]  # fmt: skip
    assert evaluate_main(args) == 0
    metrics = json.loads(out.read_text())
    assert metrics["num_images"] == 200
    assert metrics["Bleu_4"] > 0.6  # 0.643 here, 0.689 on the 1,000-scene test split
    assert metrics["CIDEr"] >= 2.0
    assert metrics["pointing_accuracy"] >= 2 * metrics["pointing_chance"]
