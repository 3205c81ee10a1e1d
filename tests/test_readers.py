import json
from pathlib import Path

import pytest
from PIL import Image

from training.readers import (
    DatasetFormatError,
    MissingImagesError,
    ReadResult,
    Sample,
    read_samples,
)


def make_images(folder: Path, *names: str) -> Path:
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (2, 2), (200, 30, 30)).save(path)
    return folder


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path


def coco_file(folder: Path, name: str = "captions_val2017.json") -> Path:
    return write_json(
        folder / name,
        {
            "info": {"year": 2017},
            "images": [
                {"id": 42, "file_name": "b.png", "width": 2, "height": 2, "objects": ["dog"]},
                {"id": 7, "file_name": "a.png", "width": 2, "height": 2},
                {"id": 9, "file_name": "c.png", "width": 2, "height": 2},
            ],
            "annotations": [
                {"id": 1, "image_id": 7, "caption": "A cat on a mat. "},
                {"id": 2, "image_id": 42, "caption": "a dog runs", "word_objects": [[1, "dog"]]},
                {"id": 3, "image_id": 42, "caption": "   "},
                {"id": 4, "image_id": 42, "caption": "\na brown dog\n", "word_objects": []},
                {"id": 5, "image_id": 9, "caption": ""},
            ],
        },
    )


def test_coco_groups_captions_keeps_extras_aligned_and_guesses_split(tmp_path):
    images = make_images(tmp_path / "val2017", "a.png", "b.png", "c.png")
    result = read_samples(coco_file(tmp_path), images)

    assert result.format == "coco"
    assert [s.image_id for s in result.samples] == [42, 7]  # file order; c.png has no caption
    dog, cat = result.samples
    assert dog.image_path == images / "b.png"
    assert dog.captions == ("a dog runs", "a brown dog")
    assert cat.captions == ("A cat on a mat.",)
    assert {s.split for s in result.samples} == {"val"}
    assert dog.extra["objects"] == ["dog"] and dog.extra["width"] == 2
    # the whitespace caption (id 3) is gone, so the annotation dicts still match the captions
    assert [a["id"] for a in dog.extra["annotations"]] == [2, 4]
    assert dog.extra["annotations"][0]["word_objects"] == [[1, "dog"]]
    assert result.empty_captions_dropped == 2
    assert result.images_without_captions == 1
    assert result.missing_images == []


def test_coco_split_from_argument_else_train(tmp_path):
    images = make_images(tmp_path, "a.png", "b.png")
    as_test = read_samples(coco_file(tmp_path), images, split="test")
    unnamed = read_samples(coco_file(tmp_path, "scenes.json"), images)
    assert {s.split for s in as_test.samples} == {"test"}
    assert {s.split for s in unnamed.samples} == {"train"}


def karpathy_coco_file(folder: Path) -> Path:
    def entry(cocoid, filepath, filename, split, *raws):
        return {
            "filepath": filepath,
            "filename": filename,
            "imgid": cocoid % 100,
            "split": split,
            "sentids": list(range(len(raws))),
            "cocoid": cocoid,
            "sentences": [
                {"raw": raw, "tokens": raw.lower().split(), "sentid": i, "imgid": cocoid % 100}
                for i, raw in enumerate(raws)
            ],
        }

    return write_json(
        folder / "dataset_coco.json",
        {
            "dataset": "coco",
            "images": [
                entry(101, "val2014", "v1.png", "test", "A man rides a horse."),
                entry(102, "train2014", "t1.png", "train", "Two dogs.", " ", "Dogs play."),
                entry(103, "val2014", "v2.png", "restval", "A red bus."),
                entry(104, "val2014", "v3.png", "val", "A plate of food."),
            ],
        },
    )


