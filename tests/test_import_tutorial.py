"""captioner-import tutorial: checkpoints of sgrvinod/a-PyTorch-Tutorial-to-Image-Captioning.

The checkpoints are made here, with torch.save, from stand-ins of the tutorial's models.py
classes: same module and class names (models.Encoder, ...), same attributes, and the same
computations as its caption.py runs, so a pickle of them is laid out as the tutorial's is.
"""

from __future__ import annotations

import builtins
import copy
import json
import os
import sys
import types

import pytest
import torch
import torchvision
from safetensors.torch import load_file
from torch import nn

from captioner.api import Captioner
from captioner.beam import beam_search
from captioner.cli.batch.command import main as caption_main
from captioner.cli.importing import main
from captioner.files.safe_unpickle import PickledObject, UnsafePickleError, read_checkpoint
from captioner.files.tutorial_import import (
    TutorialImportError,
    decoder_tensors,
    read_tutorial_checkpoint,
)
from captioner.registry import MODELS_DIR
from captioner.vocab import Vocabulary

WORDS = ["a", "dog", "on", "the", "grass", "cat"]
# As the tutorial's create_input_files numbers them: <pad> 0, the words, <unk>, <start>, <end>.
WORD_MAP = {word: i + 1 for i, word in enumerate(WORDS)}
WORD_MAP |= {"<unk>": 7, "<start>": 8, "<end>": 9, "<pad>": 0}
SAYABLE = {*WORDS, "an"}  # captioner writes "a" as "an" before a vowel (vocab.fix_articles)
ENCODER_DIM, EMBED_DIM, DECODER_DIM, ATTENTION_DIM = 2048, 8, 16, 12


class Encoder(nn.Module):
    __module__ = "models"

    def __init__(self, encoded_image_size: int = 14) -> None:
        super().__init__()
        self.enc_image_size = encoded_image_size
        resnet = torchvision.models.resnet101(weights=None)
        self.resnet = nn.Sequential(*list(resnet.children())[:-2])
        self.adaptive_pool = nn.AdaptiveAvgPool2d((encoded_image_size, encoded_image_size))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.adaptive_pool(self.resnet(images)).permute(0, 2, 3, 1)


class Attention(nn.Module):
    __module__ = "models"

    def __init__(self) -> None:
        super().__init__()
        self.encoder_att = nn.Linear(ENCODER_DIM, ATTENTION_DIM)
        self.decoder_att = nn.Linear(DECODER_DIM, ATTENTION_DIM)
        self.full_att = nn.Linear(ATTENTION_DIM, 1)
        self.relu = nn.ReLU()
        self.softmax = nn.Softmax(dim=1)

    def forward(self, encoder_out, decoder_hidden):  # (batch, P, E), (batch, D)
        att1 = self.encoder_att(encoder_out)
        att2 = self.decoder_att(decoder_hidden).unsqueeze(1)
        alpha = self.softmax(self.full_att(self.relu(att1 + att2)).squeeze(2))
        return (encoder_out * alpha.unsqueeze(2)).sum(dim=1), alpha


class DecoderWithAttention(nn.Module):
    __module__ = "models"

    def __init__(self) -> None:
        super().__init__()
        vocab_size = len(WORD_MAP)
        self.attention = Attention()
        self.embedding = nn.Embedding(vocab_size, EMBED_DIM)
        self.dropout = nn.Dropout(p=0.5)
        self.decode_step = nn.LSTMCell(EMBED_DIM + ENCODER_DIM, DECODER_DIM)
        self.init_h = nn.Linear(ENCODER_DIM, DECODER_DIM)
        self.init_c = nn.Linear(ENCODER_DIM, DECODER_DIM)
        self.f_beta = nn.Linear(DECODER_DIM, ENCODER_DIM)
        self.sigmoid = nn.Sigmoid()
        self.fc = nn.Linear(DECODER_DIM, vocab_size)

    def step(self, encoder_out, words, h, c):
        """One word as caption.py decodes it: scores, alpha and the new state."""
        embeddings = self.embedding(words)
        awe, alpha = self.attention(encoder_out, h)
        awe = self.sigmoid(self.f_beta(h)) * awe
        h, c = self.decode_step(torch.cat([embeddings, awe], dim=1), (h, c))
        return self.fc(h), alpha, h, c


