"""The whole pipeline fits: a tiny model trained on six photos writes their captions back."""

from conftest import PHOTO_CAPTIONS

from captioner.options import DecodeOptions


def test_tiny_model_reproduces_its_training_captions(tiny_captioner, photos):
    results = tiny_captioner.caption(
        list(photos.values()), DecodeOptions(beam_size=3, max_length=12)
    )
    assert [r.text for r in results] == list(PHOTO_CAPTIONS.values())


def test_greedy_decoding_also_reproduces_them(tiny_captioner, photos):
    results = tiny_captioner.caption(
        list(photos.values()), DecodeOptions(beam_size=1, max_length=12)
    )
    assert [r.text for r in results] == list(PHOTO_CAPTIONS.values())