def test_karpathy_paths_splits_and_restval(tmp_path):
    images = make_images(tmp_path, "val2014/v1.png", "train2014/t1.png", "val2014/v2.png")
    make_images(tmp_path, "val2014/v3.png")
    result = read_samples(karpathy_coco_file(tmp_path), tmp_path)

    assert result.format == "karpathy"
    assert [(s.image_id, s.split) for s in result.samples] == [
        (101, "test"),
        (102, "train"),
        (103, "train"),  # restval counts as train by default
        (104, "val"),
    ]
    two_dogs = result.samples[1]
    assert two_dogs.image_path == images / "train2014" / "t1.png"
    assert two_dogs.captions == ("Two dogs.", "Dogs play.")
    assert [s["sentid"] for s in two_dogs.extra["sentences"]] == [0, 2]
    assert two_dogs.extra["imgid"] == 2
    assert result.empty_captions_dropped == 1

    train = read_samples(karpathy_coco_file(tmp_path), tmp_path, split="train")
    assert [s.image_id for s in train.samples] == [102, 103]
    kept_apart = read_samples(
        karpathy_coco_file(tmp_path), tmp_path, split="restval", restval_as_train=False
    )
    assert [(s.image_id, s.split) for s in kept_apart.samples] == [(103, "restval")]


def test_karpathy_flickr_uses_file_name_as_id(tmp_path):
    images = make_images(tmp_path / "Flicker8k_Dataset", "1000_a.jpg")
    annotations = write_json(
        tmp_path / "dataset_flickr8k.json",
        {
            "images": [
                {
                    "filename": "1000_a.jpg",
                    "imgid": 0,
                    "split": "val",
                    "sentences": [{"raw": "A child climbs stairs .", "tokens": []}],
                }
            ]
        },
    )
    [sample] = read_samples(annotations, images).samples
    assert sample == Sample(
        image_path=images / "1000_a.jpg",
        captions=("A child climbs stairs .",),
        split="val",
        image_id="1000_a.jpg",
        extra={"imgid": 0, "sentences": [{"raw": "A child climbs stairs .", "tokens": []}]},
    )


def flickr_token_file(folder: Path) -> Path:
    lines = [f"a.jpg#{i}\tA dog number {i} ." for i in range(3)]
    lines += ["b.jpg#0\tA girl jumps .", "c.jpg#0\tA car .", "b.jpg#1\t", "d.jpg#0\tA tree ."]
    path = folder / "Flickr8k.token.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_lines(path: Path, *lines: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def test_flickr_token_file_with_split_lists(tmp_path):
    images = make_images(tmp_path / "images", "a.jpg", "b.jpg", "c.jpg", "d.jpg")
    token_file = flickr_token_file(tmp_path)
    write_lines(tmp_path / "Flickr_8k.trainImages.txt", "a.jpg", "d.jpg")
    write_lines(tmp_path / "Flickr_8k.devImages.txt", "b.jpg")
    write_lines(tmp_path / "Flickr_8k.testImages.txt")  # c.jpg is in no list

    result = read_samples(token_file, images)
    assert result.format == "flickr"
    assert [(s.image_id, s.split) for s in result.samples] == [
        ("a.jpg", "train"),
        ("b.jpg", "val"),
        ("d.jpg", "train"),
    ]
    assert result.samples[0].captions == (
        "A dog number 0 .",
        "A dog number 1 .",
        "A dog number 2 .",
    )
    assert result.samples[1].captions == ("A girl jumps .",)
    assert result.samples[1].image_path == images / "b.jpg"
    assert result.unlisted_images == 1
    assert result.empty_captions_dropped == 1

    val = read_samples(token_file, images, split="val")
    assert [s.image_id for s in val.samples] == ["b.jpg"]


def test_flickr_split_lists_from_splits_dir(tmp_path):
    images = make_images(tmp_path / "images", "a.jpg", "b.jpg", "c.jpg", "d.jpg")
    splits = tmp_path / "splits"
    write_lines(splits / "Flickr_8k.testImages.txt", "c.jpg")
    result = read_samples(flickr_token_file(tmp_path), images, splits_dir=splits)
    assert [(s.image_id, s.split) for s in result.samples] == [("c.jpg", "test")]
    assert result.unlisted_images == 3


