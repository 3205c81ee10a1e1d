"""captioner-evaluate end to end: the six test photos, generated scenes, and bad input."""

import json
import logging
import shutil

import pytest
import torch
from conftest import PHOTO_CAPTIONS
from pycocotools.coco import COCO

import training.evaluate
from captioner import Captioner
from captioner.decoder import Decoder, DecoderConfig
from captioner.encoder import Encoder, EncoderConfig
from captioner.vocab import Vocabulary
from training import metrics
from training.evaluate import main
from training.grounding import OBJECT_WORDS
from training.scenes import COLORS, SHAPE_PLURALS, SHAPES, generate_split, possible_captions

COCO_KEYS = ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"]
GROUNDING_KEYS = ["pointing_accuracy", "attention_in_box", "pointing_chance"]


@pytest.fixture(scope="module")
def photo_dir(photos, tmp_path_factory):
    """The six photos as PNG files (lossless, so the tiny model sees what it was trained on)."""
    folder = tmp_path_factory.mktemp("photos")
    for name, image in photos.items():
        image.save(folder / f"{name}.png")
    return folder


def write_coco(path, file_names, captions=None):
    """A COCO captions file: integer ids, one reference per photo (its PHOTO_CAPTIONS entry)."""
    captions = captions or [PHOTO_CAPTIONS[name.split(".")[0]] for name in file_names]
    coco = {
        "images": [{"id": 100 + i, "file_name": name} for i, name in enumerate(file_names)],
        "annotations": [
            {"id": i + 1, "image_id": 100 + i, "caption": caption}
            for i, caption in enumerate(captions)
        ],
    }
    path.write_text(json.dumps(coco))
    return path