class SystemCall:
    """A pickle that, unpickled by the standard unpickler, runs `function(*args)`."""

    def __init__(self, function, *args) -> None:
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def save_as_the_tutorial(obj, path, monkeypatch, **options) -> None:
    """torch.save with the stand-ins importable as the tutorial's `models` module."""
    models = types.ModuleType("models")
    models.Encoder, models.Attention = Encoder, Attention
    models.DecoderWithAttention = DecoderWithAttention
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "models", models)
        torch.save(obj, path, **options)


@pytest.fixture(scope="module")
def tutorial_modules() -> tuple[Encoder, DecoderWithAttention]:
    torch.manual_seed(0)
    encoder, decoder = Encoder().eval(), DecoderWithAttention().eval()
    with torch.no_grad():
        # Random BatchNorm statistics, and larger attention and output weights than their
        # initialisation, so that a mapping error cannot hide in near-uniform outputs.
        for module in encoder.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
        decoder.attention.encoder_att.weight.mul_(20)
        decoder.attention.full_att.weight.mul_(5)
        decoder.fc.weight.mul_(10)
    return encoder, decoder


@pytest.fixture(scope="module")
def tutorial_files(tutorial_modules, tmp_path_factory):
    """train.py's checkpoint (with its Adam state) and WORDMAP file."""
    encoder, decoder = tutorial_modules
    optimizer = torch.optim.Adam(decoder.parameters(), lr=4e-4)
    decoder.fc.bias.grad = torch.ones_like(decoder.fc.bias)
    optimizer.step()  # an optimizer state keyed by the decoder's parameters, as after training
    decoder.fc.bias.grad = None
    checkpoint = {
        "epoch": 7,
        "epochs_since_improvement": 0,
        "bleu-4": 0.2431,
        "encoder": encoder,
        "decoder": decoder,
        "encoder_optimizer": None,
        "decoder_optimizer": optimizer,
    }
    folder = tmp_path_factory.mktemp("tutorial")
    path = folder / "BEST_checkpoint_coco_5_cap_per_img_5_min_word_freq.pth.tar"
    with pytest.MonkeyPatch.context() as monkeypatch:
        save_as_the_tutorial(checkpoint, path, monkeypatch)
    word_map = folder / "WORDMAP_coco_5_cap_per_img_5_min_word_freq.json"
    word_map.write_text(json.dumps(WORD_MAP))
    return path, word_map


def no_download(*args, **kwargs):
    raise AssertionError(f"tried to download {args}: the checkpoint brings the encoder's weights")


@pytest.fixture(scope="module")
def imported(tutorial_files, tmp_path_factory):
    checkpoint, word_map = tutorial_files
    out = tmp_path_factory.mktemp("models") / "tutorial"
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", no_download)
        assert main(["tutorial", str(checkpoint), str(word_map), str(out)]) == 0
        return out, Captioner.load(out, device="cpu", backend="torch")


def test_the_decoder_steps_as_the_tutorials_modules(imported, tutorial_modules):
    _, captioner = imported
    _, tutorial = tutorial_modules
    torch.manual_seed(1)
    features = torch.randn(2, 4, 4, ENCODER_DIM)  # (batch, grid, grid, encoder_dim)
    encoder_out = features.flatten(1, 2)
    # captioner's word ids, and the tutorial's for the same words
    ours = torch.tensor([captioner.vocab.stoi[w] for w in ("<start>", "a", "dog", "on")])
    theirs = torch.tensor([WORD_MAP[w] for w in ("<start>", "a", "dog", "on")])
    rows = [WORD_MAP[w] for w in captioner.vocab.itos]  # captioner id -> the tutorial's
    decoder = captioner.decoder
    with torch.no_grad():
        memory = decoder.prepare(features)
        state = decoder.initial_state(memory)
        h, c = tutorial.init_h(encoder_out.mean(1)), tutorial.init_c(encoder_out.mean(1))
        torch.testing.assert_close(state.h, h, atol=1e-5, rtol=1e-5)
        for ours_word, theirs_word in zip(ours, theirs, strict=True):
            out = decoder.step(ours_word.expand(2), state, memory)
            scores, alpha, h, c = tutorial.step(encoder_out, theirs_word.expand(2), h, c)
            torch.testing.assert_close(out.logits, scores[:, rows], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out.alpha, alpha, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out.state.h, h, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out.state.c, c, atol=1e-5, rtol=1e-5)
            assert alpha.max() > 0.2  # attention that picks cells: a mix-up would show
            state = out.state


