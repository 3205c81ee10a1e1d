"""`captioner-export MODEL --onnx OUT`: a model's ONNX graphs, to run without captioner.

OUT gets encoder.onnx, decoder_step.onnx and manifest.json (captioner/onnx_backend.py), the
model's vocab.json and config.json, and a README saying how the graphs fit together.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from captioner.api import Captioner, resolve_model
from captioner.checkpoint import CONFIG_FILE, VOCAB_FILE, CheckpointError
from captioner.onnx_backend import OnnxUnavailableError, export_graphs

PROGRAM = "captioner-export"
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.splitlines()[0])
    parser.add_argument(
        "model", help="a model directory, a shipped model's name, or hf:OWNER/NAME[@REVISION]"
    )
    parser.add_argument("--onnx", type=Path, required=True, metavar="OUT", help="folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    args = parser.parse_args(argv)
    out: Path = args.onnx
    if out.exists() and not args.overwrite:
        parser.error(f"{out} exists; pass --overwrite to replace it")
    try:
        path = resolve_model(args.model)
        captioner = Captioner.load(path, device="cpu", backend="torch")
    except (CheckpointError, ValueError) as error:
        parser.error(str(error))
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        export_graphs(captioner.encoder, captioner.decoder, partial)
    except OnnxUnavailableError as error:
        print(f"{PROGRAM}: {error}", file=sys.stderr)
        return 1
    for name in (CONFIG_FILE, VOCAB_FILE):
        shutil.copyfile(path / name, partial / name)
    manifest = (partial / "manifest.json").read_text()
    (partial / "README.md").write_text(_usage_notes(captioner, partial, manifest))
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    print(f"wrote {out}: encoder.onnx, decoder_step.onnx, manifest.json, vocab.json, config.json")
    return 0


def _usage_notes(captioner: Captioner, folder: Path, manifest: str) -> str:
    import onnx  # what wrote the graphs; loaded only to read their input names

    step = onnx.load(str(folder / "decoder_step.onnx"), load_external_data=False)
    described = json.loads(manifest)
    return USAGE_NOTES.format(
        name=captioner.name,
        opset=described["opset"],
        size=captioner.encoder.config.image_size,
        inputs=", ".join(f"`{node.name}`" for node in step.graph.input),
        outputs=", ".join(f"`{name}`" for name in described["step_outputs"]),
    )


if __name__ == "__main__":
    sys.exit(main())
