"""captioner-import tutorial given hostile or broken files (issue #21): each is refused with one
line, exit 2 for a bad argument or unreadable file, 1 for a checkpoint or word map that is not
the tutorial's, and nothing is written or replaced.

The checkpoints are built here as the tutorial's plain-state_dict form (tests/
test_import_tutorial.py builds the whole-module form): a real ResNet-50's weights, so that
everything but the planted fault imports.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import load_file

import captioner.files.tutorial_import
from captioner.cli.importing import main
from captioner.files.checkpoint import load_model_dir
from captioner.files.tutorial_import import SOURCE, TutorialImportError, decoder_tensors

WORDS = ["a", "dog", "on", "the", "grass", "cat"]
WORD_MAP = {word: i + 1 for i, word in enumerate(WORDS)}
WORD_MAP |= {"<unk>": 7, "<start>": 8, "<end>": 9, "<pad>": 0}
VOCAB, EMBED, HIDDEN, ENCODER_DIM, ATTENTION = len(WORD_MAP), 8, 16, 2048, 12


def decoder_state(**dims: int) -> dict[str, torch.Tensor]:
    """DecoderWithAttention's state_dict, made directly (its sizes can be changed)."""
    v, m, d = dims.get("v", VOCAB), dims.get("m", EMBED), dims.get("d", HIDDEN)
    e, a = ENCODER_DIM, ATTENTION
    shapes = {
        "attention.encoder_att.weight": (a, e),
        "attention.encoder_att.bias": (a,),
        "attention.decoder_att.weight": (a, d),
        "attention.decoder_att.bias": (a,),
        "attention.full_att.weight": (1, a),
        "attention.full_att.bias": (1,),
        "embedding.weight": (v, m),
        "decode_step.weight_ih": (4 * d, m + e),
        "decode_step.weight_hh": (4 * d, d),
        "decode_step.bias_ih": (4 * d,),
        "decode_step.bias_hh": (4 * d,),
        "init_h.weight": (d, e),
        "init_h.bias": (d,),
        "init_c.weight": (d, e),
        "init_c.bias": (d,),
        "f_beta.weight": (e, d),
        "f_beta.bias": (e,),
        "fc.weight": (v, d),
        "fc.bias": (v,),
    }
    generator = torch.Generator().manual_seed(0)
    return {name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}


@pytest.fixture(scope="module")
def encoder_state() -> dict[str, torch.Tensor]:
    """The tutorial Encoder's state_dict of a ResNet-50: "resnet.0.weight", ..."""
    resnet = torchvision.models.resnet50(weights=None)
    layers = torch.nn.Sequential(*list(resnet.children())[:-2])
    return {f"resnet.{name}": tensor for name, tensor in layers.state_dict().items()}


@pytest.fixture
def make_checkpoint(encoder_state, tmp_path):
    """Writes a checkpoint in inputs/ (with `changes` to its dict) and the word map beside it;
    returns the two paths."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()

    def make(word_map: bytes | None = None, changes: dict | None = None) -> tuple[Path, Path]:
        saved = {"encoder": encoder_state, "decoder": decoder_state(), "epoch": 3, "bleu-4": 0.25}
        saved |= changes or {}
        checkpoint = inputs / "BEST_checkpoint_coco.pth.tar"
        torch.save(saved, checkpoint)
        words = inputs / "WORDMAP_coco.json"
        words.write_bytes(json.dumps(WORD_MAP).encode() if word_map is None else word_map)
        return checkpoint, words

    return make


def run(*args: object, overwrite: bool = False) -> int:
    """main's exit status: its return value, or the code it exits with."""
    argv = ["tutorial", *map(str, args), *(["--overwrite"] if overwrite else [])]
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


def contents(folder: Path) -> dict[str, bytes | str]:
    """Every path under `folder` with a file's bytes or a link's target: what a refused
    import must leave exactly as it was."""
    found: dict[str, bytes | str] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            key = str(path.relative_to(folder))
            if path.is_symlink():
                found[key] = f"-> {os.readlink(path)}"
            elif path.is_file():
                found[key] = path.read_bytes()
            else:
                found[key] = "dir"
    return found


def refused(code: int, status: int, capsys, *phrases: str) -> str:
    """Assert one `captioner-import...: message` on stderr naming `phrases`, no traceback."""
    err = capsys.readouterr().err
    assert code == status, err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("captioner-import")]
    for phrase in phrases:
        assert phrase in line, line
    return line


# OUT_DIR


