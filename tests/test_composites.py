"""Composites of photographed objects: determinism, COCO format, boxes and captions that are true.

Tux Paint's stamps may not be installed (CI), so most tests paste fake stamps: discs of one
pure primary colour each, which no background can show (backgrounds are muted), so the image
itself tells where each stamp landed.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from pycocotools.coco import COCO

from captioner.cli.batch.writers import coco_image_id
from captioner.nouns import NounTable, indefinite_article
from training.scenes import composites, generate_split
from training.scenes.command import main
from training.scenes.composites import (
    DESCRIPTION,
    STAMP_LIST,
    describe,
    load_config,
    make_composite,
    read_stamp_list,
    scene_maker,
)

SIZE = 256
SYNTHETIC = ("texture", "plain", "gradient", "noise")
# Fake stamps: path, noun, plural, colour word, mirror, and the primary they are painted in.
FAKE_STAMPS = [
    ("animals/koala.png", "koala", "koalas", "-", "yes", 1),
    ("food/apple.png", "apple", "apples", "red", "yes", 0),
    ("toys/teddy.png", "teddy bear", "teddy bears", "-", "no", 2),
    ("toys/teddy_2.png", "teddy bear", "teddy bears", "-", "yes", 2),
]
NOUN_CHANNEL = {noun: channel for _, noun, _, _, _, channel in FAKE_STAMPS}
NOUN_WORDS = {noun: noun.split(" ") for _, noun, _, _, _, _ in FAKE_STAMPS}
PLURAL_WORDS = {noun: plural.split(" ") for _, noun, plural, _, _, _ in FAKE_STAMPS}
SIZE_WORDS = {"small": {"small"}, "large": {"large", "big"}}
COLOUR_WORDS = {"red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black"}


def write_stamp(path: Path, channel: int, size: tuple[int, int]) -> None:
    """One pure primary on transparent pixels, anti-aliased: a disc, or for teddy bears an arrow
    pointing right, whose pixels lie mostly left of its box's centre (so a flip shows)."""
    big = Image.new("L", (size[0] * 4, size[1] * 4), 0)
    w, h = big.size
    if "teddy" in path.name:
        arrow = [(8, 8), (0.3 * w, 8), (w - 9, h / 2), (0.3 * w, h - 9), (8, h - 9)]
        ImageDraw.Draw(big).polygon(arrow, fill=255)
    else:
        ImageDraw.Draw(big).ellipse([8, 8, w - 9, h - 9], fill=255)
    rgba = np.zeros((size[1], size[0], 4), dtype=np.uint8)
    rgba[..., channel] = 255
    rgba[..., 3] = np.asarray(big.resize(size, Image.Resampling.BOX))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgba).save(path)


@pytest.fixture(scope="module")
def stamps(tmp_path_factory) -> tuple[Path, Path]:
    """(stamps folder, stamp list) with the fake stamps."""
    root = tmp_path_factory.mktemp("stamps")
    lines = ["stamp\tnoun\tplural\tcolour\tmirror"]
    for index, (path, noun, plural, colour, mirror, channel) in enumerate(FAKE_STAMPS):
        write_stamp(root / path, channel, (60 + 20 * index, 50))
        (root / path).with_suffix(".txt").write_text(f"A {noun}.\n")
        lines.append("\t".join([path, noun, plural, colour, mirror]))
    stamp_list = root / "stamps.tsv"
    stamp_list.write_text("\n".join(lines) + "\n")
    return root, stamp_list


@pytest.fixture(scope="module")
def config(stamps) -> composites.CompositeConfig:
    return load_config(stamps[0], stamps[1], backgrounds=SYNTHETIC)[0]


@pytest.fixture(scope="module")
def samples(config) -> list[tuple[Image.Image, list[dict], list[dict]]]:
    return [make_composite(np.random.default_rng([12, i]), SIZE, config) for i in range(60)]


def find_mentions(tokens: list[str]) -> list[tuple[int, int, str, bool]]:
    """(start, end, noun, plural) of every noun phrase's noun in a caption's tokens."""
    mentions = []
    for start in range(len(tokens)):
        for noun in NOUN_WORDS:
            for plural, words in ((False, NOUN_WORDS[noun]), (True, PLURAL_WORDS[noun])):
                if tokens[start : start + len(words)] == words:
                    mentions.append((start, start + len(words), noun, plural))
    return mentions


