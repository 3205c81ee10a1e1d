"""The person detector (people.py): a second noun source for "person" in the copy path."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from captioner import people
from training.face_trials import face_trials, overlaps

pytest.importorskip("cv2")

SAMPLES = Path(__file__).parent.parent / "captioner" / "samples"


def photo(name: str, size: int = 224) -> np.ndarray:
    """A sample photo as the encoder sees it: squashed to its square input."""
    return np.asarray(Image.open(SAMPLES / f"{name}.jpg").convert("RGB").resize((size, size)))


def test_the_astronauts_face_is_found_and_no_face_on_a_rocket_or_a_cup():
    (face,) = people.detect_faces(photo("astronaut"))
    left, top, right, bottom = face
    # Eileen Collins' face: left of centre, in the upper third of the photo.
    assert 0.25 < left < right < 0.6 and 0.05 < top < bottom < 0.45
    for name in ("rocket", "coffee", "chelsea"):
        assert people.detect_faces(photo(name)) == [], name


def test_a_face_covers_the_cells_of_the_head_and_shoulders_below_it():
    probs = people.cell_probs(np.stack([photo("astronaut"), photo("rocket")]), (7, 7))
    assert probs.shape == (2, 49)
    astronaut = probs[0].view(7, 7)
    assert astronaut.unique().tolist() == pytest.approx([0.0, people.PERSON_PROBABILITY])
    rows, cols = astronaut.nonzero(as_tuple=True)
    assert rows.min() <= 1 and rows.max() >= 4  # the face and the body below it
    assert astronaut[:, 6].sum() == 0  # not the helmet on the right
    assert probs[1].sum() == 0


def test_person_takes_the_detected_share_of_each_cells_copy_distribution():
    noun_probs = torch.tensor([[[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]])  # (1 image, 2 cells, 3 nouns)
    noun_mass = torch.tensor([[0.5, 0.9]])
    found = torch.tensor([[0.9, 0.0]])
    mixed, mass = people.with_people(noun_probs, noun_mass, found, person=1)
    assert mixed[0, 0].tolist() == pytest.approx([0.07, 0.02 + 0.9, 0.01])
    assert mixed[0, 1].tolist() == pytest.approx([0.1, 0.1, 0.8])  # no person there
    assert mixed.sum(-1)[0].tolist() == pytest.approx([1.0, 1.0])
    assert mass[0].tolist() == pytest.approx([0.5 + 0.5 * 0.9, 0.9])


def test_the_encoders_input_is_turned_back_into_the_photo():
    image = photo("coffee")
    pixels = (torch.from_numpy(image).permute(2, 0, 1).float() / 255 - 0.5) / 0.5
    back = people.pixels_to_images(pixels.unsqueeze(0), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert back.shape == (1, 224, 224, 3) and np.abs(back[0].astype(int) - image).max() <= 1


@pytest.fixture(scope="module")
def model():
    from captioner.api import Captioner

    return Captioner.load("default", device="cpu")


def test_the_default_model_names_the_astronaut_a_person_with_the_detector_only(model):
    assert model.people  # on by default: OpenCV is installed and "person" is a copy noun
    with_detector = model.caption(SAMPLES / "astronaut.jpg").text
    model.set_people(False)
    try:
        without = model.caption(SAMPLES / "astronaut.jpg").text
    finally:
        model.set_people(True)
    assert "person" in with_detector.split(), with_detector
    assert "person" not in without.split(), without  # ImageNet sees a helmet


def test_a_model_without_the_noun_person_cannot_use_the_detector():
    from captioner.api import Captioner

    shapes = Captioner.load("shapes", device="cpu")
    assert not shapes.people
    with pytest.raises(ValueError, match="person"):
        shapes.set_people(True)


def test_the_detector_finds_pasted_faces_and_fires_on_no_other_crop():
    # Faces that are not the development photos' (training/face_trials.py); the Haar cascade
    # before it found 90 with a false alarm, at nearly three times the cost.
    faces, boxes, others = face_trials(100)
    found = sum(
        any(overlaps(face, box) for face in people.detect_faces(photo))
        for photo, box in zip(faces, boxes, strict=True)
    )
    assert found >= 88, found
    assert not [i for i, photo in enumerate(others) if people.detect_faces(photo)]


def test_a_missing_cascade_file_turns_the_detector_off_with_a_warning(monkeypatch, tmp_path):
    from captioner import Captioner

    missing = tmp_path / "lbpcascade_frontalface.xml"
    monkeypatch.setattr(people, "CASCADE_PATH", missing)
    with pytest.warns(RuntimeWarning, match="people are not named: .*lbpcascade_frontalface.xml"):
        model = Captioner.load("default", device="cpu")
    assert not model.people
    assert model.caption(SAMPLES / "astronaut.jpg").text  # captions go on without "person"
    with pytest.raises(OSError, match="could not be read"):
        model.set_people(True)
