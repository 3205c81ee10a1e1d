"""The batch CLI: every odd input, every output format, resume, side outputs and sharding."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import pathlib
import resource
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
from conftest import PHOTO_CAPTIONS
from PIL import Image
from pycocotools.coco import COCO

import captioner.cli.batch.run as batch_run
from captioner import Captioner
from captioner.cli.batch.command import main, parse_args
from captioner.cli.batch.config import BatchRun
from captioner.cli.batch.extras import attention_grid_path
from captioner.cli.batch.output import OutputExistsError, OutputNotWritableError, ResumeError
from captioner.cli.batch.run import run
from captioner.device import resolve_device
from captioner.options import DecodeOptions
from captioner.photos import images
from captioner.photos.metadata import read_caption_metadata
from training import evaluate
from training.scenes import generate_split

IMAGE_DESCRIPTION = 0x010E
RUNNING_AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
CONSOLE_SCRIPT = pathlib.Path(sys.executable).parent / "captioner"


# --- helpers ------------------------------------------------------------------------------------


def caption(model_dir, *arguments, workers: int = 0) -> tuple[int, str]:
    """Run the CLI in this process; (exit status, stderr). Output goes where arguments say."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        status = main([*map(str, arguments), "--model", str(model_dir), "--workers", str(workers)])
    return status, stderr.getvalue()


def caption_rows(model_dir, output: pathlib.Path, *arguments, **options) -> tuple[int, list, str]:
    status, stderr = caption(model_dir, *arguments, "-o", output, **options)
    return status, read_jsonl(output), stderr


def read_jsonl(path: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def summary(stderr: str) -> str:
    """The last line, less its timing: "5 photos: 4 captioned, 1 failed"."""
    return stderr.splitlines()[-1].removeprefix("captioner: ").split(" in ")[0]


def usage_error(model_dir, *arguments) -> str:
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), pytest.raises(SystemExit) as exit_info:
        main([*map(str, arguments), "--model", str(model_dir)])
    assert exit_info.value.code == 2
    return stderr.getvalue()


def saved(image: Image.Image, path: pathlib.Path, **options) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return path


def png_claiming_size(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height, with only a few bytes of pixel data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload))
            + kind
            + payload
            + struct.pack(">I", zlib.crc32(kind + payload))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def jpeg_scan_data(encoded: bytes) -> bytes:
    """The compressed pixels: everything from the start-of-scan marker on."""
    return encoded[encoded.index(b"\xff\xda") :]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture(scope="module")
def album(tmp_path_factory, photos) -> pathlib.Path:
    """Five good photos with distinct captions."""
    folder = tmp_path_factory.mktemp("album")
    for name in ("astronaut", "chelsea", "coffee", "rocket", "motorcycle"):
        saved(photos[name].resize((320, 240)), folder / f"{name}.jpg", quality=90)
    return folder


def album_paths(album: pathlib.Path) -> list[pathlib.Path]:
    return sorted(album.glob("*.jpg"))


# --- every bad input in one batch ---------------------------------------------------------------