def test_make_composite_is_a_pure_function_of_the_rng(config):
    image_a, objects_a, captions_a = make_composite(np.random.default_rng(5), SIZE, config)
    image_b, objects_b, captions_b = make_composite(np.random.default_rng(5), SIZE, config)
    image_c, _, _ = make_composite(np.random.default_rng(6), SIZE, config)
    assert image_a.tobytes() == image_b.tobytes()
    assert (objects_a, captions_a) == (objects_b, captions_b)
    assert image_a.tobytes() != image_c.tobytes()
    assert (image_a.size, image_a.mode) == ((SIZE, SIZE), "RGB")


def test_same_seed_gives_identical_files_whatever_the_worker_count(tmp_path, config):
    make = scene_maker(config)
    runs = {
        name: generate_split(tmp_path / name, "val", 5, seed, 96, "png", workers, make)
        for name, seed, workers in (("one", 3, 1), ("two", 3, 2), ("other", 4, 1))
    }
    assert runs["one"].read_bytes() == runs["two"].read_bytes()
    assert runs["one"].read_bytes() != runs["other"].read_bytes()
    for index in range(5):
        name = f"val/{index:06d}.png"
        one, two = (tmp_path / "one" / name).read_bytes(), (tmp_path / "two" / name).read_bytes()
        assert one == two != (tmp_path / "other" / name).read_bytes()


def test_split_is_valid_coco_captions_with_ids_from_file_names(tmp_path, config):
    make, info = scene_maker(config), describe(config)
    path = generate_split(tmp_path, "train", 12, 0, 128, "jpg", 1, make, info)
    coco = COCO(str(path))
    raw = json.loads(path.read_text())
    assert raw["info"]["description"] == DESCRIPTION and raw["info"]["split"] == "train"
    assert raw["info"]["backgrounds"] == list(SYNTHETIC) and raw["info"]["nouns"] == 3
    assert sorted(coco.getImgIds()) == list(range(12))
    for image in coco.loadImgs(coco.getImgIds()):
        assert image["id"] == coco_image_id(image["file_name"])
        with Image.open(tmp_path / "train" / image["file_name"]) as loaded:
            assert (loaded.format, loaded.size) == ("JPEG", (128, 128))
        captions = [a["caption"] for a in coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))]
        assert len(captions) == 5 == len(set(captions))
        assert all(caption == caption.strip().lower() for caption in captions)
        assert 1 <= len(image["objects"]) <= 3
        for obj in image["objects"]:
            assert set(obj) == {"noun", "color", "size", "bbox", "stamp"}


def test_boxes_are_inside_the_image_and_tight_around_each_stamps_visible_pixels(samples):
    checked = 0
    for image, objects, _ in samples:
        pixels = np.asarray(image, dtype=np.float32)
        for obj in objects:
            x, y, w, h = obj["bbox"]
            assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= SIZE and y + h <= SIZE
            channel = NOUN_CHANNEL[obj["noun"]]
            others = np.delete(pixels, channel, axis=2).max(axis=2)
            mine = pixels[..., channel] - others > 128  # muted backgrounds never reach this
            assert mine[y : y + h, x : x + w].mean() > 0.5, obj  # discs and arrows fill 65-79 %
            # The stamp's own pixels, seen in a window around the box, end where the box ends.
            x0, y0 = max(x - 3, 0), max(y - 3, 0)
            window = mine[y0 : y + h + 3, x0 : x + w + 3]
            rows, cols = np.flatnonzero(window.any(axis=1)), np.flatnonzero(window.any(axis=0))
            found = [x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1]
            assert np.abs(np.array(found) - [x, y, x + w, y + h]).max() <= 2, (found, obj)
            checked += 1
    assert checked > 90