def test_the_encoder_gives_the_tutorial_encoders_features(imported, tutorial_modules, photos):
    out, captioner = imported
    encoder, _ = tutorial_modules
    pixels = captioner.preprocess(photos["chelsea"]).unsqueeze(0)  # (1, 3, 256, 256)
    assert pixels.shape == (1, 3, 256, 256)
    with torch.no_grad():
        expected = encoder(pixels)  # (1, 14, 14, 2048)
    features = captioner.encode(pixels)
    assert features.shape == expected.shape == (1, 14, 14, 2048)
    scale = expected.abs().max()
    torch.testing.assert_close(features / scale, expected / scale, atol=1e-5, rtol=1e-5)
    config = json.loads((out / "config.json").read_text())
    assert config["encoder"] | {"weights": None} == {
        "name": "resnet101",
        "image_size": 256,
        "feature_stride": 32,
        "grid_size": 14,
        "fine_tune_blocks": 3,
        "weights": None,
    }
    assert config["decoder"]["attention_activation"] == "relu"
    assert config["decoder"]["context_gate"] == "channel"
    assert config["imported_from"]["epoch"] == 7
    assert config["imported_from"]["bleu-4"] == pytest.approx(0.2431)


def test_the_imported_model_captions_a_photo_and_keeps_its_encoder_when_saved(
    imported, photos, tmp_path
):
    _, captioner = imported
    result = captioner.caption(photos["chelsea"])
    assert len(result.tokens) >= 1 and set(result.tokens) <= SAYABLE
    assert result.alphas.shape == (len(result.tokens), 14, 14)
    # The vocabulary is the word map's, with captioner's special tokens first.
    assert captioner.vocab == Vocabulary(WORDS)
    captioner.save(tmp_path / "again")
    saved = load_file(tmp_path / "again" / "model.safetensors")
    assert "encoder.backbone.4.2.conv3.weight" in saved  # fine-tuned: its weights travel with it


def test_a_state_dict_checkpoint_imports_to_the_same_weights(imported, tutorial_modules, tmp_path):
    out, _ = imported
    encoder, decoder = tutorial_modules
    path = tmp_path / "state_dicts.pth"
    torch.save({"encoder": encoder.state_dict(), "decoder": decoder.state_dict()}, path)
    again = tmp_path / "from_state_dicts"
    word_map = tmp_path / "WORDMAP.json"
    word_map.write_text(json.dumps(WORD_MAP))
    assert main(["tutorial", str(path), str(word_map), str(again)]) == 0
    first, second = load_file(out / "model.safetensors"), load_file(again / "model.safetensors")
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_modules_wrapped_in_data_parallel_read_as_the_modules(
    tutorial_modules, tmp_path, monkeypatch
):
    encoder, decoder = tutorial_modules
    path = tmp_path / "parallel.pth.tar"
    wrapped = {"encoder": nn.DataParallel(encoder), "decoder": nn.DataParallel(decoder)}
    save_as_the_tutorial(wrapped, path, monkeypatch)
    saved = read_tutorial_checkpoint(path)
    for read, module in ((saved.encoder, encoder), (saved.decoder, decoder)):
        assert read.keys() == module.state_dict().keys()
        assert all(torch.equal(read[k], v) for k, v in module.state_dict().items())


@pytest.mark.parametrize(
    "function, args",
    [
        (os.system, ("touch {marker}",)),
        (builtins.open, ("{marker}", "w")),
        (builtins.exec, ("open({marker!r}, 'w').close()",)),
    ],
)
def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(
    function, args, tmp_path, monkeypatch, capsys
):
    marker = tmp_path / "ran"
    payload = SystemCall(function, *(a.format(marker=str(marker)) for a in args))
    decoder = DecoderWithAttention()
    decoder.hidden = payload  # deep inside an allowed module's state
    path = tmp_path / "evil.pth.tar"
    save_as_the_tutorial({"encoder": None, "decoder": decoder}, path, monkeypatch)
    name = f"{function.__module__}.{function.__name__}"  # posix.system, builtins.open, ...
    with pytest.raises(UnsafePickleError, match=f"refusing to load {name}"):
        read_checkpoint(path)
    word_map = tmp_path / "WORDMAP.json"
    word_map.write_text(json.dumps(WORD_MAP))
    assert main(["tutorial", str(path), str(word_map), str(tmp_path / "out")]) == 1
    assert f"refusing to load {name}" in capsys.readouterr().err
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_a_torchscript_archive_is_refused(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), path)  # torch.load would run it
    with pytest.raises(UnsafePickleError, match="a TorchScript archive"):
        read_checkpoint(path)


