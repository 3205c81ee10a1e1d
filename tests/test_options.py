"""DecodeOptions: one set of decoding defaults and limits for the API, CLI, evaluate and app."""

import argparse
import dataclasses

import pytest

from captioner.cli.args import add_decode_arguments, decode_options
from captioner.cli.batch.command import build_parser
from captioner.options import DecodeOptions
from training import evaluate

FIELDS = [field.name for field in dataclasses.fields(DecodeOptions)]


def test_every_option_has_limits_and_help_and_its_default_lies_within():
    defaults = DecodeOptions()
    assert set(DecodeOptions.LIMITS) == set(DecodeOptions.HELP) == set(FIELDS)
    for name in FIELDS:
        low, high = DecodeOptions.LIMITS[name]
        assert low <= getattr(defaults, name) <= high


@pytest.mark.parametrize(
    "values, message",
    [
        ({"beam_size": 0}, "beam_size must be from 1 to 50, got 0"),
        ({"max_length": 201}, "max_length must be from 1 to 200"),
        ({"length_penalty": float("nan")}, "length_penalty must be from -10 to 10"),
        ({"no_repeat_ngram_size": 2.5}, "no_repeat_ngram_size must be a whole number"),
        ({"consensus_samples": "8"}, "consensus_samples must be a whole number"),
        ({"beam_size": True}, "beam_size must be a whole number"),
    ],
)
def test_a_value_outside_its_limits_is_refused_naming_it(values, message):
    with pytest.raises(ValueError, match=message):
        DecodeOptions(**values)


def test_clamped_takes_what_a_lenient_store_hands_back():
    options = DecodeOptions.clamped(
        beam_size="500", max_length="nonsense", length_penalty="nan", no_repeat_ngram_size=-4
    )
    assert options == DecodeOptions(beam_size=50, no_repeat_ngram_size=0)
    assert DecodeOptions.clamped(length_penalty="0.5", consensus_samples=8.0) == DecodeOptions(
        length_penalty=0.5, consensus_samples=8
    )


@pytest.mark.parametrize(
    "parse, required",
    [
        (lambda argv: build_parser().parse_args(argv), ["x.jpg"]),
        (
            lambda argv: evaluate._build_parser().parse_args(argv),
            ["--model", "m", "--annotations", "a", "--images", "i", "--out", "o"],
        ),
    ],
    ids=["captioner", "captioner-evaluate"],
)
def test_the_commands_offer_every_option_with_the_same_defaults(parse, required):
    assert decode_options(parse(required)) == DecodeOptions()
    given = DecodeOptions(
        beam_size=3, max_length=9, length_penalty=-0.5, no_repeat_ngram_size=2, consensus_samples=4
    )
    argv = [
        f"--{name.replace('_', '-')}={getattr(given, name)}" for name in FIELDS
    ]  # "=" keeps "-0.5" a value
    assert decode_options(parse(required + argv)) == given


def test_add_arguments_refuses_values_outside_the_limits_while_parsing(capsys):
    parser = argparse.ArgumentParser(prog="p")
    add_decode_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--no-repeat-ngram-size", "11"])
    assert "argument --no-repeat-ngram-size: must be 10 or less, got 11" in capsys.readouterr().err


def test_no_repeat_ngram_size_reaches_the_search(tiny_captioner, photos):
    image = photos["astronaut"]  # "a woman in a white space suit": "a" twice
    plain = tiny_captioner.caption(image, DecodeOptions(max_length=12))
    once = tiny_captioner.caption(image, DecodeOptions(max_length=12, no_repeat_ngram_size=1))
    assert plain.tokens.count("a") == 2
    assert len(set(once.tokens)) == len(once.tokens)


def test_the_apps_settings_panel_offers_every_option_within_its_limits(qtbot):
    from gui.widgets.settings_panel import SettingsPanel

    given = DecodeOptions(beam_size=7, no_repeat_ngram_size=3, length_penalty=-1.5)
    panel = SettingsPanel(given, "cpu", "auto", "default")
    qtbot.addWidget(panel)
    assert panel.options() == given
    for name in FIELDS:
        spin = getattr(panel, name)
        assert (spin.minimum(), spin.maximum()) == DecodeOptions.LIMITS[name]
    with qtbot.waitSignal(panel.options_changed) as changed:
        panel.no_repeat_ngram_size.setValue(2)
    assert changed.args[0] == dataclasses.replace(given, no_repeat_ngram_size=2)