def test_flickr_without_split_lists_is_all_train(tmp_path):
    images = make_images(tmp_path / "images", "a.jpg", "b.jpg", "c.jpg", "d.jpg")
    token_file = flickr_token_file(tmp_path)
    result = read_samples(token_file, images)
    assert [s.image_id for s in result.samples] == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    assert {s.split for s in result.samples} == {"train"}
    with pytest.raises(DatasetFormatError) as error:
        read_samples(token_file, images, split="test")
    assert str(error.value) == (
        "Flickr8k.token.txt: no images in split 'test' (splits present: train)"
    )


def test_flickr_splits_dir_without_lists_is_an_error(tmp_path):
    images = make_images(tmp_path / "images", "a.jpg")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetFormatError, match=r"no Flickr split lists .* in .*empty$"):
        read_samples(flickr_token_file(tmp_path), images, splits_dir=tmp_path / "empty")


def test_csv_groups_rows_per_image_with_split_column(tmp_path):
    images = make_images(tmp_path, "x.png", "y.png", "sub/z.png")
    annotations = tmp_path / "captions.csv"
    annotations.write_text(
        "image,caption,split,source\n"
        'x.png,"A cat, sleeping.",train,web\n'
        "sub/z.png,A lamp.,test,lab\n"
        "x.png,  A sleepy cat  ,train,web\n"
        "\n"
        "y.png,A chair.,restval,web\n"
        "y.png,,restval,web\n",
        encoding="utf-8",
    )
    result = read_samples(annotations, images)
    assert result.format == "csv"
    assert result.samples == [
        Sample(
            tmp_path / "x.png",
            ("A cat, sleeping.", "A sleepy cat"),
            "train",
            "x.png",
            {"source": "web"},
        ),
        Sample(tmp_path / "sub/z.png", ("A lamp.",), "test", "sub/z.png", {"source": "lab"}),
        Sample(tmp_path / "y.png", ("A chair.",), "train", "y.png", {"source": "web"}),
    ]
    assert result.empty_captions_dropped == 1


def test_csv_without_split_column_takes_split_argument(tmp_path):
    images = make_images(tmp_path, "x.png")
    annotations = tmp_path / "captions.csv"
    annotations.write_text("image,caption\nx.png,A cat.\n", encoding="utf-8")
    assert read_samples(annotations, images).samples[0].split == "train"
    assert read_samples(annotations, images, split="val").samples[0].split == "val"


def test_csv_absolute_image_path_is_kept(tmp_path):
    elsewhere = make_images(tmp_path / "elsewhere", "x.png") / "x.png"
    annotations = tmp_path / "captions.csv"
    annotations.write_text(f"image,caption\n{elsewhere},A cat.\n", encoding="utf-8")
    images = tmp_path / "images"
    images.mkdir()
    assert read_samples(annotations, images).samples[0].image_path == elsewhere


def test_jsonl_caption_and_captions_records(tmp_path):
    images = make_images(tmp_path, "p.png", "q.png")
    annotations = tmp_path / "data.jsonl"
    annotations.write_text(
        '{"image": "p.png", "caption": "A pear.", "split": "val"}\n'
        "\n"
        '{"image": "q.png", "captions": ["A cup.", " ", "A mug."], "objects": ["cup"]}\n'
        '{"image": "p.png", "caption": "One pear.", "split": "val"}\n',
        encoding="utf-8",
    )
    result = read_samples(annotations, images)
    assert result.format == "jsonl"
    assert result.samples == [
        Sample(tmp_path / "p.png", ("A pear.", "One pear."), "val", "p.png", {}),
        Sample(tmp_path / "q.png", ("A cup.", "A mug."), "train", "q.png", {"objects": ["cup"]}),
    ]
    assert result.empty_captions_dropped == 1


