"""Learning from the person's captions (captioner/learn.py): it learns, it writes whole or
nothing, and the model it started from is never changed."""

from __future__ import annotations

import copy
import dataclasses
import errno
import hashlib
import json
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from captioner import Captioner
from captioner.learn import (
    LearnCancelled,
    LearnError,
    LearnProgress,
    LearnSettings,
    _length_penalty,
    learn_from_library,
    learned_model_dir,
)
from captioner.library import Library
from captioner.options import DecodeOptions

# The person's captions: the tiny model's photos described in words it has never seen.
MINE = {
    "chelsea": "felix the tabby dozing",
    "coffee": "my morning espresso",
    "astronaut": "aunt eileen in her spacesuit",
    "rocket": "launch day at the cape",
}
QUICK = LearnSettings(max_epochs=25, lr=3e-3, validation_share=0.0, l2sp=1e-4)


@pytest.fixture
def library(tmp_path, photos):
    """A library holding the person's captions of four photos saved in tmp_path."""
    with Library.open(tmp_path / "library.sqlite3") as library:
        for name, caption in MINE.items():
            path = tmp_path / f"{name}.png"
            photos[name].save(path)
            library.set_caption(str(path), caption)
        yield library


def tree(folder: Path) -> dict[str, str]:
    """Every file under `folder` and its SHA-256: what 'unchanged' means."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_learns_the_persons_words(tiny_model_dir, library, tmp_path):
    start = Captioner.load(tiny_model_dir, backend="torch")
    before = tree(Path(tiny_model_dir))
    updates: list[LearnProgress] = []
    result = learn_from_library(start, library, settings=QUICK, progress=updates.append)

    assert result.model_dir == learned_model_dir(library, start.name)
    assert result.model_dir.parent == tmp_path / "models"
    assert result.captions == 4 and result.skipped == 0
    assert {"felix", "espresso", "eileen"} <= set(result.new_words)
    assert result.train_losses[-1] < result.train_losses[0] / 2
    fractions = [u.fraction for u in updates]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert all(u.seconds_left is not None for u in updates if u.stage == "learning")

    learned = Captioner.load(result.model_dir, backend="torch")
    said = learned.caption(str(tmp_path / "chelsea.png")).text.split()
    assert said[:3] == ["felix", "the", "tabby"]  # the person's words, new ones included
    assert tree(Path(tiny_model_dir)) == before  # the model it started from is unchanged
    assert len(start.vocab) < len(learned.vocab)


def test_the_model_card_names_what_it_learned_from(tiny_captioner, library):
    result = learn_from_library(tiny_captioner, library, settings=QUICK)
    card = (result.model_dir / "README.md").read_text()
    assert result.model_dir.name == "tiny-test-model + my captions"
    assert "The model **tiny-test-model**" in card and "on 4 of your captions" in card
    assert "felix" in card
    config = json.loads((result.model_dir / "config.json").read_text())
    assert config["name"] == "tiny-test-model + my captions"
    assert config["learned"]["from_model"] == "tiny-test-model"
    assert config["learned"]["from_identity"] == tiny_captioner.identity
    assert config["learned"]["captions"] == 4


def test_validation_keeps_the_best_epoch(tiny_captioner, library):
    """With captions held out, learning stops when their loss stops falling, and the model
    kept is never worse on them than the one it started from."""
    settings = LearnSettings(max_epochs=30, patience=2, lr=3e-3, validation_share=0.25)
    result = learn_from_library(tiny_captioner, library, settings=settings)
    assert result.validation_captions == 1
    assert result.best_loss <= result.start_loss
    assert result.epochs <= settings.max_epochs


@pytest.mark.parametrize("when", ["encoding", "learning", "writing"])
def test_cancel_leaves_nothing(tiny_captioner, library, when, monkeypatch):
    cancel = threading.Event()
    if when == "writing":
        import captioner.learn as learn

        def cancelled_mid_write(folder, *args):
            (folder / "config.json").write_text("{}")  # half a model
            cancel.set()

        monkeypatch.setattr(learn, "write_model_files", cancelled_mid_write)

    def progress(update: LearnProgress) -> None:
        if update.stage == when:
            cancel.set()

    with pytest.raises(LearnCancelled):
        learn_from_library(
            tiny_captioner, library, settings=QUICK, progress=progress, cancel=cancel
        )
    target = learned_model_dir(library, tiny_captioner.name)
    assert not target.exists()
    assert not target.parent.exists() or not list(target.parent.iterdir())


def test_a_full_disk_leaves_nothing(tiny_model_dir, library, monkeypatch):
    import captioner.learn as learn

    def disk_full(folder, *args):
        (folder / "config.json").write_text("{}")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(learn, "write_model_files", disk_full)
    start = Captioner.load(tiny_model_dir, backend="torch")
    before = tree(Path(tiny_model_dir))
    with pytest.raises(LearnError, match="No space left on device"):
        learn_from_library(start, library, settings=QUICK)
    target = learned_model_dir(library, start.name)
    assert not target.exists() and not list(target.parent.iterdir())
    assert tree(Path(tiny_model_dir)) == before


def test_no_captions_is_a_clear_error(tiny_captioner, tmp_path):
    with (
        Library.open(tmp_path / "empty.sqlite3") as library,
        pytest.raises(LearnError, match="none of your captions"),
    ):
        learn_from_library(tiny_captioner, library)


def test_photos_that_are_gone_are_skipped_and_counted(tiny_captioner, library, tmp_path):
    (tmp_path / "rocket.png").unlink()
    result = learn_from_library(tiny_captioner, library, settings=QUICK)
    assert result.skipped == 1 and result.captions == 3
    assert "skipped (gone or unreadable): 1" in (result.model_dir / "README.md").read_text()
    for name in MINE:
        (tmp_path / f"{name}.png").unlink(missing_ok=True)
    with pytest.raises(LearnError, match="none of the 4 captioned photos"):
        learn_from_library(tiny_captioner, library, settings=QUICK)


# --- the raw-feature path and how a learned model ends its captions ---------------------------


def test_a_new_raw_feature_path_leaves_the_captions_unchanged_before_learning(
    tiny_captioner, photos
):
    from captioner.learn import _grown_decoder

    start = tiny_captioner
    grown = _grown_decoder(start.decoder, start.decoder.config.vocab_size, raw_feature_rank=8)
    assert grown.raw_features is not None and start.decoder.raw_features is None
    copy = Captioner(start.encoder, grown.eval(), start.vocab, name="copy", backend="torch")
    images = list(photos.values())
    before, after = start.caption(images), copy.caption(images)
    assert [r.text for r in after] == [r.text for r in before]
    assert [r.score for r in after] == pytest.approx([r.score for r in before], abs=1e-5)


def test_learning_lowers_the_loss_on_held_out_captions(tiny_captioner, tmp_path, photos):
    """Captions that share the person's way of saying things: the one held out is better
    predicted after learning from the others."""
    with Library.open(tmp_path / "library.sqlite3") as library:
        for name in ("chelsea", "coffee", "astronaut", "rocket", "motorcycle"):
            path = tmp_path / f"{name}.png"
            photos[name].save(path)
            library.set_caption(str(path), f"snapshot from my album showing {name}")
        settings = LearnSettings(max_epochs=15, lr=3e-3, validation_share=0.2, l2sp=1e-4)
        result = learn_from_library(tiny_captioner, library, settings=settings)
    assert result.validation_captions == 1
    assert result.best_loss < 0.7 * result.start_loss


def test_other_models_files_hold_no_learned_model_fields():
    """The fields learned models added are not written for other models, so what the shipped
    model saves, and so its identity (the library's key for its captions), is unchanged."""
    from captioner.decoder import LEARNED_MODEL_FIELDS, DecoderConfig

    default = Path(__file__).parents[1] / "captioner" / "models" / "default" / "config.json"
    config = DecoderConfig.from_dict(json.loads(default.read_text())["decoder"])
    written = dataclasses.asdict(config)
    for name in LEARNED_MODEL_FIELDS:
        del written[name]
    assert config.to_dict() == written
    learned = dataclasses.replace(
        config, raw_feature_rank=4, end_after_noun=False, free_nouns=(35,)
    )
    assert learned.to_dict() == {
        **written,
        "raw_feature_rank": 4,
        "end_after_noun": False,
        "free_nouns": (35,),
    }
    assert DecoderConfig.from_dict(learned.to_dict()) == learned


def test_a_copy_model_learned_from_captions_without_its_nouns_may_end_without_one(tmp_path):
    """The default model ends a caption only after a noun it copies; learned from captions
    that name none ("a red circle"), it must be able to end them as they do."""
    import torch

    from captioner.rules import CopyGrammar

    noun_of_word = torch.tensor([-1, -1, -1, 0, -1])  # word 3 is a noun; 2 is <end>
    history = torch.tensor([[4, 4]])  # no noun said yet
    scores = torch.zeros(1, 5)
    assert CopyGrammar(noun_of_word, end_id=2)(scores, history)[0, 2] == float("-inf")
    assert CopyGrammar(noun_of_word, end_id=2, end_after_noun=False)(scores, history)[0, 2] == 0


def test_a_model_learned_from_the_default_reads_raw_features_saves_loads_and_ends(tmp_path, photos):
    """The default model reads cells as ImageNet classes: the learned one gets a raw-feature
    path, which learns, is saved and loads; learned from captions that do not all name one of
    its nouns, it may end a caption without one, and the nouns they use are free."""
    start = Captioner.load("default", backend="torch")
    settings = LearnSettings(max_epochs=1, validation_share=0.0, raw_feature_rank=8)
    with Library.open(tmp_path / "library.sqlite3") as library:
        for name, caption in {"chelsea": "a red circle", "coffee": "a blue square"}.items():
            path = tmp_path / f"{name}.png"
            photos[name].save(path)
            library.set_caption(str(path), caption)
        result = learn_from_library(start, library, settings=settings)
        config = json.loads((result.model_dir / "config.json").read_text())
        assert config["decoder"]["end_after_noun"] is False
        assert config["decoder"]["raw_feature_rank"] == 8
        learned = Captioner.load(result.model_dir, backend="torch")
        assert learned.decoder.config.raw_feature_rank == 8
        assert float(learned.decoder.raw_features.up.weight.detach().abs().max()) > 0
        # Learning again from the learned model keeps its path.
        again = learn_from_library(learned, library, settings=settings, out_dir=tmp_path / "b")
        assert (
            json.loads((again.model_dir / "config.json").read_text())["decoder"]["raw_feature_rank"]
            == 8
        )
        # Captions that all name one of its nouns keep the rule.
        library.set_caption(str(tmp_path / "chelsea.png"), "a tabby cat")
        library.set_caption(str(tmp_path / "coffee.png"), "an espresso in a cup")
        kept = learn_from_library(start, library, settings=settings, out_dir=tmp_path / "c")
        # "orange", a table noun (the fruit), in captions that do not all name one: free, said
        # as the person says it (a colour).
        library.set_caption(str(tmp_path / "chelsea.png"), "an orange circle")
        library.set_caption(str(tmp_path / "coffee.png"), "a blue square")
        free = learn_from_library(start, library, settings=settings, out_dir=tmp_path / "d")
    decoder = json.loads((kept.model_dir / "config.json").read_text())["decoder"]
    assert "end_after_noun" not in decoder and "free_nouns" not in decoder
    decoder = json.loads((free.model_dir / "config.json").read_text())["decoder"]
    assert decoder["free_nouns"] == [start.vocab.stoi["orange"]]
    assert decoder["no_repeat_ngram_size"] == 3  # "a blue square and a blue square" no more


def test_a_model_reading_raw_features_gets_no_second_path(tiny_captioner, library):
    result = learn_from_library(tiny_captioner, library, settings=QUICK)
    config = json.loads((result.model_dir / "config.json").read_text())
    assert "raw_feature_rank" not in config["decoder"]


def test_a_free_noun_is_said_by_both_paths():
    """A learned model's free noun ("orange" as a colour) gets the vocabulary path's share
    beside the copy path's; a table noun that is not free gets only the copy path's."""
    import torch

    from captioner.copy_head import CopyHead

    orange, star, vocab = 5, 7, 9
    step = {}
    for free in ((), (orange,)):
        head = CopyHead(vocab, encoder_dim=4, decoder_dim=3, classes=2, nouns=1, free_nouns=free)
        head.attach(
            torch.zeros(2, 4),
            torch.zeros(2),
            torch.tensor([[1.0], [0.0]]),
            torch.tensor([orange]),
            torch.tensor([orange + 1]),
        )
        with torch.no_grad():
            head.copy_gate.bias.fill_(-20.0)  # the gate shut: nearly all from the vocabulary
        classes = torch.tensor([0.01, 0.99]).log().view(1, 1, 1, 2)
        memory = head.prepare(torch.zeros(1, 1, 1, 4), class_log_probs=classes)
        logits = torch.zeros(1, vocab)
        logits[0, [orange, star]] = 5.0  # the vocabulary path says "orange" or "star"
        log_p, _ = head(logits, torch.zeros(1, 3), torch.ones(1, 1), memory)
        step[free] = log_p[0].detach().exp()
        assert float(step[free].sum()) == pytest.approx(1.0, abs=1e-4)
    assert float(step[()][orange]) < 1e-6  # forced copy, and the gate is shut
    assert float(step[(orange,)][orange]) == pytest.approx(float(step[(orange,)][star]), rel=1e-3)
    assert float(step[(orange,)][orange]) > 0.4


def test_a_learned_model_says_free_nouns_and_size_words_as_the_person_does():
    """A model learned from captions that name things the copy path cannot says its free
    nouns as often as the person does, and size words may open a caption."""
    import torch

    from captioner.decoder import Decoder
    from captioner.rules import EachNounOnce, NoRepeatNgram, SizeOnlyAfterANoun, decoding_rules

    start = Captioner.load("default", backend="torch")
    free = (start.vocab.stoi["orange"],)
    config = dataclasses.replace(start.decoder.config, end_after_noun=False, free_nouns=free)
    learned = Decoder(config)
    learned.load_state_dict(start.decoder.state_dict())
    learned.size_word_ids = start.decoder.size_word_ids
    rules = decoding_rules(learned, end_id=start.vocab.end_id)
    assert not any(isinstance(rule, SizeOnlyAfterANoun) for rule in rules)
    once = next(rule for rule in rules if isinstance(rule, EachNounOnce))
    orange = start.vocab.stoi["orange"]
    history = torch.tensor([[start.vocab.stoi["an"], orange]])  # "an orange ..."
    assert once(torch.zeros(1, config.vocab_size), history)[0, orange] == 0
    shipped = decoding_rules(start.decoder, end_id=start.vocab.end_id)
    assert any(isinstance(rule, SizeOnlyAfterANoun) for rule in shipped)
    assert not any(isinstance(rule, NoRepeatNgram) for rule in shipped + rules)
    # Its own no-repeat n-gram size applies when the search asks for none.
    learned.config.no_repeat_ngram_size = 3
    (own,) = [r for r in decoding_rules(learned, end_id=2) if isinstance(r, NoRepeatNgram)]
    assert own.n == 3
    (asked,) = [
        r
        for r in decoding_rules(learned, end_id=2, no_repeat_ngram_size=2)
        if isinstance(r, NoRepeatNgram)
    ]
    assert asked.n == 2


def test_a_learned_model_carries_the_length_penalty_that_matches_its_persons_captions():
    class Lengths:  # a model whose captions grow with the length penalty: 3 + 4 * alpha words
        def decode(self, features, options):
            words = round(3 + 4 * options.length_penalty)
            return [SimpleNamespace(tokens=["word"] * words) for _ in features]

    person = [[1, *range(10, 17), 2]] * 4  # the person's captions: 7 words
    assert _length_penalty(Lengths(), torch.zeros(4, 1), person, [0, 1]) == 1.0
    assert _length_penalty(Lengths(), torch.zeros(4, 1), person, []) == 0.0  # none held out


def test_a_models_own_length_penalty_is_its_searches_default(tiny_captioner, photos):
    features = tiny_captioner.encode([photos["chelsea"], photos["rocket"]])
    asked = tiny_captioner.decode(features, DecodeOptions(length_penalty=1.5))
    model = copy.copy(tiny_captioner)
    model.decoder = copy.copy(tiny_captioner.decoder)
    model.decoder.config = dataclasses.replace(model.decoder.config, length_penalty=1.5)
    own = model.decode(features)
    assert [r.score for r in own] == pytest.approx([r.score for r in asked])
    plain = tiny_captioner.decode(features)
    assert [r.score for r in own] != pytest.approx([r.score for r in plain])
