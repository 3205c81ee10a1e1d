"""The public API: paths, PIL images, per-item errors, encode/decode = caption."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PHOTO_CAPTIONS
from PIL import Image

from captioner import CaptionResult, ImageError
from captioner.options import DecodeOptions


def test_accepts_str_path_and_pil_image(tiny_captioner, photos, tmp_path):
    file = tmp_path / "chelsea.png"
    photos["chelsea"].save(file)
    results = tiny_captioner.caption(
        [str(file), file, photos["chelsea"]], DecodeOptions(beam_size=3)
    )
    assert [r.text for r in results] == [PHOTO_CAPTIONS["chelsea"]] * 3
    assert results[0].source == str(file)
    assert results[1].source == str(file)
    assert results[2].source.startswith("<")


def test_single_image_returns_one_result_and_bad_one_raises(tiny_captioner, photos, tmp_path):
    result = tiny_captioner.caption(photos["rocket"], DecodeOptions(beam_size=3))
    assert isinstance(result, CaptionResult)
    assert result.text == PHOTO_CAPTIONS["rocket"]
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a photo")
    with pytest.raises(ImageError) as caught:
        tiny_captioner.caption(bad)
    assert caught.value.path == str(bad)
    assert str(bad) in str(caught.value)


def test_a_bad_item_in_a_list_does_not_lose_the_others(tiny_captioner, photos, tmp_path):
    good = tmp_path / "coffee.jpg"
    photos["coffee"].save(good, quality=95)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.png"
    results = tiny_captioner.caption([empty, good, missing, photos["astronaut"]], batch_size=2)
    assert [r.error is None for r in results] == [False, True, False, True]
    assert results[0].source == str(empty) and results[0].text == ""
    assert results[2].source == str(missing)
    assert results[1].text == PHOTO_CAPTIONS["coffee"]
    assert results[3].text == PHOTO_CAPTIONS["astronaut"]


def test_encode_then_decode_equals_caption(tiny_captioner, photos):
    images = list(photos.values())
    features = tiny_captioner.encode(images)
    assert tuple(features.shape) == (len(images), 7, 7, 1280)
    decoded = tiny_captioner.decode(features, DecodeOptions(beam_size=4, max_length=10))
    captioned = tiny_captioner.caption(images, DecodeOptions(beam_size=4, max_length=10))
    for a, b in zip(decoded, captioned, strict=True):
        assert [x.tokens for x in a.beams] == [x.tokens for x in b.beams]
        np.testing.assert_allclose(
            [x.score for x in a.beams], [x.score for x in b.beams], atol=1e-5
        )
    # Re-running the search with other settings needs no re-encoding, and can differ.
    wider = tiny_captioner.decode(features, DecodeOptions(beam_size=2, max_length=3))
    assert all(len(r.beams) == 2 and len(r.tokens) <= 3 for r in wider)


def test_odd_modes_are_captioned(tiny_captioner, photos):
    rgba = photos["coffee"].convert("RGBA")
    cmyk = photos["coffee"].convert("CMYK")
    grey = photos["coffee"].convert("L")
    results = tiny_captioner.caption([rgba, cmyk, grey], DecodeOptions(beam_size=3))
    assert all(r.error is None and r.tokens for r in results)
    assert results[0].text == results[1].text == PHOTO_CAPTIONS["coffee"]


def test_exif_rotated_photo_is_captioned_upright(tiny_captioner, photos, tmp_path):
    """The same photo stored sideways with an orientation tag reads as the upright one."""
    upright = photos["astronaut"]
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the camera wrote
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    path = Path(tmp_path / "rotated.jpg")
    stored.save(path, exif=exif, quality=95)
    assert (
        tiny_captioner.caption(path, DecodeOptions(beam_size=3)).text == PHOTO_CAPTIONS["astronaut"]
    )


@pytest.mark.parametrize(
    "options", [{"beam_size": 1}, {"beam_size": 5}, {"beam_size": 3, "consensus_samples": 8}]
)
def test_a_model_that_would_rather_say_nothing_still_captions(tiny_captioner, options):
    """A 1x1 photo, and a model whose likeliest first word is <end>: never an empty caption."""
    captioner = copy.deepcopy(tiny_captioner)
    with torch.no_grad():
        captioner.decoder.output.bias[captioner.vocab.end_id] += 100.0
    result = captioner.caption(Image.new("RGB", (1, 1), (90, 30, 200)), DecodeOptions(**options))
    assert result.error is None
    assert all(len(beam.tokens) == 1 and beam.text for beam in result.beams)


@pytest.mark.parametrize("bad", [["nan"], ["inf"], ["-inf"], ["inf", "-inf"]])
def test_features_holding_inf_or_nan_are_a_clear_error(tiny_captioner, photos, bad):
    features = tiny_captioner.encode(list(photos.values())[:2]).clone()
    for cell, value in enumerate(bad):
        features[1, 0, cell, 0] = float(value)
    with pytest.raises(ValueError, match=r"features of image 1 \(of 2\) hold inf or NaN"):
        tiny_captioner.decode(features)


def test_finite_features_whose_float32_sum_overflows_are_no_error(tiny_captioner, photos):
    """The cheap check sums each image's features in float32; two values of 3e38 overflow that
    sum to inf although both are finite, and only the float64 sum may tell."""
    features = tiny_captioner.encode(list(photos.values())[:2]).clone()
    features[1, 0, 0, :2] = 3e38
    assert not torch.isfinite(features[1].sum())
    results = tiny_captioner.decode(features)
    assert len(results) == 2 and results[0].text
