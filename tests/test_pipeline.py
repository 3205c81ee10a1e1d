"""The captioning engine (captioner/pipeline.py): every way in gives the same captions, in order."""

import itertools
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import PHOTO_CAPTIONS

from captioner import pipeline
from captioner.options import DecodeOptions
from captioner.photos.inputs import Photo
from captioner.pipeline import PhotoBatch, caption_batches, photo_batches

OPTIONS = DecodeOptions(beam_size=3)


def run(captioner, batches) -> list:
    return [result for batch in caption_batches(captioner, batches, OPTIONS) for result in batch]


@pytest.fixture(scope="module")
def photo_files(photos, tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("photos")
    paths = {}
    for name, image in photos.items():
        paths[name] = str(folder / f"{name}.png")
        image.save(paths[name])
    return paths


def test_batched_equals_one_at_a_time(tiny_captioner, photos):
    images = list(photos.values())
    batched = tiny_captioner.caption(images, OPTIONS, batch_size=4)
    alone = [tiny_captioner.caption(image, OPTIONS) for image in images]
    assert [r.text for r in batched] == [r.text for r in alone] == list(PHOTO_CAPTIONS.values())
    np.testing.assert_allclose([r.score for r in batched], [r.score for r in alone], atol=1e-5)


def test_path_and_pil_inputs_give_the_same_caption(tiny_captioner, photos, photo_files):
    from_files = run(tiny_captioner, photo_batches(tiny_captioner, photo_files.values()))
    from_images = run(tiny_captioner, photo_batches(tiny_captioner, photos.values()))
    assert [r.text for r in from_files] == [r.text for r in from_images]
    assert [r.source for r in from_files] == list(photo_files.values())
    np.testing.assert_allclose(
        [r.score for r in from_files], [r.score for r in from_images], atol=1e-5
    )


def test_features_or_pixels_read_elsewhere_equal_photos(tiny_captioner, photos):
    """What training's validation and the app's feature cache hand the engine."""
    names = list(photos)
    pixels = torch.stack([tiny_captioner.preprocess(image) for image in photos.values()])
    features = tiny_captioner.encode(pixels)
    from_photos = run(tiny_captioner, photo_batches(tiny_captioner, photos.values()))
    from_pixels = run(tiny_captioner, [PhotoBatch.ready(names, pixels=pixels)])
    # As validation does: batches made while the engine decodes the one before.
    two_at_a_time = (
        PhotoBatch.ready(names[start : start + 2], features=features[start : start + 2])
        for start in range(0, len(names), 2)
    )
    from_features = run(tiny_captioner, two_at_a_time)
    for results in (from_pixels, from_features):
        assert [r.text for r in results] == [r.text for r in from_photos]
        assert [r.source for r in results] == names
        np.testing.assert_allclose(
            [r.score for r in results], [r.score for r in from_photos], atol=1e-5
        )


def test_ready_batch_needs_a_row_per_source(tiny_captioner):
    with pytest.raises(ValueError, match="2 sources"):
        PhotoBatch.ready(["a", "b"], features=torch.zeros(1, 7, 7, 1280))
    with pytest.raises(ValueError):
        PhotoBatch.ready(["a"])


def test_unreadable_inputs_become_error_rows_in_order_with_workers(
    tiny_captioner, photo_files, tmp_path
):
    broken = tmp_path / "notes.jpg"
    broken.write_text("this is not a photo")
    inputs = [
        Photo(photo_files["coffee"]),
        Photo(str(broken)),
        Photo(photo_files["rocket"]),
        Photo("gone/*.jpg", "no such file, and no file matches it as a pattern"),
        Photo(photo_files["chelsea"]),
    ]
    batches = photo_batches(tiny_captioner, inputs, batch_size=2, workers=2)
    results = run(tiny_captioner, batches)
    assert [r.source for r in results] == [photo.path for photo in inputs]
    assert [r.text for r in results] == [
        PHOTO_CAPTIONS["coffee"],
        "",
        PHOTO_CAPTIONS["rocket"],
        "",
        PHOTO_CAPTIONS["chelsea"],
    ]
    assert results[1].error and results[3].error == inputs[3].problem
    assert [r.error is None for r in results] == [True, False, True, False, True]


def test_a_long_run_hands_freed_memory_back_at_most_once_a_second(
    tiny_captioner, photos, monkeypatch
):
    """glibc keeps what the beam-search thread frees of the encoding thread's tensors; without
    malloc_trim a 2,000-photo run grew 1.8x (benchmarks/batch_cli.py)."""
    trims, readings = [], itertools.count()
    monkeypatch.setattr(pipeline, "_malloc_trim", lambda: trims.append)
    # The engine's clock: a quarter of a second later at each reading.
    monkeypatch.setattr(pipeline, "time", SimpleNamespace(monotonic=lambda: next(readings) / 4))
    features = tiny_captioner.encode(list(photos.values())[:1])
    batches = [PhotoBatch.ready([f"photo {i}"], features=features) for i in range(8)]
    results = run(tiny_captioner, batches)
    assert len(results) == 8 and all(result.text for result in results)
    assert len(trims) == 2  # read at 1.0 s and, counted from the trim's 1.25 s, at 2.25 s
    assert all(pad == 0 for pad in trims)