@pytest.mark.parametrize(
    ("file_name", "content", "expected"),
    [
        ("captions_train2014.json", '{"images": [], "annotations": []}', "coco"),
        (
            "dataset_coco.json",
            '{"images": [{"filename": "a.png", "split": "val", "sentences": []}]}',
            "karpathy",
        ),
        ("results_20130124.token", "1000.jpg#0\tTwo guys .\n", "flickr"),
        ("captions.CSV", "image,caption\n", "csv"),
        ("data.jsonl", "", "jsonl"),
    ],
)
def test_format_detection(tmp_path, file_name, content, expected):
    path = tmp_path / file_name
    path.write_text(content, encoding="utf-8")
    result = read_samples(path, tmp_path, skip_missing=True)
    assert result.format == expected


def test_format_argument_overrides_detection(tmp_path):
    images = make_images(tmp_path, "x.png")
    annotations = tmp_path / "captions.txt"
    annotations.write_text("image,caption\nx.png,A cat.\n", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match="captions.txt: cannot tell the caption format"):
        read_samples(annotations, images)
    assert read_samples(annotations, images, format="csv").samples[0].captions == ("A cat.",)


def test_unknown_json_shape_is_reported(tmp_path):
    path = write_json(tmp_path / "other.json", {"images": [{"file": "x.png"}]})
    with pytest.raises(DatasetFormatError) as error:
        read_samples(path, tmp_path)
    assert str(error.value).startswith("other.json: JSON is neither COCO captions")
    # the hint names the commands' option, not the Python argument
    assert str(error.value).endswith("; name it with --format")


MALFORMED = [
    (
        "captions.csv",
        "image,caption\na.png,ok\na.png\n",
        "captions.csv line 3: missing 'caption' column value",
    ),
    (
        "captions.csv",
        "image,caption\n,A cat.\n",
        "captions.csv line 2: missing 'image' column value",
    ),
    (
        "captions.csv",
        "image,text\na.png,A cat.\n",
        "captions.csv: header has no 'caption' column (found: image, text)",
    ),
    (
        "captions.csv",
        "image,caption\na.png,A cat, sleeping.\n",
        "captions.csv line 2: 3 fields but the header has 2 (quote captions that contain commas)",
    ),
    (
        "captions.csv",
        "image,caption,split\na.png,A cat.,train\na.png,A dog.,val\n",
        "captions.csv line 3: split 'val' for a.png conflicts with 'train' at line 2",
    ),
    (
        "captions.csv",
        "image,caption,split\na.png,A cat.,holdout\n",
        "captions.csv line 2 has unknown split 'holdout' (expected train, val, test or restval)",
    ),
    (
        "captions.csv",
        "image,caption,source\na.png,A cat.,web\na.png,A dog.,lab\n",
        "captions.csv line 3: 'source' for a.png differs from line 2 "
        "(extra columns describe the image and must repeat its value)",
    ),
    ("captions.csv", "", "captions.csv: empty file, expected a header 'image,caption'"),
    (
        "Flickr8k.token.txt",
        "a.jpg#0\tA dog .\n\na.jpg#1 A dog without a tab\n",
        "Flickr8k.token.txt line 3: expected 'name.jpg#N<TAB>caption'",
    ),
    (
        "data.jsonl",
        '{"image": "a.png", "caption": "ok"}\n{"image": "a.png", "caption": }\n',
        "data.jsonl line 2: invalid JSON at column 31: Expecting value",
    ),
    ("data.jsonl", '["a.png", "ok"]\n', "data.jsonl line 1: expected a JSON object"),
    (
        "data.jsonl",
        '{"caption": "ok"}\n',
        "data.jsonl line 1: missing 'image' (a non-empty string)",
    ),
    ("data.jsonl", '{"image": "a.png"}\n', "data.jsonl line 1: missing 'caption' or 'captions'"),
    (
        "data.jsonl",
        '{"image": "a.png", "caption": "ok", "captions": ["ok"]}\n',
        "data.jsonl line 1: give either 'caption' or 'captions', not both",
    ),
    (
        "data.jsonl",
        '{"image": "a.png", "captions": ["ok", null]}\n',
        "data.jsonl line 1: captions must be strings",
    ),
    (
        "captions_val2014.json",
        '{"images": [{"id": 1, "file_name": "a.png"}],\n "annotations": [\n {"image_id": 1,}]}',
        "captions_val2014.json: invalid JSON at line 3 column 17: "
        "Expecting property name enclosed in double quotes",
    ),
    (
        "captions_val2014.json",
        '{"images": [{"id": 1, "file_name": "a.png"}, {"file_name": "b.png"}], "annotations": []}',
        "captions_val2014.json: images[1] has no 'id'",
    ),
    (
        "captions_val2014.json",
        '{"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"image_id": 1}]}',
        "captions_val2014.json: annotations[0] has no 'caption'",
    ),
    (
        "captions_val2014.json",
        '{"images": [{"id": 1, "file_name": "a.png"}],'
        ' "annotations": [{"image_id": 1, "caption": "ok"}, {"image_id": 5, "caption": "x"}]}',
        "captions_val2014.json: annotations[1] refers to image_id 5, not in 'images'",
    ),
    (
        "captions_val2014.json",
        '{"images": [{"id": 1, "file_name": "a.png"}, {"id": 1, "file_name": "b.png"}],'
        ' "annotations": []}',
        "captions_val2014.json: images[1] repeats image id 1 (images[0])",
    ),
]


