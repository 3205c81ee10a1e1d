"""Taught words: the prototype classifier's maths and calibration, the copy path saying a word
taught from three photos, and teach / forget through the API."""

from __future__ import annotations

import dataclasses
import pathlib

import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from captioner import Captioner
from captioner.photos.images import ImageError
from captioner.rules import EachNounOnce, decoding_rules
from captioner.taught import (
    FLOOR,
    MARGIN,
    TaughtNouns,
    box_weights,
    calibrate,
    check_word,
    example_vectors,
)


def series(image: Image.Image) -> list[Image.Image]:
    """Five photos of one thing: crops at other places and scales, every other one mirrored."""
    width, height = image.size
    crops = [(0, 0, 1, 1), (0.1, 0.1, 0.9, 0.9), (0, 0, 0.8, 0.8), (0.2, 0.2, 1, 1)]
    crops.append((0.05, 0.15, 0.85, 0.95))
    shots = []
    for i, (left, top, right, bottom) in enumerate(crops):
        shot = image.crop(
            (int(left * width), int(top * height), int(right * width), int(bottom * height))
        )
        shots.append(ImageOps.mirror(shot) if i % 2 else shot)
    return shots


@pytest.fixture(scope="module")
def model() -> Captioner:
    return Captioner.load("default", device="cpu", backend="torch")


@pytest.fixture
def fresh(model):
    """The default model with nothing taught, and nothing left taught after the test."""
    yield model
    for word in list(model.taught_words()):
        model.forget(word)


def texts(model: Captioner, images: list[Image.Image]) -> list[str]:
    return [result.text for result in model.caption(images)]


# --- the prototype classifier ---------------------------------------------------------------


def test_words_are_nouns_of_one_or_two_words():
    assert check_word("  Teddy   Bear ") == "teddy bear"
    assert check_word("go-kart") == "go-kart"
    for bad in ("", "   ", "x" * 200, "a big red ball", "cat!", "<end>"):
        with pytest.raises(ValueError):
            check_word(bad)


def test_a_box_weighs_each_cell_by_the_share_it_covers():
    weights = box_weights((2, 4), (0.0, 0.0, 0.375, 1.0))
    assert weights.tolist() == [[1.0, 0.5, 0.0, 0.0], [1.0, 0.5, 0.0, 0.0]]
    with pytest.raises(ValueError):
        box_weights((2, 2), (0.5, 0.0, 0.4, 1.0))


def test_an_example_is_the_mean_of_the_cells_that_show_the_thing_and_the_rest_is_background():
    features = torch.zeros(2, 2, 3)
    features[0, 0] = torch.tensor([1.0, 0.0, 0.0])
    features[1, 1] = torch.tensor([0.0, 1.0, 0.0])
    weights = torch.tensor([[1.0, 0.2], [0.1, 0.0]])  # only cell (0, 0) is above half the peak
    example, background = example_vectors(features, weights)
    assert example.tolist() == [1.0, 0.0, 0.0]
    assert torch.allclose(background, torch.tensor([0.0, 1 / 3, 0.0]))
    _, nothing_else = example_vectors(features, torch.ones(2, 2))
    assert nothing_else is None


def test_calibration_sits_above_every_negative_and_below_the_examples_agreement():
    alike = torch.tensor([[1.0, 0.0], [1.0, 0.05]])
    assert calibrate(alike, torch.empty(0, 2)) == FLOOR
    # Spread examples (cosine 0.5) lower the threshold so other photos of the thing reach it...
    spread = torch.tensor([[1.0, 0.0], [0.5, 0.75**0.5]])
    assert calibrate(spread, torch.empty(0, 2)) == pytest.approx(0.5 - MARGIN)
    # ...but never to within MARGIN of something that is not the word.
    negative = torch.tensor([[0.8, 0.6]])  # cosine 0.96 with the second example
    threshold = calibrate(spread, negative)
    assert threshold == pytest.approx(
        float(F.cosine_similarity(spread[1], negative[0], 0)) + MARGIN
    )