@pytest.fixture(scope="module")
def odd_inputs(tmp_path_factory, photos, tiny_model_dir):
    """Every odd file the issue lists, given explicitly, plus the upright photo for reference."""
    folder = tmp_path_factory.mktemp("odd")
    astronaut = photos["astronaut"]
    good = saved(astronaut, folder / "upright.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored turned 90 degrees clockwise
    sideways = astronaut.transpose(Image.Transpose.ROTATE_90)
    paths = {
        "good": good,
        "exif_rotated": saved(sideways, folder / "rotated.jpg", quality=95, exif=exif.tobytes()),
        "sideways": saved(sideways, folder / "sideways.jpg", quality=95),
        "one_pixel": saved(Image.new("RGB", (1, 1), (0, 0, 255)), folder / "dot.png"),
        "cmyk": saved(photos["coffee"].convert("CMYK"), folder / "cmyk.jpg"),
        "sixteen_bit": saved(
            Image.fromarray(np.asarray(astronaut.convert("L"), np.uint16) * 257),
            folder / "deep.png",
        ),
        "webp": saved(photos["rocket"], folder / "rocket.webp"),
    }
    palette = photos["chelsea"].quantize(64)
    paths["palette"] = saved(palette, folder / "palette.png", transparency=0)
    assert Image.open(paths["palette"]).mode == "P"
    cat = photos["chelsea"].quantize(255)  # one palette: every frame shows exactly these pixels
    others = [Image.new("RGB", cat.size, colour) for colour in ((255, 0, 0), (0, 0, 255))]
    paths["animated"] = saved(cat, folder / "animated.gif", save_all=True, append_images=others)
    paths["first_frame"] = saved(cat, folder / "first_frame.gif")
    assert Image.open(paths["animated"]).n_frames == 3

    paths["empty"] = folder / "empty.jpg"
    paths["empty"].write_bytes(b"")
    paths["truncated"] = folder / "truncated.jpg"
    paths["truncated"].write_bytes(good.read_bytes()[:3000])
    paths["text"] = folder / "notes.jpg"
    paths["text"].write_text("shopping list: milk, eggs\n")
    # Headers claiming 432 MB and 1.2 GB of pixels: above our limit, then above Pillow's own.
    paths["huge"] = folder / "huge.png"
    paths["huge"].write_bytes(png_claiming_size(12_000, 12_000))
    paths["bomb"] = folder / "bomb.png"
    paths["bomb"].write_bytes(png_claiming_size(20_000, 20_000))
    paths["unreadable"] = folder / "locked.jpg"
    paths["unreadable"].write_bytes(good.read_bytes())
    paths["unreadable"].chmod(0)
    paths["broken_link"] = folder / "broken.jpg"
    paths["broken_link"].symlink_to(folder / "deleted.jpg")
    paths["missing"] = folder / "never_existed.jpg"
    non_utf8 = os.fsencode(folder) + b"/caf\xe9.jpg"
    with open(non_utf8, "wb") as file:
        file.write(good.read_bytes())
    paths["non_utf8"] = os.fsdecode(non_utf8)
    # A folder with a photo's name, given explicitly: it is a folder, so its photos are used.
    paths["folder"] = folder / "x.jpg"
    paths["in_folder"] = saved(photos["motorcycle"], folder / "x.jpg" / "inside.png")

    arguments = [paths[key] for key in paths if key != "in_folder"]
    arguments += [good, folder / "." / "upright.jpg"]  # the same photo twice more

    output = folder / "captions.jsonl"
    rss_before = peak_rss_mb()
    with pytest.MonkeyPatch.context() as patch:
        if RUNNING_AS_ROOT:  # root reads any file, so make opening this one fail as it would

            def guarded_open(file, *args, **kwargs):
                if os.fspath(file) == str(paths["unreadable"]):
                    raise PermissionError(13, "Permission denied", str(file))
                return open(file, *args, **kwargs)

            patch.setattr(images, "open", guarded_open, raising=False)
        status, rows, stderr = caption_rows(tiny_model_dir, output, *arguments)
    by_path = {row["path"]: row for row in rows}
    names = {key: images.source_name(path) for key, path in paths.items()}
    return {
        "status": status,
        "rows": rows,
        "row": lambda key: by_path[names[key]],
        "names": names,
        "stderr": stderr,
        "rss_growth_mb": peak_rss_mb() - rss_before,
    }


FAILURES = {
    "empty": "file is empty (0 bytes)",
    "truncated": "truncated or corrupt",
    "text": "not an image",
    "huge": "12000 x 12000 pixels, above the limit",
    "bomb": "too large to decode safely",
    "unreadable": "permission denied",
    "broken_link": "broken symbolic link",
    "missing": "file not found",
}
CAPTIONED = [
    "good",
    "exif_rotated",
    "sideways",
    "one_pixel",
    "cmyk",
    "sixteen_bit",
    "webp",
    "palette",
    "animated",
    "first_frame",
    "non_utf8",
    "in_folder",
]


@pytest.mark.parametrize("key", list(FAILURES))
def test_a_bad_photo_gets_an_error_row_and_an_error_line(odd_inputs, key):
    row = odd_inputs["row"](key)
    assert set(row) == {"path", "error"}
    assert FAILURES[key] in row["error"]
    assert f"captioner: {odd_inputs['names'][key]}: {row['error']}\n" in odd_inputs["stderr"]


@pytest.mark.parametrize("key", CAPTIONED)
def test_every_readable_odd_photo_is_captioned(odd_inputs, key):
    row = odd_inputs["row"](key)
    assert set(row) == {"path", "caption", "score"}
    assert row["caption"] and row["score"] <= 0


def test_one_bad_photo_never_stops_the_batch(odd_inputs):
    assert odd_inputs["status"] == 1
    assert len(odd_inputs["rows"]) == len(FAILURES) + len(CAPTIONED)  # duplicates given once
    assert odd_inputs["stderr"].count("captioner: ") == len(FAILURES) + 1  # + the summary line


def test_a_folder_named_like_a_photo_is_walked_not_opened(odd_inputs):
    assert odd_inputs["names"]["folder"] not in {row["path"] for row in odd_inputs["rows"]}
    assert odd_inputs["row"]("in_folder")["caption"] == "a red motorcycle in a garage"


def test_exif_rotated_photo_is_captioned_upright(odd_inputs):
    upright, rotated = odd_inputs["row"]("good"), odd_inputs["row"]("exif_rotated")
    sideways = odd_inputs["row"]("sideways")  # the same stored pixels without the EXIF tag
    assert rotated["caption"] == upright["caption"] == "a woman in a white space suit"
    assert rotated["score"] == pytest.approx(upright["score"], abs=0.005)
    # The model does notice orientation, far beyond the tolerance above: ignoring EXIF would fail.
    assert sideways["score"] < upright["score"] - 0.05


def test_animated_gif_is_captioned_from_its_first_frame(odd_inputs):
    animated, first = odd_inputs["row"]("animated"), odd_inputs["row"]("first_frame")
    assert animated["caption"] == first["caption"] == "a cat looking at the camera"
    assert animated["score"] == pytest.approx(first["score"], abs=1e-4)


def test_decompression_bombs_are_refused_without_decoding(odd_inputs):
    assert odd_inputs["rss_growth_mb"] < 300  # decoding them would take 432 and 1,200 MB


def test_non_utf8_file_name_is_captioned_and_printed_escaped(odd_inputs):
    name = odd_inputs["names"]["non_utf8"]
    assert name.endswith("caf\\xe9.jpg")
    assert odd_inputs["row"]("non_utf8")["caption"] == odd_inputs["row"]("good")["caption"]


# --- inputs -------------------------------------------------------------------------------------


def test_folders_recursion_patterns_and_hidden_files(tmp_path, photos, tiny_model_dir):
    top = saved(photos["chelsea"], tmp_path / "a" / "top.JPG")
    nested = saved(photos["coffee"], tmp_path / "a" / "sub" / "nested.png")
    saved(photos["rocket"], tmp_path / "a" / ".hidden.jpg")  # e.g. macOS ._ files
    (tmp_path / "a" / "top.txt").write_text("a sidecar, not a photo")
    (tmp_path / "a" / "sub.jpg").mkdir()  # a folder with a photo's extension, while walking
    output = tmp_path / "out.jsonl"

    status, rows, _ = caption_rows(tiny_model_dir, output, tmp_path / "a")
    assert status == 0 and [row["path"] for row in rows] == [str(top)]

    status, rows, _ = caption_rows(tiny_model_dir, output, "-r", tmp_path / "a", "--overwrite")
    assert status == 0 and [row["path"] for row in rows] == [str(nested), str(top)]

    pattern = f"{tmp_path}/a/**/*.png"  # quoted: the CLI expands it, not the shell
    status, rows, _ = caption_rows(tiny_model_dir, output, pattern, "--overwrite")
    assert status == 0 and [row["path"] for row in rows] == [str(nested)]

    status, rows, stderr = caption_rows(tiny_model_dir, output, f"{tmp_path}/*.heic", "--overwrite")
    assert status == 1 and "no file matches it as a pattern" in rows[0]["error"]


def test_paths_from_a_file_and_from_stdin(tmp_path, album, tiny_model_dir, monkeypatch):
    paths = album_paths(album)
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"".join(os.fsencode(p) + b"\n" for p in paths[:2]) + b"\n")
    output = tmp_path / "out.jsonl"
    status, rows, _ = caption_rows(tiny_model_dir, output, "--files-from", listing)
    assert status == 0 and [row["path"] for row in rows] == list(map(str, paths[:2]))

    stdin = io.TextIOWrapper(io.BytesIO(os.fsencode(paths[2]) + b"\r\n"))
    monkeypatch.setattr(sys, "stdin", stdin)
    status, rows, _ = caption_rows(tiny_model_dir, output, "-", paths[3], "--overwrite")
    assert status == 0 and [row["path"] for row in rows] == [str(paths[2]), str(paths[3])]


