"""The ONNX Runtime backend: the same features, captions, scores and maps as PyTorch."""

import dataclasses
import sys

import numpy as np
import pytest
import torch
from test_beam import BANNED, END, START, attach_random_noun_head, noise_images

from captioner import onnx_backend
from captioner.beam import beam_search
from captioner.consensus import sample_captions
from captioner.decoder import Decoder, DecoderConfig, DecoderState, ImageMemory, StepOutput
from captioner.encoder import Encoder
from captioner.onnx_backend import OnnxUnavailableError, cpu_session


class StepGraph:
    """A decoder whose `step` runs the exported step graph, as a program using the graphs
    elsewhere would: beam search and sampling read nothing else of it."""

    def __init__(self, decoder: Decoder, session, manifest: dict) -> None:
        self.torch_decoder = decoder
        self.session = session
        # Only the inputs the graph kept: the exporter drops one that no output depends on.
        self.input_names = [node.name for node in session.get_inputs()]
        self.output_names = manifest["step_outputs"]
        self.gate_names = manifest["gates"]

    @property
    def config(self):
        return self.torch_decoder.config

    @property
    def noun_singular_ids(self) -> torch.Tensor:
        return self.torch_decoder.noun_singular_ids

    @property
    def noun_plural_ids(self) -> torch.Tensor:
        return self.torch_decoder.noun_plural_ids

    def prepare(self, features: torch.Tensor) -> ImageMemory:
        return self.torch_decoder.prepare(features)

    def initial_state(self, memory: ImageMemory) -> DecoderState:
        return self.torch_decoder.initial_state(memory)

    def step(self, words: torch.Tensor, state: DecoderState, memory: ImageMemory) -> StepOutput:
        given = {"words": words, "h": state.h, "c": state.c, **memory._asdict()}
        feed = {name: given[name].contiguous().numpy() for name in self.input_names}
        out = dict(zip(self.output_names, self.session.run(None, feed), strict=True))
        out = {name: torch.from_numpy(value) for name, value in out.items()}
        return StepOutput(
            logits=out["logits"],
            state=DecoderState(out["next_h"], out.get("next_c")),
            alpha=out["alpha"],
            beta=out["beta"],
            gates={name: out[f"gate_{name}"] for name in self.gate_names},
            copy_gate=out.get("copy_gate"),
        )


SEARCH = {"start_id": START, "end_id": END, "banned_ids": BANNED, "max_length": 8}


def random_decoder(cell: str, copy: bool, encoder_dim: int, semantic: bool = False) -> Decoder:
    torch.manual_seed(1)
    config = DecoderConfig(
        30, encoder_dim, 16, 32, 24, 0.0, cell, "mean", True, True, True,
        copy_nouns=5 if copy else 0, copy_classes=12, semantic_features=semantic,
    )  # fmt: skip
    decoder = Decoder(config).eval()
    with torch.no_grad():
        decoder.output.weight.mul_(4.0)
    if copy:  # the last noun is like "sheep": its plural is its singular
        attach_random_noun_head(decoder, [20, 21, 22, 23, 24], [25, 26, 27, 28, 24])
    return decoder


def onnx_decoder(decoder: Decoder, features: torch.Tensor, directory) -> StepGraph:
    onnx_backend.export_step_graph(decoder, features[:2], directory)
    manifest = onnx_backend.json.loads((directory / onnx_backend.MANIFEST_FILE).read_text())
    session = cpu_session(onnx_backend._require("onnxruntime", ""), directory / "decoder_step.onnx")
    return StepGraph(decoder, session, manifest)


@pytest.mark.parametrize(
    "cell, copy, encoder_dim, semantic",
    [
        ("lstm", False, 64, False),  # wide features: the projected form of the step
        ("lstm", False, 4, False),  # narrow: averaged first
        ("rnn", False, 8, False),
        ("gru", False, 8, False),
        ("gru", True, 8, False),
        ("lstm", True, 64, True),
    ],
)
def test_beam_search_through_the_step_graph_equals_pytorch(
    cell, copy, encoder_dim, semantic, tmp_path
):
    decoder = random_decoder(cell, copy, encoder_dim, semantic)
    features = torch.randn(5, 3, 3, encoder_dim)
    graph = onnx_decoder(decoder, features, tmp_path)
    for options in ({"beam_size": 4}, {"beam_size": 3, "length_alpha": 1.0}):
        ours = beam_search(graph, features, **SEARCH, **options)
        theirs = beam_search(decoder, features, **SEARCH, **options)
        for per_image, expected in zip(ours, theirs, strict=True):
            assert [h.token_ids for h in per_image] == [h.token_ids for h in expected]
            for a, b in zip(per_image, expected, strict=True):
                assert a.score == pytest.approx(b.score, abs=1e-4)
                np.testing.assert_allclose(a.alphas, b.alphas, atol=1e-4)
                np.testing.assert_allclose(a.context_gate, b.context_gate, atol=1e-4)
                assert a.gates.keys() == b.gates.keys()
                for name in a.gates:
                    np.testing.assert_allclose(a.gates[name], b.gates[name], atol=1e-4)
                if copy:
                    np.testing.assert_allclose(a.copy_gate, b.copy_gate, atol=1e-4)
    drawn = sample_captions(graph, features, num_samples=6, **SEARCH)
    assert drawn == sample_captions(decoder, features, num_samples=6, **SEARCH)


def test_the_encoder_graph_gives_the_same_features_and_is_cached_by_weights(
    tiny_captioner, tmp_path
):
    encoder = tiny_captioner.encoder
    graph = onnx_backend.onnx_encoder(encoder, tmp_path)
    pixels = torch.stack([encoder.preprocess(image) for image in noise_images(3)])
    with torch.no_grad():
        expected = encoder(pixels)
    np.testing.assert_allclose(graph(pixels).numpy(), expected.numpy(), atol=1e-4)

    def exported() -> dict[str, int]:
        return {str(p.relative_to(tmp_path)): p.stat().st_mtime_ns for p in tmp_path.rglob("*.*")}

    [name] = first = exported()
    assert name.startswith("encoder-") and name.endswith("/encoder.onnx")
    onnx_backend.onnx_encoder(encoder, tmp_path)  # cached: nothing is exported again
    assert exported() == first

    tuned = Encoder(dataclasses.replace(encoder.config, fine_tune_blocks=1))
    tuned.load_state_dict(encoder.state_dict())
    with torch.no_grad():
        next(p for p in tuned.parameters() if p.requires_grad).add_(0.01)
    onnx_backend.onnx_encoder(tuned, tmp_path)  # other weights: a graph of its own
    assert len(exported()) == 2


def test_a_missing_runtime_is_named_with_its_install_command(tiny_captioner, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(OnnxUnavailableError, match="pip install onnxruntime"):
        onnx_backend.onnx_encoder(tiny_captioner.encoder, tmp_path)


@pytest.mark.parametrize("training", [False, True])
def test_exporting_leaves_the_decoder_in_its_mode(training, tmp_path):
    """The exporter restores the mode of the module it is given; a wrapper left in training
    mode used to switch the decoder's dropout on for every later PyTorch caption."""
    decoder = random_decoder("gru", True, 8).train(training)
    onnx_backend.export_step_graph(decoder, torch.randn(2, 3, 3, 8), tmp_path)
    assert decoder.training == training
    assert all(module.training == training for module in decoder.modules())
