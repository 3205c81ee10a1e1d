"""A model as a folder of ONNX graphs that runs without captioner: encoder.onnx,
decoder_step.onnx and manifest.json (captioner/onnx_backend.py), the model's vocab.json and
config.json, and a README saying how the graphs fit together.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from captioner.onnx_backend import MANIFEST_FILE, STEP_FILE, export_graphs
from captioner.photos.atomic import write_dir_atomically
from captioner.registry import CONFIG_FILE, VOCAB_FILE

if TYPE_CHECKING:
    from captioner.api import Captioner

USAGE_NOTES = """\
# ONNX graphs of the captioning model "{name}"

Exported by `captioner-export` (opset {opset}). Preprocess a photo as captioner does: RGB,
resized (not cropped) to {size} x {size}, scaled to [0, 1], normalised with ImageNet's mean
(0.485, 0.456, 0.406) and standard deviation (0.229, 0.224, 0.225), channels first.

- `encoder.onnx`: `pixels` (batch, 3, {size}, {size}) -> `features` (batch, grid_h, grid_w,
  encoder_dim).
- `decoder_step.onnx`: one word for every row (image x beam), as `Decoder.step` in
  captioner/decoder.py: inputs {inputs}; outputs {outputs} (`logits` are
  log-probabilities for a copy model). The per-image inputs (`features`, `attention_keys`, ...)
  are what `Decoder.prepare` computes once per image; rows are grouped by image.
- `vocab.json`: word ids; `<start>` begins every caption, `<end>` ends it.

Beam search, its rules and the article fix are in captioner/beam.py and captioner/vocab.py;
with captioner installed, `Captioner.load(MODEL, backend="onnx")` runs these graphs for you.
"""


def export_onnx_folder(
    captioner: Captioner, model_dir: str | os.PathLike, out: str | os.PathLike
) -> Path:
    """Write (or replace, atomically) the folder `out` for the model loaded from `model_dir`.
    Raises OnnxUnavailableError when onnx is not installed."""

    def write(folder: Path) -> None:
        export_graphs(captioner.encoder, captioner.decoder, folder)
        for name in (CONFIG_FILE, VOCAB_FILE):
            shutil.copyfile(Path(model_dir) / name, folder / name)
        (folder / "README.md").write_text(_usage_notes(captioner, folder))

    return write_dir_atomically(out, write)


def _usage_notes(captioner: Captioner, folder: Path) -> str:
    import onnx  # what wrote the graphs; loaded only to read their input names

    step = onnx.load(str(folder / STEP_FILE), load_external_data=False)
    described = json.loads((folder / MANIFEST_FILE).read_text())
    return USAGE_NOTES.format(
        name=captioner.name,
        opset=described["opset"],
        size=captioner.encoder.config.image_size,
        inputs=", ".join(f"`{node.name}`" for node in step.graph.input),
        outputs=", ".join(f"`{name}`" for name in described["step_outputs"]),
    )