def test_no_photos_found_is_a_failure(tmp_path, tiny_model_dir):
    (tmp_path / "empty").mkdir()
    status, stderr = caption(tiny_model_dir, tmp_path / "empty", "-o", tmp_path / "out.jsonl")
    assert status == 1 and "no photos found" in stderr


# --- output formats -----------------------------------------------------------------------------


def test_beams_gives_the_alternatives_best_first(tmp_path, album, tiny_model_dir):
    output = tmp_path / "out.jsonl"
    status, rows, _ = caption_rows(tiny_model_dir, output, album, "--beams", "3")
    assert status == 0 and len(rows) == 5
    for row in rows:
        assert len(row["beams"]) == 3
        assert row["beams"][0] == {"caption": row["caption"], "score": row["score"]}
        scores = [beam["score"] for beam in row["beams"]]
        assert scores == sorted(scores, reverse=True)
        assert len({beam["caption"] for beam in row["beams"]}) == 3


def test_csv_parses_back_with_the_csv_module(tmp_path, album, tiny_model_dir):
    bad = tmp_path / 'bad, "quoted".jpg'
    bad.write_text("not a photo")
    output = tmp_path / "out.csv"
    jsonl = tmp_path / "out.jsonl"
    status, _ = caption(tiny_model_dir, album, bad, "--format", "csv", "--beams", "2", "-o", output)
    assert status == 1
    caption(tiny_model_dir, album, "--beams", "2", "-o", jsonl)
    with open(output, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["path", "caption", "score", "error", "caption_2", "score_2"]
    expected = read_jsonl(jsonl)
    for row, reference in zip(rows, expected, strict=False):
        assert row["path"] == reference["path"] and row["caption"] == reference["caption"]
        assert float(row["score"]) == pytest.approx(reference["score"], abs=1e-4)
        assert row["caption_2"] == reference["beams"][1]["caption"]
    assert rows[-1]["path"] == str(bad) and "not an image" in rows[-1]["error"]


def test_coco_results_use_numeric_ids_from_coco_file_names(tmp_path, photos, tiny_model_dir):
    coco = saved(photos["chelsea"], tmp_path / "COCO_val2014_000000391895.jpg")
    holiday = saved(photos["coffee"], tmp_path / "holiday.jpg")
    output = tmp_path / "results.json"
    status, _ = caption(tiny_model_dir, coco, holiday, "--format", "coco", "-o", output)
    assert status == 0
    assert json.loads(output.read_text()) == [
        {"image_id": 391895, "caption": "a cat looking at the camera"},
        {"image_id": str(holiday), "caption": "a cup of coffee on a saucer"},
    ]


def test_coco_results_for_a_generated_split_score_every_image_once(tmp_path, tiny_model_dir):
    annotations = generate_split(tmp_path, "test", 5, seed=0, size=64, workers=1)
    output = tmp_path / "results.json"
    status, _ = caption(tiny_model_dir, tmp_path / "test", "--format", "coco", "-o", output)
    assert status == 0
    references = COCO(str(annotations))
    scored = references.loadRes(str(output))  # refuses ids the annotations do not have
    image_ids = [row["image_id"] for row in json.loads(output.read_text())]
    assert sorted(image_ids) == sorted(references.getImgIds())  # each once
    assert sorted(scored.getImgIds()) == sorted(references.getImgIds())


@pytest.fixture()
def same_ids(tmp_path, photos) -> list[pathlib.Path]:
    """Four photos, two pairs sharing a COCO image_id (the number their names end with)."""
    return [
        saved(photos["astronaut"], tmp_path / "a" / "img_1.jpg"),
        saved(photos["chelsea"], tmp_path / "b" / "img_1.jpg"),
        saved(photos["coffee"], tmp_path / "a" / "img_2.jpg"),
        saved(photos["rocket"], tmp_path / "b" / "img_2.jpg"),
    ]


def test_photos_repeating_an_image_id_are_failures_counted_once(tmp_path, same_ids, tiny_model_dir):
    output = tmp_path / "results.json"
    status, stderr = caption(tiny_model_dir, *same_ids, "--format", "coco", "-o", output)
    assert status == 1
    assert [row["image_id"] for row in json.loads(output.read_text())] == [1, 2]
    assert summary(stderr) == "4 photos: 2 captioned, 2 failed"
    assert f"captioner: {same_ids[1]}: its image_id 1 is also {same_ids[0]}'s" in stderr

    # Resumed, the photos with a row are done; the others are still failures, and say so.
    status, stderr = caption(
        tiny_model_dir, *same_ids, "--format", "coco", "-o", output, "--resume"
    )
    assert status == 1
    assert summary(stderr) == "4 photos: 0 captioned, 2 failed, 2 already done"
    assert f"captioner: {same_ids[3]}: its image_id 2 is also {same_ids[2]}'s" in stderr
    assert [row["image_id"] for row in json.loads(output.read_text())] == [1, 2]


def test_a_repeated_image_id_is_found_across_shards(tmp_path, same_ids, tiny_model_dir):
    output = tmp_path / "results.json"
    ids = []
    for index in range(2):
        caption(
            tiny_model_dir, *same_ids, "--format", "coco", "--shard", f"{index}/2", "-o", output
        )
        ids += [
            row["image_id"]
            for row in json.loads(tmp_path.joinpath(f"results.{index}-of-2.json").read_text())
        ]
    assert sorted(ids) == [1, 2]


def test_txt_is_path_tab_caption(tmp_path, album, tiny_model_dir, capsys):
    status = main([str(album), "--format", "txt", "--model", str(tiny_model_dir), "-q"])
    out = capsys.readouterr().out
    assert status == 0
    lines = [line.split("\t") for line in out.splitlines()]
    assert [path for path, _ in lines] == list(map(str, album_paths(album)))
    assert [c for p, c in lines if p.endswith("chelsea.jpg")] == ["a cat looking at the camera"]


def test_default_output_is_stdout_and_quiet_leaves_stderr_empty(album, tiny_model_dir, capsys):
    assert main([str(album), "--model", str(tiny_model_dir), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert len([json.loads(line) for line in captured.out.splitlines()]) == 5
    assert captured.err == ""


def test_progress_bar_only_on_a_terminal(album, tiny_model_dir, monkeypatch, capsys):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for quiet, expect_bar in ((False, True), (True, False)):
        terminal = Terminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        arguments = [str(album), "--model", str(tiny_model_dir), "--workers", "0"]
        assert main(arguments + ["--quiet"] * quiet) == 0
        text = terminal.getvalue()
        assert ("5/5" in text and " photos/s" in text) == expect_bar
        assert (text == "") == quiet
    capsys.readouterr()


def test_workers_give_the_same_rows_in_the_same_order(tmp_path, album, tiny_model_dir):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    arguments = [album, bad, album_paths(album)[0].with_name("gone.jpg"), "--batch-size", "2"]
    _, in_process, _ = caption_rows(tiny_model_dir, tmp_path / "a.jsonl", *arguments, workers=0)
    _, in_workers, _ = caption_rows(tiny_model_dir, tmp_path / "b.jsonl", *arguments, workers=2)
    assert len(in_process) == 7
    assert in_workers == in_process


# --- nothing lost: streaming and resume ---------------------------------------------------------


@pytest.mark.parametrize("output_format", ["jsonl", "csv", "coco", "txt"])
def test_resume_after_a_kill_finishes_without_duplicates(
    tmp_path, album, tiny_model_dir, output_format
):
    full = tmp_path / "full"
    caption(tiny_model_dir, album, "--format", output_format, "-o", full)
    complete = full.read_bytes()
    # A killed run: the first rows written and flushed, the third cut off halfway.
    rows_start = complete.index(b"\n") + 1 if output_format == "csv" else 0
    third_row = _nth_row_offset(complete, output_format, 2)
    killed = tmp_path / "killed"
    killed.write_bytes(complete[: (third_row + _nth_row_offset(complete, output_format, 3)) // 2])
    assert rows_start < third_row

    status, stderr = caption(
        tiny_model_dir, album, "--format", output_format, "-o", killed, "--resume", "--quiet"
    )
    assert status == 0 and stderr == ""
    assert killed.read_bytes() == complete


def _nth_row_offset(content: bytes, output_format: str, n: int) -> int:
    """Byte offset where row n (0-based) starts."""
    if output_format == "coco":
        return [i for i in range(len(content)) if content[i : i + 2] == b"\n{"][n]
    lines = content.splitlines(keepends=True)
    skip = 1 if output_format == "csv" else 0
    return sum(len(line) for line in lines[: n + skip])


def test_ctrl_c_keeps_the_finished_rows_and_resume_completes(
    tmp_path, album, tiny_model_dir, monkeypatch
):
    reference = tmp_path / "reference.jsonl"
    caption(tiny_model_dir, album, "-o", reference)
    handled = []
    real_handle = batch_run._handle

    def interrupted_on_the_fourth_photo(result, *args):
        if len(handled) == 3:
            raise KeyboardInterrupt
        handled.append(result)
        real_handle(result, *args)

    output = tmp_path / "out.jsonl"
    with monkeypatch.context() as patch:
        patch.setattr(batch_run, "_handle", interrupted_on_the_fourth_photo)
        status, stderr = caption(tiny_model_dir, album, "-o", output, "--batch-size", "2")
    assert status == 130 and "run again with --resume" in stderr
    assert read_jsonl(output) == read_jsonl(reference)[:3]
    assert caption(tiny_model_dir, album, "-o", output, "--resume")[0] == 0
    assert output.read_bytes() == reference.read_bytes()


def test_resume_appends_new_photos_to_a_finished_coco_file(tmp_path, album, tiny_model_dir):
    output = tmp_path / "results.json"
    first, *rest = album_paths(album)
    caption(tiny_model_dir, first, "--format", "coco", "-o", output)
    assert len(json.loads(output.read_text())) == 1
    status, _ = caption(tiny_model_dir, album, "--format", "coco", "-o", output, "--resume")
    assert status == 0 and len(json.loads(output.read_text())) == 5


def test_resume_skips_failed_photos_too_and_keeps_their_rows(tmp_path, album, tiny_model_dir):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    output = tmp_path / "out.jsonl"
    assert caption(tiny_model_dir, album, bad, "-o", output)[0] == 1
    before = output.read_bytes()
    status, stderr = caption(tiny_model_dir, album, bad, "-o", output, "--resume")
    assert status == 0 and "0 captioned" in stderr and output.read_bytes() == before


def test_existing_output_is_not_replaced_without_resume_or_overwrite(
    tmp_path, album, tiny_model_dir
):
    output = tmp_path / "out.jsonl"
    output.write_text('{"path": "precious.jpg", "caption": "an overnight run"}\n')
    stderr = usage_error(tiny_model_dir, album, "-o", output)
    assert "already exists" in stderr and "--resume" in stderr
    assert output.read_text() == '{"path": "precious.jpg", "caption": "an overnight run"}\n'


def test_resume_refuses_a_file_in_another_format(tmp_path, album, tiny_model_dir):
    output = tmp_path / "out.jsonl"
    caption(tiny_model_dir, album, "-o", output)
    stderr = usage_error(tiny_model_dir, album, "--format", "coco", "-o", output, "--resume")
    assert f"cannot resume {output} as coco" in stderr


# --- per-photo outputs --------------------------------------------------------------------------


def test_sidecar_never_overwrites_without_the_flag(tmp_path, photos, tiny_model_dir):
    cat = saved(photos["chelsea"], tmp_path / "cat.jpg")
    cup = saved(photos["coffee"], tmp_path / "cup.jpg")
    (tmp_path / "cup.txt").write_text("my own words\n")
    status, stderr = caption(tiny_model_dir, cat, cup, "--sidecar", "-o", tmp_path / "o.jsonl")
    assert status == 1
    assert (tmp_path / "cat.txt").read_text() == "a cat looking at the camera\n"
    assert (tmp_path / "cup.txt").read_text() == "my own words\n"
    assert f"captioner: {cup}: {tmp_path / 'cup.txt'} already exists" in stderr

    status, _ = caption(
        tiny_model_dir, cat, cup, "--sidecar", "--overwrite", "-o", tmp_path / "o.jsonl"
    )
    assert status == 0
    assert (tmp_path / "cup.txt").read_text() == "a cup of coffee on a saucer\n"


def test_kept_sidecars_are_failed_outputs_not_failed_photos(tmp_path, photos, tiny_model_dir):
    cat = saved(photos["chelsea"], tmp_path / "cat.jpg")
    cup = saved(photos["coffee"], tmp_path / "cup.jpg")
    (tmp_path / "cat.txt").write_text("mine\n")
    (tmp_path / "cup.txt").write_text("mine too\n")
    status, rows, stderr = caption_rows(tiny_model_dir, tmp_path / "o.jsonl", cat, cup, "--sidecar")
    assert status == 1
    assert [row["caption"] for row in rows] == [PHOTO_CAPTIONS["chelsea"], PHOTO_CAPTIONS["coffee"]]
    assert summary(stderr) == "2 photos: 2 captioned, 0 failed; 2 extra outputs not written"


def test_an_unwritable_attention_folder_is_a_failed_output(tmp_path, album, tiny_model_dir):
    not_a_folder = tmp_path / "grids"
    not_a_folder.write_text("a file where the folder should go")
    status, rows, stderr = caption_rows(
        tiny_model_dir,
        tmp_path / "o.jsonl",
        *album_paths(album)[:2],
        "--save-attention",
        not_a_folder,
    )
    assert status == 1 and all(row["caption"] for row in rows)
    assert stderr.count("cannot save its attention grid") == 2
    assert summary(stderr) == "2 photos: 2 captioned, 0 failed; 2 extra outputs not written"


def test_write_metadata_keeps_a_description_a_person_wrote(tmp_path, photos, tiny_model_dir):
    exif = Image.Exif()
    exif[IMAGE_DESCRIPTION] = "Grandma's cat, summer 1998"
    cat = saved(photos["chelsea"], tmp_path / "cat.jpg", exif=exif.tobytes())
    output = tmp_path / "o.jsonl"
    status, rows, stderr = caption_rows(tiny_model_dir, output, cat, "--write-metadata")
    assert status == 1 and rows[0]["caption"] == PHOTO_CAPTIONS["chelsea"]
    assert f"captioner: {cat}: already has a description; kept it (--overwrite replaces)" in stderr
    assert summary(stderr) == "1 photo: 1 captioned, 0 failed; 1 extra output not written"
    assert read_caption_metadata(cat)["exif"] == "Grandma's cat, summer 1998"

    status, _, _ = caption_rows(tiny_model_dir, output, cat, "--write-metadata", "--overwrite")
    assert status == 0
    assert read_caption_metadata(cat)["exif"] == PHOTO_CAPTIONS["chelsea"]


def test_write_metadata_keeps_the_pixels_and_another_reader_sees_it(
    tmp_path, photos, tiny_model_dir
):
    photo = saved(photos["rocket"], tmp_path / "rocket.jpg", quality=92)
    before = photo.read_bytes()
    with Image.open(photo) as image:
        pixels_before = image.tobytes()

    status, rows, _ = caption_rows(tiny_model_dir, tmp_path / "o.jsonl", photo, "--write-metadata")
    assert status == 0
    written = rows[0]["caption"]
    assert written == "a rocket on the launch pad"
    after = photo.read_bytes()
    assert after != before
    assert jpeg_scan_data(after) == jpeg_scan_data(before)  # compressed pixels, byte for byte
    with Image.open(photo) as image:
        assert image.tobytes() == pixels_before
        assert image.getexif()[IMAGE_DESCRIPTION] == written  # Pillow, not Exiv2
    assert read_caption_metadata(photo) == {"xmp": written, "exif": written}


def test_write_metadata_failure_is_reported_and_the_row_kept(tmp_path, photos, tiny_model_dir):
    gif = saved(photos["chelsea"].quantize(64), tmp_path / "cat.gif")
    status, rows, stderr = caption_rows(
        tiny_model_dir, tmp_path / "o.jsonl", gif, "--write-metadata"
    )
    assert status == 1
    assert rows[0]["caption"] == "a cat looking at the camera"
    assert f"captioner: {gif}: cannot store the caption in it" in stderr


def test_save_attention_writes_a_grid_per_photo(tmp_path, album, tiny_model_dir, monkeypatch):
    monkeypatch.chdir(album.parent)
    relative = pathlib.Path(album.name)
    grids = tmp_path / "grids"
    status, rows, _ = caption_rows(
        tiny_model_dir, tmp_path / "o.jsonl", relative, "--save-attention", grids
    )
    assert status == 0
    for row in rows:
        grid = grids / f"{row['path']}.png"
        assert grid == attention_grid_path(grids, row["path"])
        panels = len(row["caption"].split()) + 1  # the photo, then one per word
        with Image.open(grid) as image:
            assert image.format == "PNG"
            assert image.width == min(5, panels) * 224
            assert image.height % (-(-panels // 5)) == 0
    assert len(list(grids.rglob("*.png"))) == 5


def test_attention_grid_path_never_leaves_its_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert attention_grid_path("g", "photos/a.jpg") == pathlib.Path("g/photos/a.jpg.png")
    assert attention_grid_path("g", "/data/x/a.jpg") == pathlib.Path("g/data/x/a.jpg.png")
    outside = attention_grid_path("g", "../a.jpg")
    assert outside == pathlib.Path("g", str(tmp_path.parent / "a.jpg").lstrip("/") + ".png")


# --- sharding -----------------------------------------------------------------------------------


def test_shards_partition_the_photos(tmp_path, album, tiny_model_dir):
    everything = {str(path) for path in album_paths(album)}
    parts = []
    for index in range(3):
        assert (
            caption(tiny_model_dir, album, "--shard", f"{index}/3", "-o", tmp_path / "o.jsonl")[0]
            == 0
        )
        parts.append({row["path"] for row in read_jsonl(tmp_path / f"o.{index}-of-3.jsonl")})
    assert set.union(*parts) == everything
    assert sum(map(len, parts)) == len(everything)
    assert not (tmp_path / "o.jsonl").exists()


def test_torchrun_ranks_shard_like_shard(tmp_path, album, tiny_model_dir, monkeypatch):
    caption(tiny_model_dir, album, "--shard", "1/2", "-o", tmp_path / "shard.jsonl")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    caption(tiny_model_dir, album, "-o", tmp_path / "rank.jsonl")
    assert read_jsonl(tmp_path / "rank.1-of-2.jsonl") == read_jsonl(tmp_path / "shard.1-of-2.jsonl")
    assert "pass -o FILE" in usage_error(tiny_model_dir, album)


def test_torchrun_gives_each_rank_its_own_file_and_gpu(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for name, value in {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(name, value)
    config = parse_args(["x.jpg", "-o", "out.jsonl"])
    assert (config.shard, config.output_file, config.device) == (
        (3, 4),
        "out.3-of-4.jsonl",
        "cuda:1",
    )
    assert parse_args(["x.jpg", "-o", "out.jsonl", "--device", "cpu"]).device == "cpu"
    monkeypatch.delenv("RANK")
    assert "RANK=None: torchrun sets it to a whole number" in usage_error(tiny_model_dir, "x.jpg")


# --- the run configuration ----------------------------------------------------------------------


def test_the_command_line_becomes_a_frozen_run_configuration():
    config = parse_args(
        ["a.jpg", "b", "-r", "--beam-size", "3", "--beams", "2", "--format", "csv", "-o", "-"]
        + ["--workers", "0"]
    )
    assert config == BatchRun(
        paths=("a.jpg", "b"),
        recursive=True,
        decoding=DecodeOptions(beam_size=3),
        beams=2,
        format="csv",
        output=None,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.output = "elsewhere.csv"
    with pytest.raises(ValueError, match="--beams 6 needs --beam-size 6 or more"):
        BatchRun(paths=("a.jpg",), beams=6)
    with pytest.raises(ValueError, match="--shard 2/2: expected 0 <= I < N"):
        BatchRun(paths=("a.jpg",), shard=(2, 2))


def test_run_raises_output_errors_for_its_caller(tmp_path, album, tiny_captioner):
    output = tmp_path / "out.jsonl"
    output.write_text("an overnight run\n")
    config = BatchRun(paths=(str(album),), output=str(output), quiet=True)
    with pytest.raises(OutputExistsError, match="already exists: pass --resume"):
        run(config, tiny_captioner)
    with pytest.raises(ResumeError, match=f"cannot resume {output} as jsonl"):
        run(dataclasses.replace(config, resume=True), tiny_captioner)
    assert output.read_text() == "an overnight run\n"
    unwritable = dataclasses.replace(config, output=str(tmp_path / "no" / "out.jsonl"))
    with pytest.raises(OutputNotWritableError, match="cannot write .*No such file or directory"):
        run(unwritable, tiny_captioner)


# --- usage errors and the real console script ---------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ([], "no photos given"),
        (["x.jpg", "--beams", "6"], "--beams 6 needs --beam-size 6"),
        (["x.jpg", "--beams", "2", "--format", "txt"], "--beams is for jsonl and csv"),
        (["x.jpg", "--resume"], "--resume needs -o FILE"),
        (["x.jpg", "--shard", "3/3"], "expected I/N with 0 <= I < N"),
        (["x.jpg", "--batch-size", "0"], "must be 1 or more"),
        (["x.jpg", "--files-from", "/no/such/list.txt"], "no such file"),
        (["x.jpg", "--format", "xml"], "invalid choice"),
        (["x.jpg", "--device", "banana"], "argument --device: unknown device 'banana'"),
        (["x.jpg", "--device", "cuda:x"], "argument --device: unknown device 'cuda:x'"),
        (["x.jpg", "--beam-size", "-3"], "argument --beam-size: must be 1 or more, got -3"),
        (["x.jpg", "--max-length", "many"], "argument --max-length: expected a whole number"),
        (["x.jpg", "--length-penalty", "nan"], "argument --length-penalty: must be a number"),
        (["x.jpg", "--length-penalty", "inf"], "argument --length-penalty: must be a number"),
        (["x.jpg", "--length-penalty=-inf"], "argument --length-penalty: must be a number"),
        (["x.jpg", "--length-penalty", "1e6"], "argument --length-penalty: must be a number"),
        (["x.jpg", "--length-penalty", "much"], "argument --length-penalty: must be a number"),
    ],
)
def test_usage_errors_exit_2_with_a_clear_message(tiny_model_dir, arguments, message):
    assert message in usage_error(tiny_model_dir, *arguments)


def test_an_unavailable_device_is_one_line_not_a_traceback(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for device in ("cuda", "cuda:1", "mps"):
        stderr = usage_error(tiny_model_dir, "x.jpg", "--device", device)
        assert stderr.splitlines()[-1] == (
            f"captioner: error: argument --device: {device!r} requested, but this machine "
            f"has no {'MPS' if device == 'mps' else 'CUDA'} device"
        )
        assert "Traceback" not in stderr


@pytest.mark.parametrize(
    "arguments", [["--device", "banana"], ["--length-penalty", "nan"], ["--beam-size", "0"]]
)
def test_captioner_evaluate_refuses_the_same_options_while_parsing(tmp_path, arguments, capsys):
    required = ["--model", "m", "--annotations", "a.json", "--images", "i", "--out", "o.json"]
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main([*required, *arguments])
    assert exit_info.value.code == 2
    assert f"captioner-evaluate: error: argument {arguments[0]}:" in capsys.readouterr().err


def test_resolve_device_names_what_is_wrong(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="'cuda:2' requested, but this machine has 2 CUDA devices"):
        resolve_device("cuda:2")
    with pytest.raises(ValueError, match="unknown device 'gpu': expected auto, cpu, cuda, cuda:N"):
        resolve_device("gpu")


def test_a_score_that_is_not_a_number_becomes_an_error_row(
    tmp_path, album, tiny_model_dir, monkeypatch
):
    decode = Captioner.decode

    def broken_model(self, *args, **options):  # as a model with a NaN in its weights scores
        return [dataclasses.replace(r, score=math.nan) for r in decode(self, *args, **options)]

    monkeypatch.setattr(Captioner, "decode", broken_model)
    photo = album_paths(album)[0]
    output = tmp_path / "o.jsonl"
    status, stderr = caption(tiny_model_dir, photo, "-o", output)
    assert status == 1
    [row] = [  # NaN is not JSON
        json.loads(line, parse_constant=pytest.fail) for line in output.read_text().splitlines()
    ]
    assert set(row) == {"path", "error"} and "not a finite number" in row["error"]
    assert f"captioner: {photo}: {row['error']}" in stderr
    assert summary(stderr) == "1 photo: 0 captioned, 1 failed"


def test_alternatives_scored_minus_infinity_are_left_out(
    tmp_path, album, tiny_model_dir, monkeypatch
):
    decode = Captioner.decode

    def unscored_second_beam(self, *args, **options):
        results = decode(self, *args, **options)
        for result in results:
            result.beams[1] = dataclasses.replace(result.beams[1], score=-math.inf)
        return results

    monkeypatch.setattr(Captioner, "decode", unscored_second_beam)
    output = tmp_path / "o.jsonl"
    status, _ = caption(
        tiny_model_dir, album_paths(album)[0], "--beams", "2", "--beam-size", "2", "-o", output
    )
    assert status == 0
    [row] = [
        json.loads(line, parse_constant=pytest.fail) for line in output.read_text().splitlines()
    ]
    assert [beam["caption"] for beam in row["beams"]] == [row["caption"]]


def test_unknown_model_directory_is_a_usage_error(tmp_path):
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), pytest.raises(SystemExit) as exit_info:
        main(["x.jpg", "--model", str(tmp_path / "no-model")])
    assert exit_info.value.code == 2
    assert f"{tmp_path / 'no-model'}: no such model directory" in stderr.getvalue()


@pytest.mark.slow
def test_console_script_exit_codes_and_stdout(tmp_path, album, tiny_model_dir):
    bad = os.fsencode(tmp_path) + b"/bad\xff.jpg"
    with open(bad, "wb") as file:
        file.write(b"GIF89a")
    good = os.fsencode(album_paths(album)[0])
    done = subprocess.run(
        [CONSOLE_SCRIPT, good, bad, b"--model", os.fsencode(tiny_model_dir), b"-q"],
        capture_output=True,
    )
    assert done.returncode == 1
    rows = [json.loads(line) for line in done.stdout.decode("utf-8").splitlines()]
    assert rows[0]["caption"] == "a woman in a white space suit"
    assert rows[1]["path"].endswith("bad\\xff.jpg") and "truncated" in rows[1]["error"]
    assert done.stderr.decode().splitlines() == [
        f"captioner: {rows[1]['path']}: {rows[1]['error']}"
    ]

    done = subprocess.run(
        [CONSOLE_SCRIPT, good, "--model", tmp_path / "missing"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "no such model directory" in done.stderr

    # `captioner ... | head -1`: the reader goes away after the first row.
    reader = subprocess.Popen(
        [CONSOLE_SCRIPT, album, "--model", tiny_model_dir, "--batch-size", "1", "--workers", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert json.loads(reader.stdout.readline())["caption"]
    reader.stdout.close()
    assert reader.wait() == 1
    assert b"Traceback" not in reader.stderr.read()
    reader.stderr.close()


def test_model_by_name_uses_the_shipped_shapes_model(tmp_path, capsys):
    generate_split(tmp_path, "test", 2, seed=5, size=224, image_format="jpg")
    scenes = sorted((tmp_path / "test").glob("*.jpg"))
    assert main([*map(str, scenes), "--model", "shapes", "--format", "txt", "-q"]) == 0
    captions = [line.split("\t")[1] for line in capsys.readouterr().out.splitlines()]
    shapes = Captioner.load("shapes", device="cpu")
    assert shapes.name == "scenes-default"
    assert captions == [result.text for result in shapes.caption(scenes)]