def test_only_stamps_that_may_be_mirrored_are_flipped(samples):
    """The arrow stamps point right; toys/teddy.png is listed with mirror "no"."""
    directions: dict[str, set[str]] = {"toys/teddy.png": set(), "toys/teddy_2.png": set()}
    for image, objects, _ in samples:
        blue = np.asarray(image, dtype=np.float32) @ np.array([-1, -1, 2]) / 2 > 128
        for obj in objects:
            if obj["stamp"] in directions:
                x, y, w, h = obj["bbox"]
                columns = np.flatnonzero(blue[y : y + h, x : x + w]) % w
                offset = (columns.mean() + 0.5 - w / 2) / w  # arrow right: about -0.14
                assert abs(offset) > 0.08, obj
                directions[obj["stamp"]].add("right" if offset < 0 else "left")
    assert directions == {"toys/teddy.png": {"right"}, "toys/teddy_2.png": {"right", "left"}}


def test_boxes_never_overlap(samples):
    for _, objects, _ in samples:
        boxes = [obj["bbox"] for obj in objects]
        for i, (ax, ay, aw, ah) in enumerate(boxes):
            for bx, by, bw, bh in boxes[i + 1 :]:
                assert ax + aw <= bx or bx + bw <= ax or ay + ah <= by or by + bh <= ay


def test_captions_name_the_stamps_nouns_with_true_counts_and_articles(samples):
    plurals_seen = 0
    for _, objects, captions in samples:
        nouns = {obj["noun"] for obj in objects}
        for caption in captions:
            tokens = caption["caption"].split(" ")
            mentions = find_mentions(tokens)
            assert mentions and {noun for _, _, noun, _ in mentions} <= nouns, caption
            for start, end, noun, plural in mentions:
                refs = caption["word_objects"][start]
                assert all(caption["word_objects"][i] == refs for i in range(start, end))
                assert {objects[i]["noun"] for i in refs} == {noun}
                same = [i for i, obj in enumerate(objects) if obj["noun"] == noun]
                # The determiner comes before any size and colour words.
                first = start
                while tokens[first - 1] in COLOUR_WORDS | {"small", "large", "big"}:
                    first -= 1
                determiner = tokens[first - 1]
                if plural:
                    assert determiner == "two" and len(refs) == 2
                    plurals_seen += 1
                else:
                    assert len(refs) == 1
                    article = indefinite_article(" ".join(tokens[first:end]))
                    assert determiner in (article, "one"), caption
                if refs != same:  # one of a pair told apart by its size word
                    assert tokens[first] in SIZE_WORDS[objects[refs[0]]["size"]], caption
                    assert {objects[i]["size"] for i in same} == {"small", "large"}
    assert plurals_seen > 5


def test_list_captions_name_every_stamp(samples):
    relation_words = {"left", "right", "above", "below", "under", "next", "beside", "side"}
    listings = 0
    for _, objects, captions in samples:
        for caption in captions:
            tokens = caption["caption"].split(" ")
            if relation_words & set(tokens[1:]):
                continue
            named = {i for refs in caption["word_objects"] for i in refs}
            assert named == set(range(len(objects))), caption
            listings += len(objects) > 1
    assert listings > 20


def test_word_objects_point_at_the_objects_the_words_name(samples):
    noun_tokens = {
        word for words in [*NOUN_WORDS.values(), *PLURAL_WORDS.values()] for word in words
    }
    colours_said = 0
    for _, objects, captions in samples:
        for caption in captions:
            tokens = caption["caption"].split(" ")
            assert len(caption["word_objects"]) == len(tokens)
            for token, refs in zip(tokens, caption["word_objects"], strict=True):
                assert bool(refs) == (
                    token in noun_tokens | COLOUR_WORDS | {"small", "large", "big"}
                )
                for obj in (objects[i] for i in refs):
                    if token in COLOUR_WORDS:
                        assert token == obj["color"]  # only a listed colour is ever said
                        colours_said += 1
                    elif token in noun_tokens:
                        assert token in NOUN_WORDS[obj["noun"]] + PLURAL_WORDS[obj["noun"]]
                    else:
                        assert token in SIZE_WORDS[obj["size"]]
    assert colours_said > 10


def test_max_objects_one_pastes_a_single_stamp(stamps):
    config = load_config(stamps[0], stamps[1], backgrounds=("plain",), max_objects=1)[0]
    for i in range(10):
        _, objects, _ = make_composite(np.random.default_rng(i), 96, config)
        assert len(objects) == 1