def test_a_cell_shows_a_word_when_it_is_like_any_of_its_examples():
    prototypes = torch.eye(3)  # word 0: examples 0 and 1; word 1: example 2
    taught = TaughtNouns(
        words=("widget", "gadget"),
        prototypes=prototypes,
        example_word=torch.tensor([0, 0, 1]),
        thresholds=torch.tensor([0.6, 0.6]),
        singular_ids=torch.tensor([10, 12]),
        plural_ids=torch.tensor([11, 13]),
        embeddings=torch.zeros(4, 2),
        word_count=14,
    )
    cells = torch.tensor([[[0.0, 2.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]]])  # (1, 3, 3)
    probs = taught.cell_probs(cells)  # (1, 3 cells, 2 words)
    assert probs[0, 0, 0] > 0.99 and probs[0, 0, 1] < 0.01  # like example 1: the first word
    assert probs[0, 1, 1] > 0.99 and probs[0, 1, 0] < 0.01
    assert (probs[0, 2] < 0.5).all()  # cosine 0.58 with each: just below 0.6


# --- the copy path with taught words ---------------------------------------------------------


def test_a_word_taught_from_three_photos_names_other_photos_of_the_thing_and_only_them(
    fresh, photos
):
    rocket = series(photos["rocket"])
    others = [photos[name] for name in ("chelsea", "coffee", "astronaut", "motorcycle")]
    before = texts(fresh, others)
    assert not any("widget" in text for text in texts(fresh, rocket))
    added = fresh.teach("widget", rocket[:3])
    assert len(added) == 3 and all(example.word == "widget" for example in added)
    assert all("widget" in text.split() for text in texts(fresh, rocket[3:]))
    assert texts(fresh, others) == before  # unrelated photos: not a word changed
    assert fresh.forget("widget") and not fresh.forget("widget")
    assert not any("widget" in text for text in texts(fresh, rocket))


def test_teaching_never_changes_the_model_itself(fresh, photos):
    identity = fresh.identity
    state = {k: v.clone() for k, v in fresh.decoder.state_dict().items()}
    fresh.teach("widget", series(photos["rocket"])[:3])
    fresh.__dict__.pop("identity")  # computed again, with the word taught
    assert fresh.identity == identity
    after = fresh.decoder.state_dict()
    assert after.keys() == state.keys() and all(torch.equal(after[k], state[k]) for k in state)
    assert len(fresh.vocab) == fresh.decoder.config.vocab_size  # the saved vocabulary: as it was


def test_a_two_word_noun_is_one_copied_unit_said_once(fresh, photos):
    rocket = series(photos["rocket"])
    fresh.teach("space rocket", rocket[:3])
    for result in fresh.caption(rocket[3:]):
        assert result.tokens.count("space rocket") == 1, result.text
        assert len(result.alphas) == len(result.tokens)  # one attention map for the two words


def test_the_rules_take_a_taught_word_and_its_plural_for_a_noun(fresh, photos):
    fresh.teach("widget", series(photos["rocket"])[:3])
    taught = fresh.decoder.taught
    rules = decoding_rules(fresh.decoder, end_id=2, taught=taught)
    (once,) = [rule for rule in rules if isinstance(rule, EachNounOnce)]
    singular, plural = int(taught.singular_ids[0]), int(taught.plural_ids[0])
    assert singular >= fresh.decoder.config.vocab_size  # a word the model did not have
    assert once.column[singular] == once.column[plural] > 0
    scores = torch.zeros(1, len(once.column))  # the taught words' ids, and hypernyms' after
    banned = once(scores, torch.tensor([[singular]]))
    assert banned[0, plural] == -torch.inf  # "widget" said: not "widgets" after it


def test_photos_taught_twice_add_nothing_and_a_missing_photo_is_an_error(fresh, photos, tmp_path):
    shots = series(photos["rocket"])
    path = tmp_path / "rocket.png"
    shots[0].save(path)
    assert len(fresh.teach("widget", [path, shots[1]])) == 2
    assert fresh.teach("widget", [path, shots[1]]) == []  # same file, same pixels
    assert len(fresh.taught_words()["widget"]) == 2
    assert len(fresh.teach("widget", [path], boxes=[(0.2, 0.0, 0.8, 1.0)])) == 1  # a box: new
    with pytest.raises(ImageError):
        fresh.teach("widget", [tmp_path / "gone.jpg"])
    assert fresh.forget("widget", source=path)  # the file's examples only
    assert len(fresh.taught_words()["widget"]) == 1


def test_a_model_without_a_copy_path_says_it_cannot_learn_words(tiny_captioner, photos):
    assert not tiny_captioner.can_learn_words
    with pytest.raises(ValueError, match="no copy path"):
        tiny_captioner.teach("widget", [photos["rocket"]])


def test_examples_from_the_library_apply_as_taught(fresh, model, photos):
    rocket = series(photos["rocket"])
    examples = fresh.teach("widget", rocket[:3])
    fresh.forget("widget")
    fresh.add_examples(examples)
    assert all("widget" in text.split() for text in texts(fresh, rocket[3:]))