@pytest.mark.parametrize(("file_name", "content", "message"), MALFORMED)
def test_malformed_files_name_file_and_place(tmp_path, file_name, content, message):
    images = make_images(tmp_path, "a.png", "b.png")
    path = tmp_path / file_name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetFormatError) as error:
        read_samples(path, images)
    assert str(error.value) == message


def karpathy_entry(index: int, **changes):
    entry = {"filename": f"{index}.png", "split": "train", "sentences": [{"raw": "A cat."}]}
    entry.update(changes)
    return {key: value for key, value in entry.items() if value is not None}


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (karpathy_entry(3, sentences=None), "dataset_coco.json: images[3] has no 'sentences'"),
        (karpathy_entry(3, filename=None), "dataset_coco.json: images[3] has no 'filename'"),
        (
            karpathy_entry(3, sentences=[{"raw": "ok"}, {"tokens": ["a"]}]),
            "dataset_coco.json: images[3].sentences[1] has no 'raw' text",
        ),
        (
            karpathy_entry(3, split="extra"),
            "dataset_coco.json: images[3] has unknown split 'extra' "
            "(expected train, val, test or restval)",
        ),
    ],
)
def test_malformed_karpathy_entries(tmp_path, broken, message):
    images = [karpathy_entry(index) for index in range(3)] + [broken]
    path = write_json(tmp_path / "dataset_coco.json", {"images": images})
    with pytest.raises(DatasetFormatError) as error:
        read_samples(path, tmp_path, format="karpathy")
    assert str(error.value) == message


def test_not_utf8_is_reported(tmp_path):
    path = tmp_path / "captions.csv"
    path.write_bytes(b"image,caption\nx.png,caf\xe9\n")
    with pytest.raises(DatasetFormatError, match=r"^captions.csv: not UTF-8 text"):
        read_samples(path, tmp_path)


def many_images_csv(folder: Path, count: int) -> Path:
    path = folder / "captions.csv"
    rows = "".join(f"img{i}.png,Caption {i}.\n" for i in range(count))
    path.write_text("image,caption\n" + rows, encoding="utf-8")
    return path


