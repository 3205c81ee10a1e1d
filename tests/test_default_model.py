"""The model shipped inside the package works on scenes it has never seen."""

import json

import pytest

from captioner import Captioner
from captioner.api import DEFAULT_MODEL_DIR
from training.evaluate import main as evaluate_main
from training.metrics import coco_metrics
from training.readers import read_samples
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
    out, per_image = tmp_path / "metrics.json", tmp_path / "per_image.jsonl"
    args = ["--model", str(DEFAULT_MODEL_DIR), "--annotations", str(annotations),
            "--images", str(tmp_path / "test"), "--no-meteor", "--device", "cpu",
            "--out", str(out), "--per-image", str(per_image)]  # fmt: skip
    assert evaluate_main(args) == 0
    metrics = json.loads(out.read_text())
    assert metrics["num_images"] == 200
    assert metrics["CIDEr"] >= 2.0
    assert metrics["pointing_accuracy"] >= 2 * metrics["pointing_chance"]

    # BLEU-4 on 200 scenes swings by points with the sample (previous models: 0.55 here and
    # 0.60 on the 1,000-scene test split; this one 0.600 and 0.609), so a fixed 0.6 would pass
    # or fail by the sample. The yardstick is relative: the model against a scene's own
    # reference captions comes close to one of those references against the other four.
    samples = read_samples(annotations, tmp_path / "test").samples
    others = {s.image_id: list(s.captions[1:]) for s in samples}
    reference = coco_metrics(others, {s.image_id: s.captions[0] for s in samples}, meteor=False)
    rows = [json.loads(line) for line in per_image.read_text().splitlines()]
    model = coco_metrics(others, {row["image_id"]: row["caption"] for row in rows}, meteor=False)
    assert model["Bleu_4"] >= 0.85 * reference["Bleu_4"]
