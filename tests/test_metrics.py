import math
import shutil
import subprocess
import sys
import threading

import pytest

from training import metrics
from training.metrics import JAVA_MISSING, coco_metrics

COCO_NAMES = ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"]

# Five images with five references each; captions carry the punctuation real ones have.
REFERENCES = {
    "horse": [
        "A man rides a brown horse on the beach.",
        "A person riding a horse along the shore.",
        "A man on horseback near the ocean.",
        "Someone rides a horse by the sea.",
        "A rider and his horse on the sand.",
    ],
    "pizza": [
        "A pizza with cheese and tomatoes on a table.",
        "A cheese pizza sits on a wooden table.",
        "Pizza, with tomato slices, on a table.",
        "A whole pizza on a kitchen table.",
        "A fresh pizza topped with cheese.",
    ],
    "dogs": [
        "Two dogs play in the snow.",
        "Two dogs running through the snow.",
        "A pair of dogs playing in deep snow.",
        "Dogs chase each other in the snow.",
        "Two puppies play outside in the snow.",
    ],
    "bus": [
        "A red double-decker bus on a city street.",
        "A red bus drives down the street.",
        "A double decker bus in the city.",
        "A big red bus parked on the street.",
        "The red bus is driving on a busy street.",
    ],
    "surfer": [
        "A surfer rides a large wave.",
        "A man surfing on a big wave.",
        "A person on a surfboard riding a wave.",
        "A surfer (in a wetsuit) catches a wave.",
        "Someone surfs a huge ocean wave.",
    ],
}
RIGHT = {
    "horse": "A man riding a horse on the beach.",
    "pizza": "A cheese pizza on a wooden table.",
    "dogs": "Two dogs playing in the snow.",
    "bus": "A red bus on a city street.",
    "surfer": "A surfer riding a big wave.",
}
# every image gets the right caption of another image
WRONG = dict(zip(RIGHT, list(RIGHT.values())[1:] + list(RIGHT.values())[:1], strict=True))


def test_identical_caption_scores_one():
    references = {image: refs[:1] for image, refs in REFERENCES.items()}
    candidates = {image: refs[0] for image, refs in REFERENCES.items()}
    result = coco_metrics(references, candidates, meteor=False)
    for n in range(1, 5):
        assert result[f"Bleu_{n}"] == pytest.approx(1.0, abs=1e-6)
    assert result["ROUGE_L"] == pytest.approx(1.0)
    assert all(
        scores["Bleu_4"] == pytest.approx(1.0, abs=1e-6) for scores in result.per_image.values()
    )


def test_unrelated_caption_scores_zero():
    result = coco_metrics(
        {1: ["a man rides a horse"], 2: ["two dogs in the snow"]},
        {1: "purple elephant dancing", 2: "green guitar melting"},
        meteor=False,
    )
    assert result["Bleu_1"] == pytest.approx(0.0, abs=1e-6)
    assert result["Bleu_4"] == pytest.approx(0.0, abs=1e-6)
    assert result["ROUGE_L"] == 0.0
    assert result["CIDEr"] == 0.0


def test_bleu_1_by_hand():
    result = coco_metrics(
        {
            # 5 of 6 words match, same length: BLEU-1 part 5/6
            "a": ["the cat is on the mat"],
            # "the" counts at most twice (clipped by the best reference); closest length is 3
            "b": ["the cat", "the the dog"],
        },
        {"a": "The cat sat on the mat.", "b": "the the the the"},
        meteor=False,
    )
    # corpus BLEU pools the counts: (5 + 2) matched of (6 + 4) words; lengths 10 vs 6 + 3
    assert result["Bleu_1"] == pytest.approx(7 / 10, rel=1e-6)

    short = coco_metrics({1: ["the cat sat on the mat"]}, {1: "the cat"}, meteor=False)
    # all words match but the candidate is 2 words against 6: brevity penalty exp(1 - 6/2)
    assert short["Bleu_1"] == pytest.approx(math.exp(-2), rel=1e-6)


def test_cider_prefers_the_right_captions():
    right = coco_metrics(REFERENCES, RIGHT, meteor=False)
    wrong = coco_metrics(REFERENCES, WRONG, meteor=False)
    assert right["CIDEr"] > 1.0 > 0.1 > wrong["CIDEr"]
    for image in REFERENCES:
        assert right.per_image[image]["CIDEr"] > wrong.per_image[image]["CIDEr"]
        assert right.per_image[image]["Bleu_4"] > wrong.per_image[image]["Bleu_4"]
    assert right["Bleu_4"] > wrong["Bleu_4"]
    assert right["ROUGE_L"] > wrong["ROUGE_L"]
    assert set(right.per_image) == set(REFERENCES)


def test_without_java_tokenizes_in_python_and_skips_meteor(monkeypatch):
    with_java = coco_metrics(REFERENCES, RIGHT, meteor=False) if shutil.which("java") else None

    def no_process(*args, **kwargs):
        raise AssertionError("no Java process may start without Java")

    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(subprocess, "Popen", no_process)
    result = coco_metrics(REFERENCES, RIGHT)

    assert list(result) == ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"]
    assert JAVA_MISSING in result.warnings
    assert JAVA_MISSING == (
        "METEOR skipped: Java not found on PATH "
        "(install a JRE, e.g. apt-get install default-jre-headless)"
    )
    if with_java is not None:  # the Python tokenizer matches PTB on these captions
        assert dict(result) == pytest.approx(dict(with_java), rel=1e-9)
    else:
        assert result["CIDEr"] > 1.0


