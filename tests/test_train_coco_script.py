"""scripts/train_coco.sh end to end, small: generated scenes and a random-init ResNet-18 from a
local weights file (nothing downloads), one epoch a phase."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from captioner import Captioner
from captioner.options import DecodeOptions
from training.scenes import generate_split

SCRIPT = Path(__file__).parents[1] / "scripts" / "train_coco.sh"


@pytest.mark.slow
def test_the_coco_recipe_runs_each_phase_and_its_model_captions(tmp_path):
    scenes, run = tmp_path / "scenes", tmp_path / "run"
    generate_split(scenes, "train", 16, seed=5, size=64, workers=1)
    generate_split(scenes, "val", 8, seed=5, size=64, workers=1)
    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    settings = {
        "CAPTIONS": scenes / "captions_train.json", "IMAGES": scenes / "train",
        "VAL_CAPTIONS": scenes / "captions_val.json", "VAL_IMAGES": scenes / "val",
        "TEST_CAPTIONS": scenes / "captions_val.json", "TEST_IMAGES": scenes / "val",
        "RUN": run, "XE_EPOCHS": 1, "TUNE_EPOCHS": 1, "SCST_EPOCHS": 1,
        "ENCODER": "resnet18", "ENCODER_WEIGHTS": weights, "IMAGE_SIZE": 64, "GRID": 2,
        "WIDTH": 16, "BATCH": 8,
        "TRAIN_ARGS": f"--min-word-count 1 --workers 0 --device cpu --no-progress "
        f"--val-max-images 4 --cache-dir {tmp_path / 'cache'}",
        "EVALUATE": "scst", "EVALUATE_ARGS": "--device cpu --backend torch --workers 0",
    }  # fmt: skip
    env = {**os.environ, **{k: str(v) for k, v in settings.items()}, "OMP_NUM_THREADS": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    done = subprocess.run(["bash", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    configs = {
        phase: json.loads((run / phase / "best" / "config.json").read_text())
        for phase in ("xe", "tune", "scst")
    }
    assert configs["xe"]["encoder"]["fine_tune_blocks"] == 0
    assert configs["tune"]["encoder"]["fine_tune_blocks"] == 3
    assert {c["encoder"]["grid_size"] for c in configs.values()} == {2}
    assert "sample_reward" in json.loads((run / "scst" / "log.jsonl").read_text().splitlines()[0])
    for phase in configs:
        assert (run / phase / "best" / "model.safetensors").is_file()
    assert "Bleu_4" in json.loads((run / "scst" / "test_metrics.json").read_text())

    model = Captioner.load(run / "scst" / "best", device="cpu", backend="torch")
    photos = sorted((scenes / "val").glob("*.png"))[:2]
    results = model.caption(photos, DecodeOptions(beam_size=3))
    assert len(results) == 2
    assert all(set(r.tokens) <= set(model.vocab.itos) for r in results)