# --- the caption library ------------------------------------------------------------------------


def test_the_library_keeps_taught_words_and_applies_them_only_with_the_same_encoder(
    fresh, photos, tmp_path
):
    from captioner.library import Library
    from captioner.taught import to_record

    rocket = series(photos["rocket"])
    examples = fresh.teach("widget", rocket[:3])
    fresh.forget("widget")
    with Library.open(tmp_path / "library.db") as library:
        library.add_taught([to_record(e, fresh.encoder_identity) for e in examples])
        library.add_taught(
            [to_record(dataclasses.replace(examples[0], word="gizmo"), "another encoder")]
        )
        records = library.taught()
    assert [r.word for r in records] == ["widget"] * 3 + ["gizmo"]
    assert len(records[0].vector) == 2 * fresh.encoder.encoder_dim  # float16
    notice = fresh.use_taught(records)
    assert "gizmo" in notice and "another encoder" in notice
    assert list(fresh.taught_words()) == ["widget"]
    assert all("widget" in text.split() for text in texts(fresh, rocket[3:]))
    with Library.open(tmp_path / "library.db") as library:
        assert library.forget_taught("widget") == 3
        assert [r.word for r in library.taught()] == ["gizmo"]


def test_a_model_without_a_copy_path_says_why_the_library_words_are_not_used(tiny_captioner):
    from captioner.library import TaughtRecord

    record = TaughtRecord("widget", tiny_captioner.encoder_identity, b"\0\0" * 8)
    assert "no copy path" in tiny_captioner.use_taught([record])


# --- the batch command ---------------------------------------------------------------------------


def batch(*arguments) -> tuple[int, str]:
    import contextlib
    import io

    from captioner.cli.batch.command import main as batch_main

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        status = batch_main([*map(str, arguments), "--workers", "0", "--backend", "torch", "-q"])
    return status, stderr.getvalue()


def test_the_batch_command_says_the_librarys_taught_words(fresh, photos, tmp_path, tiny_model_dir):
    import json

    from captioner.library import Library
    from captioner.taught import to_record

    rocket = series(photos["rocket"])
    examples = fresh.teach("widget", rocket[:3])
    folder = tmp_path / "album"
    folder.mkdir()
    rocket[3].save(folder / "rocket.png")
    photos["chelsea"].save(folder / "chelsea.png")
    library_path = tmp_path / "library.db"
    with Library.open(library_path) as library:
        library.add_taught([to_record(e, fresh.encoder_identity) for e in examples])
    out = tmp_path / "captions.jsonl"
    status, _ = batch(folder, "--model", "default", "--library-path", library_path, "-o", out)
    assert status == 0
    rows = {pathlib.Path(row["path"]).name: row["caption"] for row in map(json.loads, out.open())}
    assert "widget" in rows["rocket.png"].split() and "widget" not in rows["chelsea.png"]
    # A model that cannot say taught words captions as ever, and says why it leaves them out.
    status, errors = batch(
        folder, "--model", tiny_model_dir, "--library-path", library_path, "-o", tmp_path / "b"
    )
    assert status == 0 and "no copy path" in errors


def test_a_rerun_with_the_library_captions_again_after_a_word_is_taught(fresh, photos, tmp_path):
    import json

    from captioner.library import Library
    from captioner.taught import to_record

    rocket = series(photos["rocket"])
    folder = tmp_path / "album"
    folder.mkdir()
    rocket[3].save(folder / "rocket.png")
    library_path = tmp_path / "library.db"
    first, second, third = (tmp_path / f"{n}.jsonl" for n in ("first", "second", "third"))
    status, _ = batch(folder, "--model", "default", "--library-path", library_path, "-o", first)
    assert status == 0 and "widget" not in first.read_text()
    # A rerun with nothing new skips the photo the library has the model's caption of ...
    status, _ = batch(folder, "--model", "default", "--library-path", library_path, "-o", second)
    assert status == 0 and second.read_text() == ""
    # ... but a word taught since changes what the model says: the photo is captioned again.
    examples = fresh.teach("widget", rocket[:3])
    with Library.open(library_path) as library:
        library.add_taught([to_record(e, fresh.encoder_identity) for e in examples])
    status, _ = batch(folder, "--model", "default", "--library-path", library_path, "-o", third)
    rows = [json.loads(line) for line in third.open()]
    assert status == 0 and len(rows) == 1 and "widget" in rows[0]["caption"].split()