@pytest.fixture(scope="module")
def photo_annotations(photo_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("annotations") / "captions_test.json"
    return write_coco(path, [f"{name}.png" for name in PHOTO_CAPTIONS])


def run(model_dir, annotations, images, out_dir, *extra):
    return main(
        [
            "--model",
            str(model_dir),
            "--annotations",
            str(annotations),
            "--images",
            str(images),
            "--device",
            "cpu",
            "--out",
            str(out_dir / "metrics.json"),
            *extra,
        ]
    )


def test_photos_scored_and_results_accepted_by_coco_tools(
    tiny_model_dir, photo_dir, photo_annotations, tmp_path, capsys
):
    out = tmp_path / "out"  # created by the run
    results_path, per_image_path = out / "results.json", out / "per_image.jsonl"
    code = run(
        tiny_model_dir,
        photo_annotations,
        photo_dir,
        out,
        "--results",
        str(results_path),
        "--per-image",
        str(per_image_path),
        "--beam-size",
        "3",
        "--no-meteor",
    )
    assert code == 0
    report = json.loads((out / "metrics.json").read_text())
    # the tiny model was overfit on exactly these captions
    assert report["Bleu_4"] > 0.95
    assert report["CIDEr"] > 5
    assert all(0 <= report[key] <= 1 for key in COCO_KEYS if key != "CIDEr")
    assert "METEOR" not in report
    assert not any(key in report for key in GROUNDING_KEYS)  # no objects in these annotations
    assert report["num_images"] == 6
    assert report["skipped_images"] == 0
    assert report["model"] == "tiny-test-model"
    assert report["split"] == "test"
    assert report["beam_size"] == 3
    assert "Bleu_4" in capsys.readouterr().out
    assert sorted(path.name for path in out.iterdir()) == [
        "metrics.json",
        "per_image.jsonl",
        "results.json",
    ]  # no temporary files left behind

    results = json.loads(results_path.read_text())
    assert [result["image_id"] for result in results] == list(range(100, 106))
    coco = COCO(str(photo_annotations))
    loaded = coco.loadRes(str(results_path))
    assert sorted(loaded.getImgIds()) == list(range(100, 106))
    assert {ann["image_id"]: ann["caption"] for ann in loaded.dataset["annotations"]} == {
        result["image_id"]: result["caption"] for result in results
    }

    records = [json.loads(line) for line in per_image_path.read_text().splitlines()]
    assert [record["image_id"] for record in records] == list(range(100, 106))
    for record, name, result in zip(records, PHOTO_CAPTIONS, results, strict=True):
        assert record["path"] == str(photo_dir / f"{name}.png")
        assert record["references"] == [PHOTO_CAPTIONS[name]]
        assert record["caption"] == result["caption"]
        assert 0 <= record["Bleu_4"] <= 1
        assert record["CIDEr"] >= 0
    mean_cider = sum(record["CIDEr"] for record in records) / len(records)
    assert mean_cider == pytest.approx(report["CIDEr"])


def test_worker_processes_give_the_same_results_and_scores(
    tiny_model_dir, photo_dir, photo_annotations, tmp_path
):
    reports = []
    for workers, batch_size in (("0", "16"), ("2", "4")):
        out = tmp_path / f"workers-{workers}"
        args = ("--results", str(out / "results.json"), "--no-meteor", "--beam-size", "3")
        extra = (*args, "--workers", workers, "--batch-size", batch_size)
        assert run(tiny_model_dir, photo_annotations, photo_dir, out, *extra) == 0
        reports.append(
            (json.loads((out / "metrics.json").read_text()), (out / "results.json").read_text())
        )
    (metrics_0, results_0), (metrics_2, results_2) = reports
    assert results_0 == results_2
    assert {k: metrics_0[k] for k in COCO_KEYS} == {k: metrics_2[k] for k in COCO_KEYS}


def test_missing_java_skips_meteor_and_reports_the_rest(
    tiny_model_dir, photo_dir, photo_annotations, tmp_path, monkeypatch, caplog
):
    real_which = shutil.which
    monkeypatch.setattr(
        metrics.shutil, "which", lambda name, *a, **k: None if name == "java" else real_which(name)
    )
    results_path = tmp_path / "results.json"
    code = run(
        tiny_model_dir,
        photo_annotations,
        photo_dir,
        tmp_path,
        "--results",
        str(results_path),
        "--limit",
        "3",
    )
    assert code == 0
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert "METEOR" not in report
    assert all(key in report for key in COCO_KEYS)
    assert report["num_images"] == 3
    assert metrics.JAVA_MISSING in report["warnings"]
    assert any(
        "METEOR skipped" in record.getMessage() and record.levelno == logging.WARNING
        for record in caplog.records
    )
    assert len(json.loads(results_path.read_text())) == 3


def test_bad_images_are_skipped_and_counted(tiny_model_dir, photo_dir, tmp_path, caplog):
    images = tmp_path / "images"
    shutil.copytree(photo_dir, images)
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    names = [f"{name}.png" for name in PHOTO_CAPTIONS]
    annotations = write_coco(
        tmp_path / "captions.json",
        [*names, "broken.jpg", "gone.png"],
        [*PHOTO_CAPTIONS.values(), "a broken file", "a file that is not there"],
    )
    results_path = tmp_path / "results.json"
    code = run(
        tiny_model_dir, annotations, images, tmp_path, "--results", str(results_path), "--no-meteor"
    )
    assert code == 0
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["num_images"] == 6
    assert report["skipped_images"] == 2
    skipped = {item["path"]: item["reason"] for item in report["skipped"]}
    assert skipped[str(images / "gone.png")] == "file not found"
    assert "damaged" in skipped[str(images / "broken.jpg")]
    assert report["Bleu_4"] > 0.95  # the skipped images do not drag the scores down
    assert [r["image_id"] for r in json.loads(results_path.read_text())] == list(range(100, 106))
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "broken.jpg" in logged and "gone.png" in logged


def test_no_readable_image_is_an_error(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "broken.png").write_bytes(b"nothing")
    annotations = write_coco(tmp_path / "captions.json", ["broken.png"], ["a caption"])
    code = run(tiny_model_dir, annotations, tmp_path, tmp_path / "out", "--no-meteor")
    assert code == 1
    assert "none of the 1 images could be captioned" in capsys.readouterr().err
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_bad_model_and_annotations_fail_with_a_message(tiny_model_dir, photo_dir, tmp_path, capsys):
    annotations = tmp_path / "captions.json"
    annotations.write_text("{not json")
    assert run(tiny_model_dir, annotations, photo_dir, tmp_path, "--no-meteor") == 1
    assert "captions.json: invalid JSON" in capsys.readouterr().err
    assert run(tmp_path / "no-model", annotations, photo_dir, tmp_path) == 1
    assert "no-model" in capsys.readouterr().err


def test_outputs_must_not_overwrite_the_annotations(tiny_model_dir, photo_annotations, photo_dir):
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "--model",
                str(tiny_model_dir),
                "--annotations",
                str(photo_annotations),
                "--images",
                str(photo_dir),
                "--out",
                str(photo_annotations),
            ]
        )
    assert exit_info.value.code == 2
    assert json.loads(photo_annotations.read_text())["images"]  # untouched


@pytest.fixture(scope="module")
def object_word_model_dir(tmp_path_factory):
    """An untrained decoder whose vocabulary is the scenes' shape and colour words, with <end>
    ruled out, so every caption is max_length object words: some name objects in the image and
    some do not. No training: grounding is measured on whatever the maps are."""
    torch.manual_seed(0)
    encoder = Encoder(EncoderConfig(image_size=224))
    vocab = Vocabulary(sorted([*SHAPES, *SHAPE_PLURALS.values(), *COLORS]))
    decoder = Decoder(
        DecoderConfig(
            len(vocab),
            encoder.encoder_dim,
            embed_dim=32,
            decoder_dim=64,
            attention_dim=32,
            dropout=0.0,
        )
    )
    with torch.no_grad():
        decoder.output.bias[vocab.end_id] = -100.0
    model = Captioner(encoder, decoder, vocab, name="object-words")
    return model.save(tmp_path_factory.mktemp("models") / "object-words")