@pytest.mark.filterwarnings("ignore:Couldn't retrieve source code")  # torch.save's, of stand-ins
def test_the_legacy_format_reads_modules_as_data(tmp_path, monkeypatch):
    decoder = DecoderWithAttention()
    path = tmp_path / "legacy.pth.tar"
    save_as_the_tutorial(
        {"decoder": decoder}, path, monkeypatch, _use_new_zipfile_serialization=False
    )
    loaded = read_checkpoint(path)["decoder"]
    assert isinstance(loaded, PickledObject) and loaded.class_name == "models.DecoderWithAttention"
    state = loaded.state_dict()
    assert state.keys() == decoder.state_dict().keys()
    for name, tensor in decoder.state_dict().items():
        assert torch.equal(state[name], tensor), name
    assert not list(tmp_path.glob("*.patch")) and not os.path.exists("DecoderWithAttention.patch")


def tutorial_decoder_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(2)
    return DecoderWithAttention().state_dict()


def test_a_word_map_without_special_tokens_is_refused():
    word_map = {k: v for k, v in WORD_MAP.items() if k not in ("<start>", "<end>")}
    with pytest.raises(TutorialImportError, match="word map has no <start>, <end>"):
        decoder_tensors(tutorial_decoder_state(), word_map)


def test_a_word_map_of_other_training_data_is_refused():
    word_map = WORD_MAP | {"horse": 10}
    with pytest.raises(TutorialImportError, match="embedding has 10 rows"):
        decoder_tensors(tutorial_decoder_state(), word_map)


def test_a_weight_of_the_wrong_shape_is_named():
    state = tutorial_decoder_state()
    state["f_beta.weight"] = state["f_beta.weight"][:, :8]
    with pytest.raises(
        TutorialImportError,
        match=r"f_beta.weight has shape \[2048, 8\], but the tutorial's layout needs \[2048, 16\]",
    ):
        decoder_tensors(state, WORD_MAP)
    del state["init_c.weight"]
    with pytest.raises(TutorialImportError, match="decoder has no init_c.weight"):
        decoder_tensors(state, WORD_MAP)