def test_overwrite_refuses_a_project_folder_that_holds_a_config_json(
    make_checkpoint, tmp_path, capsys
):
    checkpoint, words = make_checkpoint()
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "config.json").write_text("{}")
    (project / "src" / "main.py").write_text("print('mine')\n")
    before = contents(tmp_path)
    code = run(checkpoint, words, project, overwrite=True)
    refused(code, 2, capsys, "not a captioner model directory", "'src'")
    assert (project / "src" / "main.py").read_text() == "print('mine')\n"
    assert contents(tmp_path) == before


def test_overwrite_replaces_a_model_directory_with_its_card(make_checkpoint, tmp_path):
    checkpoint, words = make_checkpoint()
    model = tmp_path / "model"
    model.mkdir()
    for name in ("config.json", "vocab.json", "model.safetensors", "README.md", "metrics.json"):
        (model / name).write_text("old")
    assert run(checkpoint, words, model, overwrite=True) == 0
    assert sorted(p.name for p in model.iterdir()) == [
        "config.json",
        "model.safetensors",
        "vocab.json",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inputs", "model"]  # no leftovers


def test_a_model_directory_with_a_linked_file_is_not_replaced(make_checkpoint, tmp_path, capsys):
    checkpoint, words = make_checkpoint()
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "vocab.json").symlink_to(words)
    before = contents(tmp_path)
    refused(run(checkpoint, words, model, overwrite=True), 2, capsys, "'vocab.json'")
    assert contents(tmp_path) == before


@pytest.mark.parametrize("overwrite", [False, True])
def test_out_dir_a_symbolic_link_is_refused(make_checkpoint, tmp_path, capsys, overwrite):
    checkpoint, words = make_checkpoint()
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    link = tmp_path / "link"
    link.symlink_to(model)
    before = contents(tmp_path)
    refused(run(checkpoint, words, link, overwrite=overwrite), 2, capsys, "symbolic link")
    assert contents(tmp_path) == before  # no .link.old-PID beside it


def test_out_dir_a_dangling_symbolic_link_is_refused(make_checkpoint, tmp_path, capsys):
    checkpoint, words = make_checkpoint()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    before = contents(tmp_path)
    refused(run(checkpoint, words, link), 2, capsys, "symbolic link")
    assert contents(tmp_path) == before


@pytest.mark.parametrize("name", [".", "", "..", "work/..", "{cwd}"])
def test_out_dir_the_current_directory_or_above_it_is_refused(
    make_checkpoint, tmp_path, capsys, monkeypatch, name
):
    checkpoint, words = make_checkpoint()
    work = tmp_path / "work"
    work.mkdir()  # empty: a directory that --overwrite would otherwise replace
    monkeypatch.chdir(work)
    before = contents(tmp_path)
    out = name.format(cwd=work)
    refused(run(checkpoint, words, out, overwrite=True), 2, capsys)
    assert contents(tmp_path) == before and Path.cwd() == work


def test_out_dir_that_holds_the_word_map_is_refused(make_checkpoint, tmp_path, capsys):
    checkpoint, _ = make_checkpoint()
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    words = model / "vocab.json"  # a word map whose name a model's file has
    words.write_text(json.dumps(WORD_MAP))
    before = contents(tmp_path)
    refused(run(checkpoint, words, model, overwrite=True), 2, capsys, f"holds {words}")
    assert contents(tmp_path) == before


@pytest.mark.parametrize("below", ["model", "deeper/model"])
def test_out_dir_under_a_file_is_refused(make_checkpoint, tmp_path, capsys, below):
    checkpoint, words = make_checkpoint()
    (tmp_path / "file").write_text("not a folder")
    before = contents(tmp_path)
    code = run(checkpoint, words, tmp_path / "file" / below)
    refused(code, 2, capsys, "is not a directory")
    assert contents(tmp_path) == before


def test_out_dir_below_a_loop_of_links_is_refused(make_checkpoint, tmp_path, capsys):
    checkpoint, words = make_checkpoint()
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    before = contents(tmp_path)
    refused(run(checkpoint, words, tmp_path / "loop" / "model"), 2, capsys, "is not a directory")
    assert contents(tmp_path) == before


# The word map