def test_scenes_get_grounding_scores(object_word_model_dir, tmp_path):
    annotations = generate_split(tmp_path / "scenes", "test", 10, seed=3, size=96, workers=1)
    per_image_path = tmp_path / "per_image.jsonl"
    code = run(
        object_word_model_dir,
        annotations,
        tmp_path / "scenes" / "test",
        tmp_path,
        "--per-image",
        str(per_image_path),
        "--max-length",
        "4",
        "--beam-size",
        "2",
        "--no-meteor",
    )
    assert code == 0
    report = json.loads((tmp_path / "metrics.json").read_text())
    for key in GROUNDING_KEYS:
        assert 0 <= report[key] <= 1, key
    assert report["grounded_words"] > 0
    assert report["ungrounded_words"] > 0
    assert report["grounded_words"] + report["ungrounded_words"] == 10 * 4

    # the per-image dump explains the totals, word by word
    objects = {
        image["id"]: image["objects"] for image in json.loads(annotations.read_text())["images"]
    }
    records = [json.loads(line) for line in per_image_path.read_text().splitlines()]
    words = [word for record in records for word in record["grounded_words"]]
    assert len(words) == report["grounded_words"]
    assert sum(len(record["ungrounded_words"]) for record in records) == report["ungrounded_words"]
    hits = sum(word["pointing_hit"] for word in words)
    assert report["pointing_accuracy"] == pytest.approx(hits / len(words))
    truths = [
        record["caption"] in possible_captions(objects[record["image_id"]], 96)
        for record in records
    ]
    assert [record["entirely_true"] for record in records] == truths
    assert report["entirely_true"] == pytest.approx(sum(truths) / len(truths))
    assert report["pointing_chance"] == pytest.approx(
        sum(word["chance"] for word in words) / len(words)
    )
    for record in records:
        image_objects = objects[record["image_id"]]
        tokens = record["caption"].split()
        for word in record["grounded_words"]:
            assert tokens[word["position"]] == word["word"]
            assert word["objects"] == [
                i for i, obj in enumerate(image_objects) if names(word["word"], obj)
            ]
        for word in record["ungrounded_words"]:
            assert not any(names(word, obj) for obj in image_objects)


def names(word, obj):
    """A shape or colour word names a scene object with that shape or colour."""
    ((attribute, value),) = [meaning for meaning in OBJECT_WORDS[word] if meaning[0] != "noun"]
    return obj[attribute] == value


def test_a_data_error_is_not_blamed_on_the_device(tiny_model_dir, photo_dir, tmp_path, capsys):
    annotations = tmp_path / "captions.json"
    annotations.write_text("[" * 100_000 + "]" * 100_000)  # too deep for Python's json
    assert run(tiny_model_dir, annotations, photo_dir, tmp_path, "--no-meteor") == 1
    err = capsys.readouterr().err
    assert "captions.json" in err
    assert "--device" not in err


def test_format_errors_name_the_format_option(tiny_model_dir, photo_dir, tmp_path, capsys):
    annotations = tmp_path / "captions.txt"
    annotations.write_text("neither COCO nor Flickr\n")
    assert run(tiny_model_dir, annotations, photo_dir, tmp_path, "--no-meteor") == 1
    err = capsys.readouterr().err
    assert "--format" in err


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default: auto" in text.rsplit("--device DEVICE", 1)[1].split(" --", 1)[0]
    assert "default: None" not in text and "default: False" not in text


def test_an_error_while_reading_is_not_reported_as_a_device_error(
    tiny_model_dir, photo_dir, photo_annotations, tmp_path, monkeypatch
):
    """RecursionError is a RuntimeError: the device check used to catch the readers' too."""

    def too_deep(*args, **kwargs):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(training.evaluate, "read_samples", too_deep)
    with pytest.raises(RecursionError):
        run(tiny_model_dir, photo_annotations, photo_dir, tmp_path, "--no-meteor")


def test_a_device_torch_names_but_cannot_use_is_named(
    tiny_model_dir, photo_dir, photo_annotations, tmp_path, capsys, monkeypatch
):
    """cuda:3 on a one-GPU machine passes the parse-time check and fails on first use."""

    def no_such_device(*args, **kwargs):
        raise RuntimeError("CUDA error: invalid device ordinal")

    monkeypatch.setattr(training.evaluate.torch, "empty", no_such_device)
    assert run(tiny_model_dir, photo_annotations, photo_dir, tmp_path, "--no-meteor") == 1
    assert "--device 'cpu': CUDA error: invalid device ordinal" in capsys.readouterr().err
    assert not (tmp_path / "metrics.json").exists()
