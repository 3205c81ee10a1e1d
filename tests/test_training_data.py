"""The data path of captioner-train: tokenizing, the vocabulary and the training pairs."""

import json
from pathlib import Path

import captioner.vocab
import training.readers
from captioner.vocab import Vocabulary
from training.batches import CaptionPairs
from training.readers import Sample

CAPTIONS = (
    ("A man rides a horse.", "Someone rides a horse on the beach."),
    ("Two dogs play in the snow.", "A dog’s toy — in the snow…"),
)


def samples() -> list[Sample]:
    return [
        Sample(Path(f"/photos/{index}.jpg"), captions, "train", index)
        for index, captions in enumerate(CAPTIONS)
    ]


def test_each_caption_is_tokenized_once_for_the_vocabulary_and_the_pairs(monkeypatch):
    calls = []
    tokenize = captioner.vocab.tokenize

    def counted(text):
        calls.append(text)
        return tokenize(text)

    monkeypatch.setattr(captioner.vocab, "tokenize", counted)  # what Vocabulary.encode calls
    monkeypatch.setattr(training.readers, "tokenize", counted)
    train = samples()
    vocab = Vocabulary.from_tokens((t for s in train for t in s.tokens), min_count=1)
    pairs = CaptionPairs(train, vocab, load=lambda path: path, max_length=50)

    assert sorted(calls) == sorted(c for captions in CAPTIONS for c in captions)
    assert vocab == Vocabulary.build([c for captions in CAPTIONS for c in captions], min_count=1)
    assert pairs.pairs == [
        (Path(f"/photos/{index}.jpg"), vocab.encode(caption))
        for index, captions in enumerate(CAPTIONS)
        for caption in captions
    ]
    assert vocab.decode(pairs.pairs[3][1][1:]) == ["a", "dog", "s", "toy", "in", "the", "snow"]


def test_sample_tokens_follow_tokenize():
    [horse, dogs] = samples()
    assert horse.tokens == (
        ("a", "man", "rides", "a", "horse"),
        ("someone", "rides", "a", "horse", "on", "the", "beach"),
    )
    assert horse == Sample(horse.image_path, horse.captions, "train", 0)  # still compares by fields


def test_long_captions_are_clipped():
    vocab = Vocabulary.from_tokens([["a", "b"]], min_count=1)
    [sample] = [Sample(Path("/p.jpg"), ("a b a b a b", "a b"), "train", 1)]
    pairs = CaptionPairs([sample], vocab, load=lambda path: path, max_length=4)
    assert [ids for _, ids in pairs.pairs] == [[1, 4, 5, 4, 5, 2], [1, 4, 5, 2]]
    assert pairs.clipped == 1


def test_vocabulary_and_image_count_leave_out_unreadable_photos(tmp_path, capsys):
    from training.scenes import generate_split
    from training.train import main as train_main

    generate_split(tmp_path, "train", 6, seed=3, size=96, workers=1)
    annotations = tmp_path / "captions_train.json"
    data = json.loads(annotations.read_text())
    (tmp_path / "train" / "broken.png").write_bytes(b"not a png")  # on disk, but unreadable
    data["images"].append({"id": 999, "file_name": "broken.png", "width": 96, "height": 96})
    data["annotations"].append({"id": 999, "image_id": 999, "caption": "a zebra"})
    annotations.write_text(json.dumps(data))
    run = tmp_path / "run"
    args = [
        "--data", str(annotations), "--images", str(tmp_path / "train"), "--out", str(run),
        "--cache-dir", str(tmp_path / "cache"), "--min-word-count", "1", "--epochs", "1",
        "--no-progress", "--workers", "0", "--device", "cpu", "--embed-dim", "8",
        "--decoder-dim", "8", "--attention-dim", "8",
    ]  # fmt: skip
    assert train_main(args) == 0

    out = capsys.readouterr().out
    assert "6 training images, 0 validation images" in out  # not 7: broken.png was dropped
    words = Vocabulary.load(run / "last" / "vocab.json").itos
    assert "zebra" not in words and "a" in words


def test_feature_cache_stats_and_resolves_each_photo_once(tmp_path, monkeypatch):
    import os
    from types import SimpleNamespace

    from captioner.encoder import EncoderConfig
    from training.features import DiskFeatureCache

    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"x")
    cache = DiskFeatureCache(tmp_path / "cache", SimpleNamespace(config=EncoderConfig()))
    calls = []
    stat, lstat = os.stat, os.lstat
    monkeypatch.setattr(os, "stat", lambda *a, **k: calls.append(a[0]) or stat(*a, **k))
    monkeypatch.setattr(os, "lstat", lambda *a, **k: calls.append(a[0]) or lstat(*a, **k))
    first = cache.path_for(photo)  # once per photo, as the cache is checked and per caption loaded
    assert all(cache.path_for(photo) == first for _ in range(3))
    assert [str(path) for path in calls].count(str(photo)) == 2  # one stat, one resolve step
