"""The shapes model shipped inside the package works on scenes it has never seen."""

import json

import pytest

from captioner import Captioner
from captioner.registry import shipped_model
from training.evaluate import main as evaluate_main
from training.scenes import generate_split

UNSEEN_SEED = 424242  # the shapes model was trained on seed 0


def test_the_shapes_model_loads_by_name_and_is_small():
    model = Captioner.load("shapes", device="cpu")
    assert model.name == "scenes-default"
    assert (shipped_model("shapes") / "model.safetensors").stat().st_size < 20e6


@pytest.mark.slow
def test_shapes_model_scores_on_fresh_scenes(tmp_path):
    annotations = generate_split(
        tmp_path, "test", 200, seed=UNSEEN_SEED, size=224, image_format="jpg"
    )
    out = tmp_path / "metrics.json"
    args = ["--model", "shapes", "--annotations", str(annotations),
            "--images", str(tmp_path / "test"), "--no-meteor", "--device", "cpu",
            "--out", str(out)]  # fmt: skip
    assert evaluate_main(args) == 0
    metrics = json.loads(out.read_text())
    assert metrics["num_images"] == 200
    assert metrics["Bleu_4"] > 0.6  # 0.643 here, 0.689 on the 1,000-scene test split
    assert metrics["CIDEr"] >= 2.0
    assert metrics["pointing_accuracy"] >= 2 * metrics["pointing_chance"]
    assert metrics["entirely_true"] >= 0.6  # 0.754 on the 1,000-scene test split