def test_missing_images_error_gives_count_and_first_names(tmp_path):
    images = make_images(tmp_path / "images", "img0.png", "img3.png")
    annotations = many_images_csv(tmp_path, 10)
    with pytest.raises(MissingImagesError) as error:
        read_samples(annotations, images)
    assert str(error.value) == (
        f"8 of 10 images listed in captions.csv are missing from {images}: "
        "img1.png, img2.png, img4.png, img5.png, img6.png and 3 more "
        "(--skip-missing drops them)"
    )
    assert error.value.missing == [images / f"img{i}.png" for i in (1, 2, 4, 5, 6, 7, 8, 9)]
    assert isinstance(error.value, DatasetFormatError)


def test_skip_missing_drops_and_lists_them(tmp_path):
    images = make_images(tmp_path / "images", "img0.png", "img3.png")
    result = read_samples(many_images_csv(tmp_path, 5), images, skip_missing=True)
    assert [s.image_id for s in result.samples] == ["img0.png", "img3.png"]
    assert result.missing_images == [images / f"img{i}.png" for i in (1, 2, 4)]


def test_missing_annotation_file_or_images_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="annotations file not found"):
        read_samples(tmp_path / "nope.json", tmp_path)
    annotations = many_images_csv(tmp_path, 1)
    with pytest.raises(FileNotFoundError, match="images directory not found"):
        read_samples(annotations, tmp_path / "no_images")


def test_bad_arguments(tmp_path):
    annotations = many_images_csv(tmp_path, 1)
    with pytest.raises(ValueError, match="unknown format 'tsv'"):
        read_samples(annotations, tmp_path, format="tsv")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        read_samples(annotations, tmp_path, split="dev")


DEEP = "[" * 100_000 + "]" * 100_000
HUGE_NUMBER = "9" * 5000


@pytest.mark.parametrize(
    ("file_name", "content", "message"),
    [
        ("captions_val2014.json", DEEP, "captions_val2014.json: JSON nested too deeply"),
        (
            "captions_val2014.json",
            f'{{"images": [{{"id": {HUGE_NUMBER}, "file_name": "a.png"}}], "annotations": []}}',
            "captions_val2014.json: invalid JSON: a number with more than 4300 digits",
        ),
        ("data.jsonl", DEEP + "\n", "data.jsonl line 1: JSON nested too deeply"),
        (
            "data.jsonl",
            f'{{"image": "a.png", "caption": "ok", "n": {HUGE_NUMBER}}}\n',
            "data.jsonl line 1: invalid JSON: a number with more than 4300 digits",
        ),
    ],
)
def test_json_the_parser_cannot_take_is_a_format_error(tmp_path, file_name, content, message):
    # RecursionError is a RuntimeError, which callers would take for a device problem
    path = tmp_path / file_name
    path.write_text(content, encoding="utf-8")
    for format in (None, "coco" if file_name.endswith(".json") else "jsonl"):
        with pytest.raises(DatasetFormatError) as error:
            read_samples(path, tmp_path, format=format)
        assert str(error.value) == message
        assert not isinstance(error.value, RuntimeError)


def test_image_name_too_long_for_the_file_system_counts_as_missing(tmp_path):
    images = make_images(tmp_path / "images", "a.png")
    long_name = "x" * 5000 + ".png"
    annotations = tmp_path / "captions.csv"
    annotations.write_text(f"image,caption\na.png,A cat.\n{long_name},A dog.\n", encoding="utf-8")

    result = read_samples(annotations, images, skip_missing=True)
    assert [s.image_id for s in result.samples] == ["a.png"]
    assert result.missing_images == [images / long_name]
    with pytest.raises(MissingImagesError) as error:
        read_samples(annotations, images)
    assert str(error.value).startswith(
        f"1 of 2 images listed in captions.csv are missing from {images}: xxxxxxxx"
    )
    assert "…" in str(error.value) and len(str(error.value)) < 300  # the name is shortened


