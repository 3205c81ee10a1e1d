"""A model as a folder of ONNX graphs that runs without captioner: encoder.onnx,
decoder_step.onnx and manifest.json (captioner/onnx_backend.py), prepare.onnx (what
`Decoder.prepare` and `initial_state` compute once per image), decoding.json (the search's
rules as tables), reference_decoder.py (greedy and beam search in numpy and onnxruntime, a
copy of captioner/files/onnx_reference_decoder.py), the model's vocab.json and config.json,
and a README saying how they fit together.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from captioner.decoder import Decoder
from captioner.encoder import RESIZE_FILTERS
from captioner.nouns import indefinite_article
from captioner.onnx_backend import MANIFEST_FILE, STEP_FILE, _export, _in_eval_mode, export_graphs
from captioner.photos.atomic import write_dir_atomically
from captioner.registry import CONFIG_FILE, VOCAB_FILE
from captioner.rules import (
    BANNED_IDS,
    SIZE_RATIO,
    SMALL_THING,
    SURE_CELL,
    THING_CELLS,
    EachNounOnce,
    SizeOnlyAfterANoun,
    decoding_rules,
)

if TYPE_CHECKING:
    from captioner.api import Captioner

PREPARE_FILE, DECODING_FILE = "prepare.onnx", "decoding.json"
REFERENCE_DECODER = Path(__file__).with_name("onnx_reference_decoder.py")
REFERENCE_DECODER_FILE = "reference_decoder.py"
USAGE_NOTES = """\
# ONNX graphs of the captioning model "{name}"

Exported by `captioner-export` (opset {opset}). Preprocess a photo as captioner does: RGB,
resized (not cropped) to {size} x {size} with bilinear (reducing_gap {gap} in Pillow), scaled
to [0, 1], normalised with mean {mean} and standard deviation {std}, channels first
(`ReferenceDecoder.pixels` in reference_decoder.py).

- `encoder.onnx`: `pixels` (batch, 3, {size}, {size}) -> `features` (batch, grid_h, grid_w,
  encoder_dim).
- `prepare.onnx`: `encoder_features` (encoder.onnx's `features`) -> {prepared}: once per
  image, what the step reads besides the words, and the decoder's first state, each output
  named as the step input it feeds.
- `decoder_step.onnx`: one word for every row (image x beam), as `Decoder.step` in
  captioner/decoder.py: inputs {inputs}; outputs {outputs} (`logits` are
  log-probabilities for a copy model). Rows are grouped by image, beams inner; `next_h`
  (and `next_c`) are the next step's `h` (and `c`).
- `vocab.json`: word ids; `<start>` begins every caption, `<end>` ends it.
- `decoding.json`: the search's rules as tables (the special ids, a copy model's noun of each
  word) and the words that take "an".
- The graphs and the reference decoder give the model's own captions: captioner's hedging
  ("an animal" where it is unsure), its person detector and taught words are Python around
  them, not in the graphs (`Captioner.set_hedging(None)` and `set_people(False)` match them).
- `reference_decoder.py`: greedy and beam search over these graphs in numpy and onnxruntime
  only, giving captioner's captions: `python reference_decoder.py photo.jpg --beam-size 5`
  (Pillow reads the photo), or `ReferenceDecoder(folder).caption(pixels)`.

With captioner installed, `Captioner.load(MODEL, backend="onnx")` runs these graphs for you.
"""


def export_onnx_folder(
    captioner: Captioner, model_dir: str | os.PathLike, out: str | os.PathLike
) -> Path:
    """Write (or replace, atomically) the folder `out` for the model loaded from `model_dir`.
    Raises OnnxUnavailableError when onnx is not installed."""

    def write(folder: Path) -> None:
        with _without_hedging(captioner.decoder):
            export_graphs(captioner.encoder, captioner.decoder, folder)
            _export_prepare_graph(captioner, folder)
            tables = _decoding_tables(captioner)
        (folder / DECODING_FILE).write_text(json.dumps(tables, indent=1))
        shutil.copyfile(REFERENCE_DECODER, folder / REFERENCE_DECODER_FILE)
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
        # The encoder's own: EfficientNet-Lite's are 0.5, a torchvision ResNet's ImageNet's.
        mean=captioner.encoder.mean,
        std=captioner.encoder.std,
        gap=RESIZE_FILTERS[captioner.encoder.preprocessing.resize_filter],
        prepared=", ".join(f"`{name}`" for name in _prepared_names(folder)),
        inputs=", ".join(f"`{node.name}`" for node in step.graph.input),
        outputs=", ".join(f"`{name}`" for name in described["step_outputs"]),
    )


@contextlib.contextmanager
def _without_hedging(decoder: Decoder) -> Iterator[None]:
    """The graphs are the model's own: hedging (noun_tree.py) and the person detector are
    captioner's Python around it, so the exported folder gives the unhedged captions."""
    hedge = decoder.hedge
    decoder.set_hedge(None)
    try:
        yield
    finally:
        decoder.set_hedge(hedge)