def test_a_checkpoint_of_something_else_is_refused(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(TutorialImportError, match="a dict with 'encoder' and 'decoder'"):
        read_tutorial_checkpoint(path)


def test_an_existing_directory_is_replaced_only_with_overwrite(
    imported, tutorial_files, tmp_path, capsys
):
    checkpoint, word_map = tutorial_files
    out = tmp_path / "model"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = ["tutorial", str(checkpoint), str(word_map), str(out)]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2 and "pass --overwrite" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # not a model directory: even --overwrite leaves it
        main([*args, "--overwrite"])
    assert "not a captioner model directory" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"


def test_the_captioner_command_captions_with_the_imported_model(imported, capsys):
    out, _ = imported
    photo = MODELS_DIR.parent / "samples" / "chelsea.jpg"
    arguments = [str(photo), "--format", "txt", "--backend", "torch", "--workers", "0", "-q"]
    assert caption_main([*arguments, "--model", str(out)]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    path, text = line.split("\t")
    assert path == str(photo) and text and set(text.split()) <= SAYABLE


def test_the_tutorials_search_re_implemented_decodes_greedily_as_captioner():
    from benchmarks.tutorial_beam_search import scene_images, tutorial_beam_search

    shapes = Captioner.load("shapes", device="cpu", backend="torch")
    vocab = shapes.vocab
    features = shapes.encode(scene_images(3))
    search = {"start_id": vocab.start_id, "end_id": vocab.end_id}
    greedy = beam_search(shapes.decoder, features, **search, beam_size=1, max_length=51)
    for image, (ours,) in zip(features.split(1), greedy, strict=True):
        theirs = tutorial_beam_search(shapes.decoder, image, **search, beam_size=1)
        assert theirs == [*ours.token_ids, vocab.end_id]


def test_captioner_returns_a_caption_where_the_tutorials_search_finds_none(imported):
    from benchmarks.tutorial_beam_search import NoCaptionFinished, tutorial_beam_search

    _, captioner = imported
    vocab, decoder = captioner.vocab, copy.deepcopy(captioner.decoder)
    with torch.no_grad():  # a model that does not end its captions within 50 words
        decoder.output.bias[vocab.end_id] = -1e4
    features = torch.randn(1, 4, 4, ENCODER_DIM)
    search = {"start_id": vocab.start_id, "end_id": vocab.end_id, "beam_size": 3}
    with pytest.raises(NoCaptionFinished):
        tutorial_beam_search(decoder, features, **search)
    (ours,) = beam_search(decoder, features, **search, max_length=50)
    assert len(ours[0].token_ids) == 50


@pytest.mark.parametrize("height, width, size", [(8, 8, 14), (9, 13, 5), (16, 16, 14)])
def test_the_encoders_pooling_is_pytorchs_and_exports_to_onnx(height, width, size, tmp_path):
    """ResNet's 8 x 8 grid of a 256 px photo pooled up to the tutorial's 14 x 14: an
    nn.AdaptiveAvgPool2d that ONNX cannot export; the encoder's own pooling can."""
    ort = pytest.importorskip("onnxruntime")
    from captioner.encoder import AdaptiveAvgPool
    from captioner.onnx_backend import _export, cpu_session

    features = torch.randn(3, 6, height, width)
    pool = AdaptiveAvgPool(size)
    expected = nn.AdaptiveAvgPool2d(size)(features)
    torch.testing.assert_close(pool(features), expected)
    path = tmp_path / "pool.onnx"
    _export(pool, (features[:2],), path, {"pixels": {0: "batch"}}, {"features": {0: "batch"}})
    session = cpu_session(ort, path)
    for batch in (1, 3):  # other batch sizes than the exported example's
        (pooled,) = session.run(None, {"pixels": features[:batch].numpy()})
        torch.testing.assert_close(torch.from_numpy(pooled), expected[:batch])


def test_the_app_captions_a_photo_with_the_imported_model(imported, tmp_path, request):
    pytest.importorskip("PySide6")
    pytest.importorskip("pytestqt")
    from conftest import GUI_WAIT_MS, show_main_window

    from gui.models.image_list import Status
    from gui.settings import Settings

    qtbot = request.getfixturevalue("qtbot")
    out, _ = imported
    settings = Settings.from_file(str(tmp_path / "settings.ini"))
    settings.mark_started()
    settings.backend = "torch"  # the ONNX graph of a ResNet-101 takes ~10 s to export
    photo = MODELS_DIR.parent / "samples" / "chelsea.jpg"
    window = show_main_window(qtbot, settings, str(out), str(tmp_path / "app-data"), [photo])
    assert not window.session.model_error
    qtbot.waitUntil(lambda: bool(window.words.words), timeout=GUI_WAIT_MS)
    assert window.image_model.item(0).status is Status.CAPTIONED
    assert set(window.words.words) <= SAYABLE


def caption_py_pixels(path) -> torch.Tensor:
    """The tutorial's caption.py on a photo file: scipy's imread and imresize (both Pillow
    underneath: every pixel decoded, then bilinear on the full image to 256 x 256), /255, then
    ImageNet's mean and std. (1, 3, 256, 256)."""
    import numpy as np
    from PIL import Image

    image = np.array(Image.open(path))  # scipy.misc.imread
    image = np.array(Image.fromarray(image).resize((256, 256), Image.BILINEAR))  # imresize
    pixels = torch.FloatTensor(image.transpose(2, 0, 1) / 255.0)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    return ((pixels - mean) / std).unsqueeze(0)


def test_an_imported_model_sees_photo_files_as_the_tutorials_caption_py(
    imported, tutorial_modules, photos, tmp_path
):
    out, captioner = imported
    encoder, _ = tutorial_modules
    config = json.loads((out / "config.json").read_text())
    assert config["preprocessing"] == {"resize_filter": "bilinear", "draft_decoding": False}
    # Larger than 3x the input (where draft decoding and the box reduction would act), and not.
    for name, size in [("chelsea", (1100, 900)), ("rocket", (820, 1040)), ("coffee", (300, 260))]:
        path = tmp_path / f"{name}.jpg"
        photos[name].resize(size).save(path, quality=90)
        with torch.no_grad():
            expected = encoder(caption_py_pixels(path))
        features = captioner.encode(path)
        assert float((features - expected).abs().max() / expected.abs().max()) < 1e-4, name