def test_close_ups_fill_most_of_the_frame_and_are_called_large(stamps):
    plain = dict(backgrounds=("plain",), max_objects=1)
    close = load_config(stamps[0], stamps[1], **plain, close_ups=1.0)[0]
    usual = load_config(stamps[0], stamps[1], **plain)[0]
    for i in range(10):
        _, objects, captions = make_composite(np.random.default_rng(i), 96, close)
        (box,) = [o["bbox"] for o in objects]
        assert max(box[2], box[3]) >= 0.5 * 96 * 0.8  # long side 0.55-0.8, less a faint fringe
        assert objects[0]["size"] == "large"
        assert not any("small" in c["caption"].split() for c in captions)
        _, objects, _ = make_composite(np.random.default_rng(i), 96, usual)
        assert max(objects[0]["bbox"][2:]) <= 0.48 * 96 + 2
    with pytest.raises(ValueError, match="close-ups"):
        load_config(stamps[0], stamps[1], close_ups=1.5)


def test_contrast_size_words_are_said_only_where_the_objects_sizes_differ(stamps):
    contrast = load_config(stamps[0], stamps[1], backgrounds=SYNTHETIC, size_words="contrast")[0]
    said_in_mixed = lone_wordings = 0
    for i in range(60):
        _, objects, captions = make_composite(np.random.default_rng([12, i]), SIZE, contrast)
        texts = [caption["caption"] for caption in captions]
        assert len(set(texts)) == len(texts) >= 4
        with_size = [text for text in texts if {"small", "large", "big"} & set(text.split())]
        if len({obj["size"] for obj in objects}) == 1:
            assert not with_size, (objects, texts)
        else:
            said_in_mixed += bool(with_size)
        if len(objects) == 1 and not objects[0]["color"]:
            lone_wordings = len(texts)  # "a", "one", "there is a", "there is one"
    assert said_in_mixed >= 5
    assert lone_wordings == 4
    with pytest.raises(ValueError, match="size words must be one of"):
        load_config(stamps[0], stamps[1], size_words="sometimes")


