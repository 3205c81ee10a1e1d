"""Generated-scenes dataset: determinism, COCO format, and captions that are true for the image."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from captioner.cli.batch.writers import coco_image_id
from training.scenes import (
    COLORS,
    SHAPE_PLURALS,
    caption_vocabulary,
    generate_split,
    make_scene,
    possible_captions,
)
from training.scenes.command import main

SIZE = 256
SIZE_WORDS = {"small": {"small"}, "large": {"large", "big"}}
# Relation phrases as a reader would parse them; "horizontal" is "next to"/"beside" (either side).
RELATION_PHRASES = {
    ("to", "the", "left", "of"): "left",
    ("left", "of"): "left",
    ("to", "the", "right", "of"): "right",
    ("right", "of"): "right",
    ("above",): "above",
    ("below",): "below",
    ("under",): "below",
    ("next", "to"): "horizontal",
    ("beside",): "horizontal",
}
WITHIN_PAIR_ENDINGS = {
    ("side", "by", "side"): "horizontal",
    ("one", "above", "the", "other"): "vertical",
}


@pytest.fixture(scope="module")
def scenes() -> list[tuple[Image.Image, list[dict], list[dict]]]:
    return [make_scene(np.random.default_rng([12, i]), SIZE) for i in range(120)]


def centre(obj: dict) -> tuple[float, float]:
    x, y, w, h = obj["bbox"]
    return x + w / 2, y + h / 2


def holds(relation: str, subject: dict, target: dict) -> bool:
    """The documented rule: a clear offset (10 % of the image) mostly along one axis."""
    (sx, sy), (tx, ty) = centre(subject), centre(target)
    dx, dy = tx - sx, ty - sy  # > 0: subject left of / above target
    horizontal = abs(dx) >= 0.1 * SIZE and abs(dy) <= 0.5 * abs(dx)
    vertical = abs(dy) >= 0.1 * SIZE and abs(dx) <= 0.5 * abs(dy)
    return {
        "left": horizontal and dx > 0,
        "right": horizontal and dx < 0,
        "above": vertical and dy > 0,
        "below": vertical and dy < 0,
        "horizontal": horizontal,
        "vertical": vertical,
    }[relation]


def find_relation(tokens: list[str]) -> tuple[int, int, str] | None:
    """(start, end, relation) of the relation phrase in a caption, or None for a plain one."""
    for ending, relation in WITHIN_PAIR_ENDINGS.items():
        if tuple(tokens[-len(ending) :]) == ending:
            return len(tokens) - len(ending), len(tokens), relation
    for start in range(len(tokens)):
        for phrase, relation in sorted(RELATION_PHRASES.items(), key=lambda item: -len(item[0])):
            if tuple(tokens[start : start + len(phrase)]) == phrase:
                return start, start + len(phrase), relation
    return None


def referenced(word_objects: list[list[int]]) -> list[int]:
    return sorted({index for refs in word_objects for index in refs})


def test_make_scene_is_a_pure_function_of_the_rng():
    image_a, objects_a, captions_a = make_scene(np.random.default_rng(5), SIZE)
    image_b, objects_b, captions_b = make_scene(np.random.default_rng(5), SIZE)
    image_c, objects_c, captions_c = make_scene(np.random.default_rng(6), SIZE)
    assert image_a.tobytes() == image_b.tobytes()
    assert (objects_a, captions_a) == (objects_b, captions_b)
    assert image_a.tobytes() != image_c.tobytes()
    assert (image_a.size, image_a.mode) == ((SIZE, SIZE), "RGB")


def test_same_seed_gives_identical_files_whatever_the_worker_count(tmp_path):
    one = generate_split(tmp_path / "one", "val", 6, seed=3, size=96, workers=1)
    two = generate_split(tmp_path / "two", "val", 6, seed=3, size=96, workers=2)
    other = generate_split(tmp_path / "other", "val", 6, seed=4, size=96, workers=1)
    assert one.read_bytes() == two.read_bytes()
    assert one.read_bytes() != other.read_bytes()
    for index in range(6):
        name = f"val/{index:06d}.png"
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
        assert (tmp_path / "one" / name).read_bytes() != (tmp_path / "other" / name).read_bytes()


def test_split_is_valid_coco_captions_with_five_captions_per_image(tmp_path):
    path = generate_split(tmp_path, "train", 50, seed=0, workers=1)
    assert path == tmp_path / "captions_train.json"
    coco = json.loads(path.read_text())
    assert set(coco) == {"info", "images", "annotations", "licenses"}
    images, annotations = coco["images"], coco["annotations"]
    assert len(images) == 50 and len({image["id"] for image in images}) == 50
    assert len({annotation["id"] for annotation in annotations}) == len(annotations)
    captions_per_image: dict[int, list[str]] = {image["id"]: [] for image in images}
    for annotation in annotations:
        captions_per_image[annotation["image_id"]].append(annotation["caption"])
    vocabulary = set(caption_vocabulary())
    for captions in captions_per_image.values():
        assert len(captions) == 5 and len(set(captions)) == 5
        for caption in captions:
            assert caption == caption.strip().lower() and "  " not in caption
            assert set(caption.split(" ")) <= vocabulary
    for image in images:
        with Image.open(tmp_path / "train" / image["file_name"]) as loaded:
            assert loaded.size == (image["width"], image["height"]) == (SIZE, SIZE)
            assert loaded.mode == "RGB"
        assert 1 <= len(image["objects"]) <= 3
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob(".*"))


def test_an_images_id_is_the_number_its_file_name_ends_with(tmp_path):
    # The rule the batch command's COCO results use too (captioner.batch.writers.coco_image_id), so
    # its results for a generated split score against the split's own annotations.
    coco = json.loads(generate_split(tmp_path, "test", 3, seed=0, size=64, workers=1).read_text())
    assert [(image["id"], image["file_name"]) for image in coco["images"]] == [
        (0, "000000.png"),
        (1, "000001.png"),
        (2, "000002.png"),
    ]
    assert [image["id"] for image in coco["images"]] == [
        coco_image_id(image["file_name"]) for image in coco["images"]
    ]
    assert {annotation["image_id"] for annotation in coco["annotations"]} == {0, 1, 2}


def test_bboxes_are_inside_the_image_and_tight_around_the_objects_colour(scenes):
    palette_names = list(COLORS)
    palette = np.array([COLORS[name] for name in palette_names], dtype=np.float32)
    for image, objects, _ in scenes:
        pixels = np.asarray(image, dtype=np.float32)  # (H, W, 3)
        # Backgrounds are near grey, so saturated pixels are object pixels; name their colour.
        saturated = pixels.max(axis=2) - pixels.min(axis=2) > 60
        distances = np.linalg.norm(pixels[:, :, None, :] - palette, axis=3)  # (H, W, colours)
        nearest = distances.argmin(axis=2)
        for obj in objects:
            x, y, w, h = obj["bbox"]
            assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= SIZE and y + h <= SIZE
            colour = palette_names.index(obj["color"])
            inside = saturated[y : y + h, x : x + w]
            assert inside.mean() > 0.25, obj
            # Anti-aliased edges blend towards grey and may look like a neighbouring hue.
            named = np.bincount(nearest[y : y + h, x : x + w][inside], minlength=len(palette))
            assert named.argmax() == colour and named[colour] > 0.8 * named.sum(), (named, obj)
            # The object's own pixels, seen in a window around the bbox, end where the bbox ends.
            x0, y0 = max(x - 4, 0), max(y - 4, 0)
            window = saturated[y0 : y + h + 4, x0 : x + w + 4]
            mine = window & (nearest[y0 : y + h + 4, x0 : x + w + 4] == colour)
            rows, cols = np.flatnonzero(mine.any(axis=1)), np.flatnonzero(mine.any(axis=0))
            found = [x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1]
            assert np.abs(np.array(found) - [x, y, x + w, y + h]).max() <= 2, (found, obj)


def test_spatial_relations_agree_with_bbox_centres(scenes):
    checked = 0
    for _, objects, captions in scenes:
        for caption in captions:
            tokens = caption["caption"].split(" ")
            found = find_relation(tokens)
            if found is None:
                continue
            start, end, relation = found
            subjects = referenced(caption["word_objects"][:start])
            targets = referenced(caption["word_objects"][end:])
            if not targets:  # "two red circles side by side": the pair relates to itself
                assert len(subjects) == 2
                pairs = [(objects[subjects[0]], objects[subjects[1]])]
            else:
                assert subjects and not set(subjects) & set(targets)
                pairs = [(objects[s], objects[t]) for s in subjects for t in targets]
            for subject, target in pairs:
                assert holds(relation, subject, target), (caption["caption"], objects)
            checked += 1
    assert checked > 150


def test_a_two_object_scene_caption_parses_into_a_true_relation(scenes):
    for _, objects, captions in scenes:
        if len(objects) == 2 and objects[0]["shape"] != objects[1]["shape"]:
            relational = [c for c in captions if find_relation(c["caption"].split(" "))]
            if not relational:
                continue
            tokens = relational[0]["caption"].split(" ")
            start, end, relation = find_relation(tokens)
            # Parse by words alone: the shape named last before / after the phrase.
            subject_shape = [t for t in tokens[:start] if t in SHAPE_PLURALS][-1]
            target_shape = [t for t in tokens[end:] if t in SHAPE_PLURALS][-1]
            by_shape = {obj["shape"]: obj for obj in objects}
            assert holds(relation, by_shape[subject_shape], by_shape[target_shape])
            return
    pytest.fail("no two-object scene with different shapes among the fixtures")


def test_word_objects_point_at_the_objects_the_words_name(scenes):
    attribute_words = set(COLORS) | set(SHAPE_PLURALS) | set(SHAPE_PLURALS.values())
    attribute_words |= {"small", "large", "big"}
    for _, objects, captions in scenes:
        for caption in captions:
            tokens = caption["caption"].split(" ")
            assert len(caption["word_objects"]) == len(tokens)
            for token, refs in zip(tokens, caption["word_objects"], strict=True):
                assert bool(refs) == (token in attribute_words), (token, caption)
                for index in refs:
                    obj = objects[index]
                    names = {obj["color"], obj["shape"], SHAPE_PLURALS[obj["shape"]]}
                    assert token in names | SIZE_WORDS[obj["size"]], (token, obj)
                if token in SHAPE_PLURALS:
                    assert len(refs) == 1
                if token in SHAPE_PLURALS.values():
                    assert len(refs) == 2 and "two" in tokens


def test_noun_phrases_name_every_object_of_their_shape_and_colour(scenes):
    for _, objects, captions in scenes:
        for caption in captions:
            tokens = caption["caption"].split(" ")
            for position, token in enumerate(tokens):
                if token not in SHAPE_PLURALS and token not in SHAPE_PLURALS.values():
                    continue
                refs = caption["word_objects"][position]
                colour = tokens[position - 1]
                same = [
                    i
                    for i, o in enumerate(objects)
                    if (o["color"], o["shape"]) == (colour, objects[refs[0]]["shape"])
                ]
                if len(refs) == len(same):
                    assert refs == same
                else:  # one of a pair told apart by size: the size word comes right before
                    assert tokens[position - 2] in SIZE_WORDS[objects[refs[0]]["size"]]
                    assert all(
                        objects[i]["size"] != objects[refs[0]]["size"]
                        for i in same
                        if i not in refs
                    )


def test_captions_listing_every_object_name_them_left_to_right(scenes):
    listings = 0
    for _, objects, captions in scenes:
        for caption in captions:
            tokens = caption["caption"].split(" ")
            if find_relation(tokens) is not None:
                continue
            phrases = [
                refs
                for token, refs in zip(tokens, caption["word_objects"], strict=True)
                if token in SHAPE_PLURALS or token in SHAPE_PLURALS.values()
            ]
            assert referenced(phrases) == list(range(len(objects))), caption
            leftmost = [min(centre(objects[i])[0] for i in refs) for refs in phrases]
            assert leftmost == sorted(leftmost), caption
            listings += len(phrases) > 1
    assert listings > 50  # the fixture's multi-object scenes give many


def test_splits_use_different_random_streams(tmp_path):
    generate_split(tmp_path, "train", 8, seed=0, size=64, workers=1)
    generate_split(tmp_path, "test", 8, seed=0, size=64, workers=1)
    digests = {
        split: {hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / split).iterdir()}
        for split in ("train", "test")
    }
    assert len(digests["train"]) == len(digests["test"]) == 8
    assert not digests["train"] & digests["test"]


def test_cli_writes_only_splits_with_images(tmp_path):
    out = tmp_path / "scenes"
    argv = [
        str(out),
        "--train",
        "3",
        "--val",
        "0",
        "--test",
        "2",
        "--size",
        "64",
        "--format",
        "jpg",
    ]
    assert main(argv + ["--workers", "1"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "captions_test.json",
        "captions_train.json",
        "test",
        "train",
    ]
    assert sorted(p.name for p in (out / "train").iterdir()) == [
        "000000.jpg",
        "000001.jpg",
        "000002.jpg",
    ]
    with Image.open(out / "test" / "000001.jpg") as image:
        assert (image.format, image.size) == ("JPEG", (64, 64))
    coco = json.loads((out / "captions_test.json").read_text())
    assert [image["file_name"] for image in coco["images"]] == ["000000.jpg", "000001.jpg"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"split": "../up"}, "split name"),
        ({"count": 0}, "at least 1"),
        ({"size": 32}, "at least 64"),
        ({"image_format": "gif"}, "image format"),
        ({"seed": -1}, "non-negative"),
    ],
)
def test_generate_split_rejects_bad_arguments(tmp_path, arguments, message):
    call = {"out_dir": tmp_path, "split": "val", "count": 2, "seed": 0, **arguments}
    with pytest.raises(ValueError, match=message):
        generate_split(**call)
    assert not any(Path(tmp_path).iterdir())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--train", "-1"], "must be zero or more"),
        (["--train", "0", "--val", "0", "--test", "0"], "nothing to generate"),
        (["--size", "16"], "--size must be at least 64"),
    ],
)
def test_cli_rejects_bad_arguments(tmp_path, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "out"), *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_possible_captions_hold_every_caption_the_generator_writes(scenes):
    for _, objects, captions in scenes[:40]:
        possible = possible_captions(objects, SIZE)
        assert {c["caption"] for c in captions} <= possible
        # wordings the five references did not happen to use are there too
        assert len(possible) > len(captions)


def test_possible_captions_exclude_a_wrong_colour_or_a_flipped_relation(scenes):
    flipped_relations = wrong_colours = 0
    for _, objects, captions in scenes:
        possible = possible_captions(objects, SIZE)
        absent = [color for color in COLORS if color not in {o["color"] for o in objects}]
        for caption in captions:
            tokens = caption["caption"].split(" ")
            colour_at = next(i for i, token in enumerate(tokens) if token in COLORS)
            recoloured = tokens[:colour_at] + [absent[0]] + tokens[colour_at + 1 :]
            assert " ".join(recoloured) not in possible
            wrong_colours += 1
            if "left" in tokens:
                flipped = ["right" if token == "left" else token for token in tokens]
                assert " ".join(flipped) not in possible
                flipped_relations += 1
    assert wrong_colours == 5 * len(scenes) and flipped_relations > 10