@pytest.mark.parametrize(
    "word_map, phrase",
    [
        (b'{"<pad>": 0, "caf\xe9": 1}', "can't decode byte 0xe9"),  # Latin-1, not UTF-8
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"<pad>": ' + b"1" * 5000 + b"}", "an id of 5,000 digits"),
        (b'{"<pad>": -' + b"9" * 4000 + b"}", "an id of 4,000 digits"),
        (b'{"<pad>": 0,', "cannot read the word map"),
    ],
)
def test_an_unreadable_word_map_is_one_line_and_exit_2(
    make_checkpoint, tmp_path, capsys, word_map, phrase
):
    checkpoint, words = make_checkpoint(word_map)
    refused(run(checkpoint, words, tmp_path / "model"), 2, capsys, str(words), phrase)
    assert not (tmp_path / "model").exists()


def test_a_word_map_that_is_a_fifo_is_refused_unread(make_checkpoint, tmp_path, capsys):
    checkpoint, _ = make_checkpoint()
    fifo = tmp_path / "WORDMAP.json"
    os.mkfifo(fifo)  # reading it would wait for a writer forever
    refused(run(checkpoint, fifo, tmp_path / "model"), 2, capsys, "not a regular file")


def test_a_word_map_too_large_is_refused_unread(make_checkpoint, tmp_path, capsys):
    checkpoint, words = make_checkpoint()
    with open(words, "r+b") as file:
        file.truncate(65 * 2**20)  # sparse: no disk is spent
    refused(run(checkpoint, words, tmp_path / "model"), 2, capsys, "too large for a word map")


@pytest.mark.parametrize(
    "word_map, phrase",
    [
        ([["<pad>", 0]], "a JSON object of word -> id, not a list"),
        (WORD_MAP | {"dog": "2"}, "'dog' has a str"),
        (WORD_MAP | {"dog": 2.0}, "'dog' has a float"),
        (WORD_MAP | {"dog": None}, "'dog' has a NoneType"),
        (WORD_MAP | {"dog": True}, "'dog' has a bool"),
        (WORD_MAP | {"dog": 10**8}, "1 of their ids outside 0..9"),
        (WORD_MAP | {"dog": -1}, "1 of their ids outside 0..9"),
        (WORD_MAP | {"cat": 1}, "has 10 words (0 of their ids outside 0..9)"),  # "a"'s id twice
        ({k if k != "dog" else " ": v for k, v in WORD_MAP.items()}, "' ' is not a word"),
        ({k if k != "dog" else "\ud800": v for k, v in WORD_MAP.items()}, "is not a word"),
        ({k if k != "dog" else "hot\ndog": v for k, v in WORD_MAP.items()}, "is not a word"),
    ],
)
def test_a_word_map_that_does_not_fit_is_one_line_and_exit_1(
    make_checkpoint, tmp_path, capsys, word_map, phrase
):
    checkpoint, words = make_checkpoint(json.dumps(word_map).encode())
    refused(run(checkpoint, words, tmp_path / "model"), 1, capsys, phrase)
    assert not (tmp_path / "model").exists()


# The checkpoint


def test_a_sparse_weight_is_refused():
    """(safe_unpickle refuses to rebuild a sparse tensor: this is decoder_tensors' own check.)"""
    state = decoder_state() | {"fc.bias": torch.zeros(VOCAB).to_sparse()}
    with pytest.raises(TutorialImportError, match="fc.bias is not a dense tensor"):
        decoder_tensors(state, WORD_MAP)


@pytest.mark.parametrize(
    "entry, dropped",
    [
        ({("best", "bleu"): 0.25}, "<tuple>"),
        ({"epoch": 10**5000}, "'epoch'"),
        ({"bleu": float("inf")}, "'bleu'"),
        ({"bleu": float("nan")}, "'bleu'"),
        ({"note": "x" * 10_000}, "'note'"),
        ({"note": "line\nbreak"}, "'note'"),
        ({"n" * 500: 1}, "'nnnnn"),
        ({"source": "someone else"}, "'source'"),
    ],
    ids=["tuple", "huge-int", "inf", "nan", "long-text", "newline", "long-name", "source"],
)
def test_details_config_json_cannot_hold_are_left_out_with_a_note(
    make_checkpoint, tmp_path, capsys, entry, dropped
):
    checkpoint, words = make_checkpoint(changes=entry)
    out = tmp_path / "model"
    assert run(checkpoint, words, out) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (note,) = err.splitlines()
    assert note.startswith("captioner-import: note: left out the checkpoint's ") and dropped in note
    assert len(note) < 300
    config, _, _ = load_model_dir(out)
    assert config["imported_from"]["source"] == SOURCE
    assert config["imported_from"]["bleu-4"] == 0.25  # the plain details are kept
    assert config["imported_from"]["dropped"] == [note.split("checkpoint's ")[1].split(":")[0]]