class _Prepare(nn.Module):
    """Decoder.prepare and initial_state as one graph: features -> the step's inputs other
    than the words, in `names` order."""

    def __init__(self, decoder: Decoder, names: list[str]) -> None:
        super().__init__()
        self.decoder, self.names = decoder, names

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        memory = self.decoder.prepare(features)
        state = self.decoder.initial_state(memory)
        given = memory._asdict() | {"h": state.h, "c": state.c}
        return tuple(given[name] for name in self.names)


def _prepared_names(folder: Path) -> list[str]:
    """The step graph's inputs that prepare.onnx gives: all but the words."""
    import onnx

    step = onnx.load(str(folder / STEP_FILE), load_external_data=False)
    return [node.name for node in step.graph.input if node.name != "words"]


def _export_prepare_graph(captioner: Captioner, folder: Path) -> None:
    names = _prepared_names(folder)
    encoder, decoder = captioner.encoder, captioner.decoder
    size = encoder.config.image_size
    with torch.no_grad(), _in_eval_mode(encoder), _in_eval_mode(decoder):
        features = encoder(torch.zeros(2, 3, size, size))
        per_table = ("copy_words", "copy_slots")  # the same for every image: no batch axis
        _export(
            _Prepare(decoder, names).eval(),
            (features,),
            folder / PREPARE_FILE,
            # Not "features": an output has that name, and would rename the input.
            inputs={"encoder_features": {0: "batch"}},
            outputs={name: {} if name in per_table else {0: "batch"} for name in names},
        )


def _decoding_tables(captioner: Captioner) -> dict:
    """What reference_decoder.py needs besides the graphs: the rules' tables (captioner/rules.py)
    and the input's preprocessing."""
    vocab, decoder, encoder = captioner.vocab, captioner.decoder, captioner.encoder
    rules = decoding_rules(decoder, end_id=vocab.end_id, banned_ids=BANNED_IDS)
    each_noun_once = [rule for rule in rules if isinstance(rule, EachNounOnce)]
    size_rule = next((rule for rule in rules if isinstance(rule, SizeOnlyAfterANoun)), None)
    return {
        "start_id": vocab.start_id,
        "end_id": vocab.end_id,
        "banned_ids": list(BANNED_IDS),
        # -1 for a word that is no noun; a copy model's nouns (singular and plural) share one.
        "noun_of_word": (each_noun_once[0].column - 1).tolist() if each_noun_once else None,
        "an_words": [word for word in vocab.itos if indefinite_article(word) == "an"],
        # Size words before the first noun only where the photo shows things of clearly
        # different sizes (rules.size_openings), None for a model without the rule.
        "size_rule": None
        if size_rule is None
        else {
            "size_ids": size_rule.is_size.nonzero().flatten().tolist(),
            "small_ids": size_rule.is_small.nonzero().flatten().tolist(),
            "sure_cell": SURE_CELL,
            "thing_cells": THING_CELLS,
            "size_ratio": SIZE_RATIO,
            "small_thing": SMALL_THING,
        },
        "image_size": encoder.config.image_size,
        "mean": list(encoder.mean),
        "std": list(encoder.std),
        "reducing_gap": RESIZE_FILTERS[encoder.preprocessing.resize_filter],
        "draft_decoding": encoder.preprocessing.draft_decoding,
    }