def test_missing_stamps_folder_says_what_to_install(tmp_path, stamps, capsys):
    with pytest.raises(FileNotFoundError, match="stamps folder not found.*tuxpaint-stamps-default"):
        load_config(tmp_path / "nowhere", stamps[1])
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main([str(out), "--kind", "composites", "--stamps", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
    assert "stamps folder not found" in capsys.readouterr().err
    assert not out.exists()


def test_a_listed_stamp_missing_from_the_folder_is_named(tmp_path, stamps):
    copy = tmp_path / "stamps"
    shutil.copytree(stamps[0], copy)
    (copy / "food" / "apple.png").unlink()
    with pytest.raises(FileNotFoundError, match="1 of the 4 stamps.*food/apple.png"):
        load_config(copy, stamps[1])


def test_reserved_evaluation_photos_are_refused(stamps):
    for reserved in ("/usr/share/wallpapers/Next", "/usr/share/backgrounds/mate/nature"):
        with pytest.raises(ValueError, match="reserved for the independent evaluation"):
            load_config(stamps[0], stamps[1], photos=[Path(reserved)])


def test_a_link_to_a_reserved_photo_is_refused(tmp_path, stamps, monkeypatch):
    reserved = tmp_path / "reserved"
    reserved.mkdir()
    Image.new("RGB", (64, 64)).save(reserved / "evaluation.jpg")
    monkeypatch.setattr(composites, "RESERVED_PHOTO_DIRS", (reserved,))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "landscape.jpg").symlink_to(reserved / "evaluation.jpg")
    with pytest.raises(ValueError, match="landscape.jpg is reserved"):
        load_config(stamps[0], stamps[1], photos=[mine])


def test_without_photos_backgrounds_are_synthetic_and_a_note_says_why(
    tmp_path, stamps, monkeypatch
):
    monkeypatch.setattr(composites, "DEFAULT_PHOTOS_DIR", tmp_path)
    config, notes = load_config(stamps[0], stamps[1])
    assert config.backgrounds == SYNTHETIC and config.photos == ()
    assert notes and "background photos not found" in notes[0]
    with pytest.raises(FileNotFoundError, match="lomiri-wallpapers-16.04"):
        load_config(stamps[0], stamps[1], backgrounds=("photo",))
    with pytest.raises(FileNotFoundError, match="no photos"):
        load_config(stamps[0], stamps[1], photos=[tmp_path])


def test_photo_backgrounds_are_crops_of_the_given_photos(tmp_path, stamps):
    # A photo of one flat colour: every background pixel away from the stamps must show it.
    Image.new("RGB", (400, 300), (90, 120, 100)).save(tmp_path / "field.jpg", quality=95)
    config = load_config(stamps[0], stamps[1], photos=[tmp_path], backgrounds=("photo",))[0]
    assert config.photos == (str(tmp_path / "field.jpg"),)
    image, objects, _ = make_composite(np.random.default_rng(0), 128, config)
    pixels = np.asarray(image, dtype=np.float32)
    outside = np.ones((128, 128), dtype=bool)
    for x, y, w, h in (obj["bbox"] for obj in objects):
        outside[max(y - 3, 0) : y + h + 3, max(x - 3, 0) : x + w + 3] = False
    # The crop is lit by a factor of 0.85 to 1.1 and noised a little.
    ratio = pixels[outside].mean(axis=0) / [90, 120, 100]
    assert np.ptp(ratio) < 0.03 and 0.83 < ratio.mean() < 1.12


def test_cli_writes_composites(tmp_path, stamps):
    out = tmp_path / "composites"
    argv = [str(out), "--kind", "composites", "--stamps", str(stamps[0])]
    argv += ["--stamp-list", str(stamps[1]), "--backgrounds", "plain,gradient"]
    argv += ["--train", "3", "--val", "0", "--test", "0", "--size", "64", "--workers", "1"]
    assert main(argv) == 0
    coco = json.loads((out / "captions_train.json").read_text())
    assert coco["info"]["description"] == DESCRIPTION
    assert coco["info"]["backgrounds"] == ["plain", "gradient"]
    assert [image["file_name"] for image in coco["images"]] == [
        "000000.png",
        "000001.png",
        "000002.png",
    ]
    assert all(obj["noun"] in NOUN_WORDS for image in coco["images"] for obj in image["objects"])
    assert coco["info"]["size_words"] == "any"
    argv[0] = str(tmp_path / "contrast")
    assert main([*argv, "--size-words", "contrast"]) == 0
    coco = json.loads((tmp_path / "contrast" / "captions_train.json").read_text())
    assert coco["info"]["size_words"] == "contrast"


def test_cli_refuses_composite_options_for_shapes(tmp_path, stamps, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "out"), "--stamps", str(stamps[0])])
    assert exit_info.value.code == 2
    assert "need --kind composites" in capsys.readouterr().err


def test_committed_stamp_list_names_table_nouns_with_table_plurals():
    table = NounTable.load()
    stamps = read_stamp_list(STAMP_LIST)
    assert len(stamps) > 200 and len({stamp.path for stamp in stamps}) == len(stamps)
    for stamp in stamps:
        assert stamp.noun in table.nouns, stamp
        assert stamp.plural == table.plural_of(stamp.noun), stamp
        # A plural-only noun would get "a binoculars" from the grammar.
        assert not (stamp.plural == stamp.noun and stamp.noun.endswith("s")), stamp
        assert stamp.color is None or stamp.color in COLOUR_WORDS, stamp
        assert stamp.path.endswith(".png") and not stamp.path.startswith("/")


@pytest.mark.skipif(
    not composites.DEFAULT_STAMPS_DIR.is_dir(), reason="tuxpaint-stamps-default not installed"
)
def test_real_stamps_make_composites_of_table_nouns():
    config, _ = load_config()  # checks that every listed stamp is installed
    nouns = set(NounTable.load().nouns)
    for i in range(6):
        image, objects, captions = make_composite(np.random.default_rng(i), SIZE, config)
        assert image.size == (SIZE, SIZE) and len(captions) == 5
        assert {obj["noun"] for obj in objects} <= nouns