@pytest.mark.parametrize("key", [("a", "tuple"), 10**5000, None], ids=["tuple", "int", "none"])
def test_a_checkpoint_without_its_modules_lists_its_keys_in_one_line(
    make_checkpoint, tmp_path, capsys, key
):
    checkpoint, words = make_checkpoint()
    torch.save({key: 1, "encoder": {}}, checkpoint)
    line = refused(run(checkpoint, words, tmp_path / "model"), 1, capsys, "found keys")
    assert f"<{type(key).__name__}>" in line and len(line) < 400
    assert not (tmp_path / "model").exists()


def test_weights_sharing_a_storage_are_written_each_in_its_own(
    encoder_state, tmp_path, capsys, monkeypatch
):
    """Tied weights (one storage under two names), which safetensors refuses to write: the
    reader may refuse such a checkpoint (safe_unpickle), but an import that gets them must not
    fail only at the end. The reader is stood in for here to hand them over."""
    decoder = decoder_state()
    decoder["init_c.weight"] = decoder["init_h.weight"]
    decoder["attention.encoder_att.bias"] = decoder["attention.decoder_att.bias"]
    saved = {"encoder": encoder_state, "decoder": decoder}
    monkeypatch.setattr(captioner.files.tutorial_import, "read_checkpoint", lambda path: saved)
    checkpoint, words = tmp_path / "checkpoint.pth", tmp_path / "WORDMAP.json"
    checkpoint.write_bytes(b"stand-in")
    words.write_text(json.dumps(WORD_MAP))
    assert run(checkpoint, words, tmp_path / "model") == 0, capsys.readouterr().err
    written = load_file(tmp_path / "model" / "model.safetensors")
    assert torch.equal(written["decoder.init_c.weight"], decoder["init_h.weight"])
    assert torch.equal(written["decoder.encoder_att.bias"], decoder["attention.decoder_att.bias"])


@pytest.mark.parametrize(
    "change, phrase",
    [
        (
            {"decoder": decoder_state() | {"embedding.weight": torch.ones(VOCAB, EMBED).long()}},
            "embedding.weight holds torch.int64",
        ),
        (
            {"decoder": decoder_state() | {"fc.bias": torch.zeros(VOCAB, dtype=torch.complex64)}},
            "fc.bias holds torch.complex64",
        ),
        ({"decoder": decoder_state() | {"fc.bias": torch.tensor(0.0)}}, "fc.bias has shape []"),
        (
            {"decoder": decoder_state() | {"embedding.weight": torch.tensor(0.0)}},
            "no 2-d embedding.weight",
        ),
        ({"decoder": decoder_state() | {"fc.bias": [0.0] * VOCAB}}, "fc.bias' is a list"),
        ({"decoder": decoder_state() | {7: torch.zeros(1)}}, "names a weight with <int>"),
        ({"decoder": decoder_state(d=0)}, "decoder.decoder_dim 0 is out of range"),
        ({"decoder": decoder_state(m=70_000)}, "decoder.embed_dim 70000 is out of range"),
    ],
    ids=["int64", "complex", "0-d", "0-d-embedding", "list", "int-key", "0-dim", "huge"],
)
def test_a_decoder_weight_that_does_not_fit_is_one_line_and_exit_1(
    make_checkpoint, tmp_path, capsys, change, phrase
):
    checkpoint, words = make_checkpoint(changes=change)
    refused(run(checkpoint, words, tmp_path / "model"), 1, capsys, phrase)
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize(
    "name, value, phrase",
    [
        ("resnet.1.num_batches_tracked", torch.tensor(0.5), "holds torch.float32"),
        ("resnet.0.weight", torch.zeros(64, 3, 7, 7, dtype=torch.int32), "holds torch.int32"),
        ("resnet.0.weight", torch.zeros(64, 3, 7, 7, dtype=torch.bool), "holds torch.bool"),
        ("resnet.1.running_var", "ones", "is a str"),
    ],
)
def test_an_encoder_weight_that_does_not_fit_is_one_line_and_exit_1(
    make_checkpoint, encoder_state, tmp_path, capsys, name, value, phrase
):
    checkpoint, words = make_checkpoint(changes={"encoder": encoder_state | {name: value}})
    refused(run(checkpoint, words, tmp_path / "model"), 1, capsys, name, phrase)
    assert not (tmp_path / "model").exists()
