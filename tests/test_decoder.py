"""Decoder options that a toy task shows are needed: coordinates (where did it look?) and word
attention (look where the word just read points)."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from captioner.decoder import MOVED_TO, Decoder, DecoderConfig

START, END, LEFT, RIGHT, SMALL, LARGE = 1, 2, 4, 5, 6, 7
COLOURS = 4  # colour words are ids 8 to 11


def one_object_scenes(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The same object feature in one random cell of an empty 4 x 4 grid; the caption says
    which half of the grid it is in."""
    features = torch.zeros(count, 4, 4, 8)
    rows = torch.randint(0, 4, (count,), generator=generator)
    columns = torch.randint(0, 4, (count,), generator=generator)
    features[torch.arange(count), rows, columns] = 1.0
    words = torch.where(columns < 2, LEFT, RIGHT)
    captions = torch.stack([torch.full_like(words, START), words, torch.full_like(words, END)], 1)
    return features, captions


@pytest.mark.parametrize("coordinates", [False, True])
def test_coordinates_let_the_decoder_say_where_the_object_is(coordinates):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    config = DecoderConfig(6, 8, 8, 32, 16, dropout=0.0, cell="gru", coordinates=coordinates)
    decoder = Decoder(config)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-2)
    for _ in range(150):
        features, captions = one_object_scenes(64, generator)
        logits, _ = decoder(features, captions)
        loss = F.cross_entropy(logits.transpose(1, 2), captions[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    features, captions = one_object_scenes(400, generator)
    with torch.no_grad():
        logits, _ = decoder.eval()(features, captions)
    accuracy = (logits[:, 0].argmax(-1) == captions[:, 1]).float().mean().item()
    if coordinates:
        assert accuracy > 0.95
    else:  # every grid holds the same values in another order: left and right look the same
        assert accuracy < 0.65


def two_object_scenes(
    count: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A small and a large object of two different colours in random cells of a 4 x 4 grid
    (feature channels: colour one-hot, then small, large); the caption names one of them at
    random, "SIZE COLOUR". Also returns the named object's cell."""
    features = torch.zeros(count, 16, COLOURS + 2)
    index = torch.arange(count)
    cells = torch.rand(count, 16, generator=generator).argsort(1)[:, :2]  # two distinct cells
    colours = torch.rand(count, COLOURS, generator=generator).argsort(1)[:, :2]
    for size in (0, 1):
        features[index, cells[:, size], colours[:, size]] = 1.0
        features[index, cells[:, size], COLOURS + size] = 1.0
    named = torch.randint(0, 2, (count,), generator=generator)
    size_words = torch.where(named == 0, SMALL, LARGE)
    colour_words = 8 + colours[index, named]
    start, end = torch.full_like(named, START), torch.full_like(named, END)
    captions = torch.stack([start, size_words, colour_words, end], 1)
    return features.view(count, 4, 4, COLOURS + 2), captions, cells[index, named]


@pytest.mark.parametrize("word_attention", [False, True])
def test_word_attention_looks_at_the_object_the_last_word_picked(word_attention):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    config = DecoderConfig(
        8 + COLOURS, COLOURS + 2, 8, 32, 16, dropout=0.0, cell="gru", word_attention=word_attention
    )
    decoder = Decoder(config)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-2)
    for _ in range(200):
        features, captions, _ = two_object_scenes(64, generator)
        logits, _ = decoder(features, captions)
        loss = F.cross_entropy(logits.transpose(1, 2), captions[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    features, captions, named_cells = two_object_scenes(400, generator)
    with torch.no_grad():
        logits, alphas = decoder.eval()(features, captions)
    colour_right = (logits[:, 1].argmax(-1) == captions[:, 2]).float().mean().item()
    assert colour_right > 0.95  # a mix of both objects, unevenly weighted, also tells them apart
    pointing = (alphas[:, 1].argmax(-1) == named_cells).float().mean().item()
    if word_attention:
        assert pointing > 0.95
    else:  # where it looked was chosen before the size word was read: right half the time
        assert pointing < 0.65


def tutorial_options_decoder(activation: str, gate: str, encoder_dim: int) -> Decoder:
    torch.manual_seed(3)
    config = DecoderConfig(
        20, encoder_dim, 8, 16, 12, dropout=0.0, attention_activation=activation, context_gate=gate
    )
    return Decoder(config).eval()


@pytest.mark.parametrize("encoder_dim", [64, 4])  # wide: the projected step; narrow: averaged
@pytest.mark.parametrize("activation, gate", [("relu", "channel"), ("relu", "scalar")])
def test_step_equals_teacher_forcing_with_the_tutorials_attention_and_gate(
    activation, gate, encoder_dim
):
    decoder = tutorial_options_decoder(activation, gate, encoder_dim)
    features = torch.randn(3, 3, 3, encoder_dim)
    captions = torch.randint(4, 20, (3, 5))
    with torch.no_grad():
        logits, alphas = decoder(features, captions)
        memory = decoder.prepare(features)
        state = decoder.initial_state(memory)
        for t in range(captions.shape[1] - 1):
            out = decoder.step(captions[:, t], state, memory)
            torch.testing.assert_close(out.logits, logits[:, t], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out.alpha, alphas[:, t], atol=1e-6, rtol=1e-5)
            assert out.beta.shape == (3,)
            state = out.state
    if gate == "channel":
        assert memory.projected_features is None  # a gate per channel scales before projecting


def test_relu_attention_scores_cells_differently_from_tanh():
    tanh = tutorial_options_decoder("tanh", "scalar", 8)
    relu = tutorial_options_decoder("relu", "scalar", 8)
    relu.load_state_dict(tanh.state_dict())
    features = torch.randn(2, 3, 3, 8) * 3
    with torch.no_grad():
        memory = tanh.prepare(features)
        state = tanh.initial_state(memory)
        words = torch.full((2,), START)
        expected_energy = (memory.attention_keys + tanh.decoder_att(state.h).unsqueeze(1)).relu()
        expected = tanh.full_att(expected_energy).squeeze(-1).softmax(-1)
        alpha = relu.step(words, state, memory).alpha
        torch.testing.assert_close(alpha, expected)
        assert not torch.allclose(alpha, tanh.step(words, state, memory).alpha, atol=1e-3)


def test_a_gate_per_channel_with_equal_channels_is_the_scalar_gate():
    scalar = tutorial_options_decoder("tanh", "scalar", 8)
    channel = tutorial_options_decoder("tanh", "channel", 8)
    assert channel.context_gate.weight.shape == (8, 16)
    state = scalar.state_dict()
    state["context_gate.weight"] = state["context_gate.weight"].expand(8, -1)
    state["context_gate.bias"] = state["context_gate.bias"].expand(8)
    channel.load_state_dict(state)
    features = torch.randn(2, 3, 3, 8)
    captions = torch.randint(4, 20, (2, 4))
    with torch.no_grad():
        torch.testing.assert_close(channel(features, captions)[0], scalar(features, captions)[0])
        # Unequal channels gate each feature on its own: the logits change.
        channel.context_gate.weight.normal_()
        assert not torch.allclose(channel(features, captions)[0], scalar(features, captions)[0])


def test_unknown_attention_activation_or_gate_is_refused():
    with pytest.raises(ValueError, match="attention activation 'sigmoid'"):
        Decoder(DecoderConfig(10, 4, attention_activation="sigmoid"))
    with pytest.raises(ValueError, match="context gate 'vector'"):
        Decoder(DecoderConfig(10, 4, context_gate="vector"))


@pytest.mark.parametrize("encoder_dim", [64, 4])
def test_the_step_graph_exports_the_tutorials_options(encoder_dim, tmp_path):
    pytest.importorskip("onnxruntime")
    from test_onnx_backend import onnx_decoder

    decoder = tutorial_options_decoder("relu", "channel", encoder_dim)
    features = torch.randn(3, 3, 3, encoder_dim)
    graph = onnx_decoder(decoder, features, tmp_path)
    with torch.no_grad():
        memory = decoder.prepare(features)
        state = decoder.initial_state(memory).repeat_rows(2)
        words = torch.randint(4, 20, (6,))
        ours, theirs = graph.step(words, state, memory), decoder.step(words, state, memory)
    for name in ("logits", "alpha", "beta"):
        torch.testing.assert_close(getattr(ours, name), getattr(theirs, name), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours.state.h, theirs.state.h, atol=1e-5, rtol=1e-4)


SHIPPED = Path(__file__).resolve().parent.parent / "captioner" / "models"
# Recorded from the one-class decoder (captioner/decoder.py at commit 946429e), before attention
# and the copy head became modules, for the inputs of the test below: the third step's best word
# and its score per row, the cell each row looks at most, the context gate, the copy gate and the
# log-probability of saying a plural; then teacher forcing's best score at each position.
BEFORE_THE_SPLIT = {
    "default": {
        "grid": 7,
        "words": [[1, 1, 1, 1], [4, 10, 4, 10], [20, 30, 40, 50]],
        "best": [2, 9, 2, 8],
        "score": [-0.40585, -1.4999, -0.20468, -2.21216],
        "cell": [21, 2, 1, 1],
        "beta": [0.69109, 0.66385, 0.69173, 0.66445],
        "copy_gate": [0.11877, 0.0918, 0.01885, 0.12698],
        "plural": [-8.37835, -2.79986, -8.0421, -2.36931],
        "forced": [-0.88212, -0.76309, -2.32726, -0.87317, -0.92959, -1.11393],
    },
    "shapes": {
        "grid": 14,
        "words": [[1, 1, 1, 1], [4, 10, 4, 10], [20, 30, 40, 41]],
        "best": [13, 13, 13, 13],
        "score": [5.98017, 3.91336, 5.07503, 2.83355],
        "cell": [194, 21, 82, 50],
        "beta": [0.93864, 0.90698, 0.93886, 0.90754],
        "copy_gate": None,
        "plural": None,
        "forced": [3.96663, 5.52862, 7.73061, 3.95786, 4.03179, 7.43132],
    },
}


@pytest.mark.parametrize("name", BEFORE_THE_SPLIT)
def test_the_shipped_models_load_strictly_and_step_as_before(name):
    folder = SHIPPED / name
    config = DecoderConfig.from_dict(json.loads((folder / "config.json").read_text())["decoder"])
    tensors = load_file(folder / "model.safetensors")
    state = {k.removeprefix("decoder."): v for k, v in tensors.items() if k.startswith("decoder.")}
    decoder = Decoder(config).eval()
    decoder.load_state_dict(state, strict=True)
    saved = decoder.state_dict()  # saving gives the file's names and tensors back
    assert sorted(saved) == sorted(state)
    assert all(torch.equal(saved[key], state[key]) for key in state)

    before = BEFORE_THE_SPLIT[name]
    grid, dim = before["grid"], config.encoder_dim
    # Two images of smooth, deterministic features (no random generator involved).
    features = torch.arange(2 * grid * grid * dim).mul(0.37).sin().mul(2).view(2, grid, grid, dim)
    with torch.no_grad():
        memory = decoder.prepare(features)
        state = decoder.initial_state(memory).repeat_rows(2)  # two beams an image
        for words in before["words"]:
            out = decoder.step(torch.tensor(words), state, memory)
            state = out.state
        forced, _ = decoder(features, torch.tensor([[1, 4, 5, 6], [1, 7, 8, 9]]))
    close = {"atol": 1e-4, "rtol": 0, "check_dtype": False}
    best = out.logits.max(-1)
    assert best.indices.tolist() == before["best"]
    torch.testing.assert_close(best.values, torch.tensor(before["score"]), **close)
    assert out.alpha.argmax(-1).tolist() == before["cell"]
    torch.testing.assert_close(out.beta, torch.tensor(before["beta"]), **close)
    if before["copy_gate"] is None:
        assert out.copy_gate is None
    else:
        torch.testing.assert_close(out.copy_gate, torch.tensor(before["copy_gate"]), **close)
        plurals = set(decoder.noun_plural_ids.tolist()) - set(decoder.noun_singular_ids.tolist())
        plural = out.logits[:, sorted(plurals)].logsumexp(-1)
        torch.testing.assert_close(plural, torch.tensor(before["plural"]), **close)
    torch.testing.assert_close(
        forced.max(-1).values.flatten(), torch.tensor(before["forced"]), **close
    )


def copy_decoder() -> Decoder:
    config = DecoderConfig(30, 12, 8, 16, 10, word_attention=True, copy_nouns=3, copy_classes=7)
    return Decoder(config)


def test_moved_to_names_everything_the_attention_and_the_copy_head_hold():
    decoder = copy_decoder()
    held = {
        submodule: {key.split(".")[0] for key in getattr(decoder, submodule).state_dict()}
        for submodule in ("attention", "copy_head")
    }
    assert held == {
        submodule: {name for name, owner in MOVED_TO.items() if owner == submodule}
        for submodule in held
    }
    for name, submodule in MOVED_TO.items():  # the old attribute names still reach them
        assert getattr(decoder, name) is getattr(getattr(decoder, submodule), name)
    assert not hasattr(Decoder(DecoderConfig(30, 12)), "copy_gate")  # no copy head, no gate


def test_the_state_dict_keeps_flat_names_inside_a_larger_model_and_loads_back():
    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"encoder": torch.nn.Linear(2, 2), "decoder": copy_decoder()})
    state = model.state_dict()
    assert "decoder.encoder_att.weight" in state and "decoder.copy_gate.bias" in state
    assert not any(".attention." in key or ".copy_head." in key for key in state)
    assert list(state)[:3] == ["encoder.weight", "encoder.bias", "decoder.noun_head_weight"]
    torch.manual_seed(1)
    other = torch.nn.ModuleDict({"encoder": torch.nn.Linear(2, 2), "decoder": copy_decoder()})
    other.load_state_dict(state, strict=True)
    assert torch.equal(other["decoder"].attention.full_att.weight, state["decoder.full_att.weight"])
    assert torch.equal(other["decoder"].copy_head.copy_gate.bias, state["decoder.copy_gate.bias"])


def test_a_copy_heads_weights_into_a_decoder_without_one_are_named_as_saved():
    plain = Decoder(DecoderConfig(30, 12, 8, 16, 10, word_attention=True))
    with pytest.raises(RuntimeError, match='Unexpected key.*"copy_gate.weight"'):
        plain.load_state_dict(copy_decoder().state_dict())
