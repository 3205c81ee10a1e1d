"""The int8 encoder against the float one on the 48 development photos: same captions, nouns.

    python scripts/measure_int8.py --calibrate 256   # measure the ranges (composites), then compare
    python scripts/measure_int8.py                   # compare with the shipped ranges

--calibrate N measures the activation ranges on N generated composites (training/scenes: Tux
Paint stamps on landscape photos and synthetic backgrounds; never a development photo, never a
reserved package's) and writes captioner/data/int8_calibration.json. Then, for each choice of
layers kept in float (captioner.quantize.KEEP_FLOAT), it builds the int8 graph (timed), and
prints against the float ONNX graph: the features' cosine per photo (mean, worst), the photos
whose caption is the float caption, and the named-subject count of each (speed:
benchmarks/api_backends.py). captioner.quantize.AUTO_INT8 is set from this table by hand: int8
only where the same captions are >= 97% and the named-subject count is unchanged.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from captioner import Captioner, quantize  # noqa: E402
from captioner.onnx_backend import (  # noqa: E402
    OnnxEncoder,
    _export_encoder_bytes,
    class_head,
    cpu_session,
    graph_key,
)
from captioner.options import DecodeOptions  # noqa: E402
from training.real_photos import load_dev_set, named_subject_rate  # noqa: E402


def composites(count: int, seed: int = 7):
    """`count` composites (PIL images), a pure function of the seed."""
    from training.scenes.composites import RESERVED_PHOTO_DIRS, load_config, make_composite

    config, notes = load_config(close_ups=0.3)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    dev_files = {photo.path.name for photo in load_dev_set()[0]}
    for photo in config.photos:  # neither a development photo nor a reserved one
        assert Path(photo).name not in dev_files, photo
        assert not any(Path(photo).is_relative_to(d) for d in RESERVED_PHOTO_DIRS), photo
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield make_composite(rng, 256, config)[0]


def calibrate(model: Captioner, count: int, out: Path) -> quantize.Calibration:
    graph = _export_encoder_bytes(model.encoder, class_head(model.decoder))
    images = composites(count)

    def batches():
        while batch := [model.preprocess(image) for image in itertools.islice(images, 16)]:
            yield torch.stack(batch).numpy()

    start = time.perf_counter()
    calibration = quantize.calibrate(
        graph, batches(), graph_key(model.encoder), "training/scenes composites, seed 7"
    )
    print(f"calibration: {calibration.source}, {time.perf_counter() - start:.0f} s")
    calibration.save(out)
    return calibration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the shipped one)")
    parser.add_argument("--calibrate", type=int, metavar="N", help="measure ranges on N composites")
    parser.add_argument("--out", type=Path, default=quantize.CALIBRATION_FILE)
    args = parser.parse_args()

    torch.set_num_threads(1)
    model = Captioner.load(args.model, device="cpu", backend="onnx", precision="float")
    calibration = (
        calibrate(model, args.calibrate, args.out)
        if args.calibrate
        else quantize.Calibration.load(args.out)
    )
    photos, missing = load_dev_set()
    print(f"{len(photos)} development photos ({len(missing)} not installed), beam 5, 1 thread")
    pixels = torch.stack([model.preprocess(photo.image()) for photo in photos])
    options = DecodeOptions(beam_size=5)
    graph = _export_encoder_bytes(model.encoder, class_head(model.decoder))

    reference = model.encode(pixels)
    float_texts = [r.text for r in model.decode(reference, options)]
    float_named = _named(photos, float_texts)
    print(
        "\n| layers kept in float | build s | cosine mean | worst | same captions | named (float) |"
    )
    print("|---|---|---|---|---|---|")
    import onnxruntime

    for choice, keep in quantize.KEEP_FLOAT.items():
        start = time.perf_counter()
        int8 = quantize.quantize(graph, calibration, keep)
        build = time.perf_counter() - start
        model._onnx = OnnxEncoder(cpu_session(onnxruntime, int8), "int8")
        features = model.encode(pixels)
        cosine = torch.nn.functional.cosine_similarity(features.flatten(1), reference.flatten(1))
        texts = [r.text for r in model.decode(features, options)]
        same = sum(a == b for a, b in zip(texts, float_texts, strict=True))
        print(
            f"| {choice} | {build:.1f} | {cosine.mean():.4f} | {cosine.min():.4f} "
            f"| {same}/{len(photos)} | {_named(photos, texts)} ({float_named}) |"
        )
        for photo, a, b in zip(photos, float_texts, texts, strict=True):
            if a != b:
                print(f"    {photo.id}: {a!r} -> {b!r}", file=sys.stderr)


def _named(photos, texts: list[str]) -> int:
    return named_subject_rate({p.id: t for p, t in zip(photos, texts, strict=True)}, photos).named


if __name__ == "__main__":
    main()