def test_failing_meteor_process_is_reported_and_stopped(monkeypatch):
    started = []

    class CrashingMeteor(metrics.Meteor):
        def __init__(self):
            script = "import sys; sys.stderr.write('Error: could not reserve heap\\n'); sys.exit(1)"
            self.meteor_p = subprocess.Popen(
                [sys.executable, "-c", script],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            self.lock = threading.Lock()
            started.append(self)

    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/java")
    monkeypatch.setattr(metrics, "Meteor", CrashingMeteor)
    result = coco_metrics(REFERENCES, RIGHT)

    assert "METEOR" not in result and result["CIDEr"] > 1.0
    [warning] = [warning for warning in result.warnings if warning.startswith("METEOR")]
    assert warning.startswith("METEOR skipped: the METEOR Java process failed (")
    assert warning.endswith("; Error: could not reserve heap)")
    [scorer] = started
    assert scorer.meteor_p.returncode is not None
    assert not scorer.lock.locked()  # Meteor.__del__ would wait on it forever


# Unicode punctuation the Java PTB tokenizer and the Python fallback used to split differently
UNICODE_CAPTIONS = {
    "tux": ["Tux—the Linux mascot!", "Tux – the mascot."],
    "apple": ["A “Fuji” apple.", "An apple… for €5.", "A «Fuji» apple, 2×4 ©"],
    "helmet": ["A knight’s helmet.", "It’s one—or two ‘shiny’ helmets."],
    "quotes": ["A sign that says 'stop'.", "The ‘old’ car, ¿qué?", "A 'Sign' at 25°C"],
}
UNICODE_TOKENS = {
    "tux": ["tux the linux mascot", "tux the mascot"],
    "apple": ["a fuji apple", "an apple for 5", "a fuji apple 2 4"],
    "helmet": ["a knight 's helmet", "it 's one or two shiny helmets"],
    "quotes": ["a sign that says stop", "the old car qué", "a sign at 25 c"],
}


def test_python_tokenizer_normalises_unicode_punctuation(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert metrics._tokenize(UNICODE_CAPTIONS, []) == UNICODE_TOKENS


@pytest.mark.skipif(shutil.which("java") is None, reason="the PTB tokenizer needs Java")
def test_java_tokenizer_agrees_with_python_on_unicode_punctuation():
    warnings = []
    assert metrics._tokenize(UNICODE_CAPTIONS, warnings) == UNICODE_TOKENS
    assert warnings == []  # the Java tokenizer ran


@pytest.mark.skipif(shutil.which("java") is None, reason="the PTB tokenizer needs Java")
def test_java_tokenizer_prints_nothing_when_it_works(capfd):
    result = coco_metrics(REFERENCES, RIGHT, meteor=False)
    assert result.warnings == [] and result["CIDEr"] > 1.0
    assert capfd.readouterr() == ("", "")  # no "PTBTokenizer tokenized 312 tokens at ..." line


def test_java_tokenizer_failure_is_a_warning_with_its_stderr(monkeypatch):
    script = "import sys; sys.stderr.write('Error: no jar\\n'); sys.exit(1)"
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/java")
    monkeypatch.setattr(metrics, "_ptb_command", lambda: [sys.executable, "-c", script])
    result = coco_metrics(REFERENCES, RIGHT, meteor=False)

    assert result.warnings == [
        "captions tokenized in Python: the Java PTB tokenizer failed (exit status 1: Error: no jar)"
    ]
    assert result["CIDEr"] > 1.0


def test_empty_generated_captions_are_warned_about():
    candidates = dict(RIGHT, horse="", pizza="  ")
    result = coco_metrics(REFERENCES, candidates, meteor=False)
    assert "2 of 5 generated captions are empty; they score 0" in result.warnings
    assert result.per_image["horse"]["CIDEr"] == 0.0
    assert not any("empty" in w for w in coco_metrics(REFERENCES, RIGHT, meteor=False).warnings)


def test_mismatched_images_are_rejected():
    with pytest.raises(ValueError, match="1 without a candidate \\['b'\\], 1 without references"):
        coco_metrics({"a": ["x"], "b": ["y"]}, {"a": "x", "c": "z"}, meteor=False)
    with pytest.raises(ValueError, match="image 'a': references must be a non-empty list"):
        coco_metrics({"a": "a dog"}, {"a": "a dog"}, meteor=False)
    with pytest.raises(ValueError, match="no images to evaluate"):
        coco_metrics({}, {}, meteor=False)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR needs Java")
def test_meteor_with_java(monkeypatch):
    started = []

    class RecordedMeteor(metrics.Meteor):
        def __init__(self):
            super().__init__()
            started.append(self)

    monkeypatch.setattr(metrics, "Meteor", RecordedMeteor)
    result = coco_metrics(REFERENCES, RIGHT)

    assert list(result) == COCO_NAMES
    assert result.warnings == []
    assert 0.3 < result["METEOR"] < 1.0
    [scorer] = started
    assert scorer.meteor_p.returncode is not None  # the JVM does not outlive the call
