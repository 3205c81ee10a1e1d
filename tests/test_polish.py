"""Issue #27's polish of the batch command, training, export, import and the Python API."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
from conftest import PHOTO_CAPTIONS

from captioner import Captioner, CaptionResult, ImageError
from captioner.options import DecodeOptions
from captioner.photos.images import load_image


def test_caption_takes_decode_options_as_keywords(tiny_captioner, photos):
    result = tiny_captioner.caption(photos["rocket"], beam_size=3, max_length=10)
    same = tiny_captioner.caption(photos["rocket"], DecodeOptions(beam_size=3, max_length=10))
    assert result.text == same.text == PHOTO_CAPTIONS["rocket"]
    assert len(result.beams) == len(same.beams) == 3
    # Keywords are checked as DecodeOptions checks them.
    with pytest.raises(ValueError, match="beam_size"):
        tiny_captioner.caption(photos["rocket"], beam_size=0)


def test_caption_refuses_options_and_keywords_together_and_unknown_keywords(tiny_captioner, photos):
    with pytest.raises(TypeError, match="not both.*beam_size"):
        tiny_captioner.caption(photos["rocket"], DecodeOptions(), beam_size=3)
    with pytest.raises(TypeError, match="num_beams"):
        tiny_captioner.caption(photos["rocket"], num_beams=3)


def test_caption_keywords_are_exactly_decode_options_fields():
    keywords = {
        name
        for name, parameter in inspect.signature(Captioner.caption).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    assert keywords - {"batch_size"} == {field.name for field in dataclasses.fields(DecodeOptions)}


def test_caption_result_repr_is_short(tiny_captioner, photos):
    result = tiny_captioner.caption(photos["rocket"], beam_size=3)
    text = repr(result)
    assert len(text.splitlines()) == 1 and len(text) < 400
    assert repr(PHOTO_CAPTIONS["rocket"]) in text
    assert f"score={result.score:.4f}" in text
    assert f"alphas={result.alphas.shape}" in text
    assert "beams=3" in text
    failed = CaptionResult.failed("notes.jpg", "not an image")
    assert repr(failed) == "CaptionResult(source='notes.jpg', error='not an image')"


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_a_tiny_file_is_not_an_image_whatever_its_size(tmp_path, size):
    path = tmp_path / "tiny.jpg"
    path.write_bytes(b"\x07" * size)
    with pytest.raises(ImageError) as caught:
        load_image(path)
    assert caught.value.reason == "not an image, or an image format that cannot be read"
