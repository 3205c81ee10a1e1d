"""`captioner-export MODEL --onnx OUT`: a model's ONNX graphs, to run without captioner.

OUT gets encoder.onnx, decoder_step.onnx and manifest.json (captioner/onnx_backend.py),
prepare.onnx, decoding.json, reference_decoder.py (greedy and beam search in numpy and
onnxruntime alone), the model's vocab.json and config.json, and a README saying how they fit
together (captioner/files/onnx_export.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from captioner.api import Captioner
from captioner.files.onnx_export import export_onnx_folder
from captioner.onnx_backend import OnnxUnavailableError
from captioner.registry import CheckpointError, resolve_model

PROGRAM = "captioner-export"


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
        # Resolved once, so a Hub model is downloaded once and its config and vocabulary are
        # copied from the folder that was loaded.
        path = resolve_model(args.model)
        captioner = Captioner.load(path, device="cpu", backend="torch")
    except (CheckpointError, ValueError) as error:
        parser.error(str(error))
    try:
        export_onnx_folder(captioner, path, out)
    except OnnxUnavailableError as error:
        print(f"{PROGRAM}: {error}", file=sys.stderr)
        return 1
    print(
        f"wrote {out}: encoder.onnx, prepare.onnx, decoder_step.onnx, manifest.json, "
        "decoding.json, reference_decoder.py, vocab.json, config.json, README.md"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