def karpathy_with_ids(folder: Path, *cocoids) -> Path:
    entries = [karpathy_entry(index, cocoid=cocoid) for index, cocoid in enumerate(cocoids)]
    return write_json(folder / "dataset_coco.json", {"images": entries})


@pytest.mark.parametrize(
    ("cocoids", "message"),
    [
        ((1, [2]), "dataset_coco.json: images[1] 'cocoid' must be an integer or a string"),
        ((1, True), "dataset_coco.json: images[1] 'cocoid' must be an integer or a string"),
        ((1, 2.0), "dataset_coco.json: images[1] 'cocoid' must be an integer or a string"),
        ((1, 2, 1), "dataset_coco.json: images[2] repeats image id 1 (images[0])"),
    ],
)
def test_karpathy_ids_are_checked(tmp_path, cocoids, message):
    make_images(tmp_path, *(f"{index}.png" for index in range(len(cocoids))))
    with pytest.raises(DatasetFormatError) as error:
        read_samples(karpathy_with_ids(tmp_path, *cocoids), tmp_path)
    assert str(error.value) == message


def test_karpathy_null_cocoid_is_an_error_not_a_shared_id(tmp_path):
    make_images(tmp_path, "0.png", "1.png")
    path = write_json(
        tmp_path / "dataset_coco.json",
        {"images": [karpathy_entry(0, cocoid=5), {**karpathy_entry(1), "cocoid": None}]},
    )
    with pytest.raises(DatasetFormatError) as error:
        read_samples(path, tmp_path)
    assert str(error.value) == (
        "dataset_coco.json: images[1] 'cocoid' must be an integer or a string"
    )


def test_karpathy_file_names_as_ids_must_be_unique(tmp_path):
    make_images(tmp_path, "a/0.png", "b/0.png")
    path = write_json(
        tmp_path / "dataset_flickr8k.json",
        {"images": [karpathy_entry(0, filepath="a"), karpathy_entry(0, filepath="b")]},
    )
    with pytest.raises(DatasetFormatError) as error:
        read_samples(path, tmp_path)
    assert str(error.value) == (
        "dataset_flickr8k.json: images[1] repeats image id '0.png' (images[0]); "
        "give each image a unique 'cocoid'"
    )


@pytest.mark.parametrize("bad_id", ["true", "[1]", "null"])
def test_coco_ids_of_the_wrong_type(tmp_path, bad_id):
    make_images(tmp_path, "a.png")
    image_id = tmp_path / "captions_val2014.json"
    image_id.write_text(
        f'{{"images": [{{"id": {bad_id}, "file_name": "a.png"}}], "annotations": []}}',
        encoding="utf-8",
    )
    with pytest.raises(DatasetFormatError, match=r"images\[0\] 'id' must be an integer or a"):
        read_samples(image_id, tmp_path)
    annotation_id = tmp_path / "captions_train2014.json"
    annotation_id.write_text(
        '{"images": [{"id": 1, "file_name": "a.png"}],'
        f' "annotations": [{{"image_id": {bad_id}, "caption": "A cat."}}]}}',
        encoding="utf-8",
    )
    with pytest.raises(DatasetFormatError, match=r"annotations\[0\] refers to image_id"):
        read_samples(annotation_id, tmp_path)


def test_training_says_what_reading_dropped(tmp_path):
    from training.dataset import report_read

    lines = []
    result = ReadResult([], "flickr", empty_captions_dropped=2, images_without_captions=1,
                        missing_images=[tmp_path / "a.jpg"], unlisted_images=3)  # fmt: skip
    report_read(tmp_path / "captions.txt", result, lines.append)
    assert [line.split(": ", 1)[1] for line in lines] == [
        "2 empty captions dropped",
        "1 images without a caption, skipped",
        "3 images in no split list, skipped",
        "1 images missing, skipped",
    ]
