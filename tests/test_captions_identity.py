"""Captioner.captions_identity: the caption library's key changes with everything that changes
what a model says, and only with that."""

from __future__ import annotations

from pathlib import Path

import pytest

from captioner import Captioner

CHELSEA = Path(__file__).parents[1] / "captioner" / "samples" / "chelsea.jpg"


@pytest.fixture(scope="module")
def default_model() -> Captioner:
    return Captioner.load("default", device="cpu", backend="torch")


def test_hedging_the_person_detector_and_taught_words_each_change_the_key(default_model):
    model = default_model
    start = model.captions_identity
    assert start.startswith(model.identity + "+")  # the shipped copy model hedges by default
    confidence = model.hedging
    assert confidence is not None
    model.set_hedging(None)
    unhedged = model.captions_identity
    assert unhedged != start
    model.set_hedging(confidence)
    assert model.captions_identity == start

    people = model.people
    model.set_people(not people)
    assert model.captions_identity not in (start, unhedged)
    model.set_people(people)
    assert model.captions_identity == start

    model.teach("gizmo", [CHELSEA])
    taught = model.captions_identity
    assert taught not in (start, unhedged)
    model.forget("gizmo")
    assert model.captions_identity == start


def test_a_model_without_extras_is_keyed_by_its_identity_alone(tiny_captioner):
    assert tiny_captioner.captions_identity == tiny_captioner.identity
