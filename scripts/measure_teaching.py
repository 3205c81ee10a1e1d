"""Measure taught words on the default model (docs/guides/teaching.md has the figures).

    OMP_NUM_THREADS=2 .venv/bin/python scripts/measure_teaching.py

Development set, from no reserved source: a series of 8 photos of one thing per scikit-image
photo (crops at other places and scales, every other one mirrored). Per thing, a word taught
from 3 of its photos should be in the captions of the other 5 (recall); with the other things'
20 words taught too, no taught word may be in a caption of a photo that does not show it
(false positives). The 48-photo real development set (training/real_photos.py) is captioned
with 20 words taught from photos that are not in it (targets: the named-subject rate within
one photo of the default's; no taught word in any of its captions, since none of its photos
shows one; the time per photo within 10%). Speed: teach -> the next caption, and a caption's
time with 200 words of 10 examples each taught (random unit vectors, calibrated like real
ones) against none.

    --real-only: only the real development set's part.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from PIL import Image, ImageOps
from skimage import data

from captioner import Captioner
from captioner.taught import TaughtExample
from training.real_photos import load_dev_set, named_subject_rate

# Things for recall and false positives (some are in the real development set, so they are
# never taught for the named-subject rate), and things that are in no development set.
THINGS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle", "camera", "hubble_deep_field")
UNRELATED = (
    "brick", "grass", "gravel", "coins", "moon", "page", "text", "cell", "retina", "logo",
    "colorwheel", "checkerboard", "horse", "clock", "immunohistochemistry", "microaneurysms",
    "shepp_logan_phantom", "binary_blobs",
)  # fmt: skip
CROPS = [
    (0, 0, 1, 1), (0.1, 0.1, 0.9, 0.9), (0, 0, 0.8, 0.8), (0.2, 0.2, 1, 1),
    (0.05, 0.15, 0.85, 0.95), (0.15, 0, 0.95, 0.8), (0, 0.2, 0.8, 1), (0.1, 0.05, 1, 0.95),
]  # fmt: skip


def photo(name: str) -> Image.Image:
    pixels = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        pixels = (pixels.astype(float) / max(float(pixels.max()), 1e-9) * 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(pixels)).convert("RGB")


def series(image: Image.Image) -> list[Image.Image]:
    width, height = image.size
    shots = []
    for i, (left, top, right, bottom) in enumerate(CROPS):
        box = (int(left * width), int(top * height), int(right * width), int(bottom * height))
        shot = image.crop(box)
        shots.append(ImageOps.mirror(shot) if i % 2 else shot)
    return shots


def noise() -> Image.Image:
    """A photo of nothing: seeded colour noise, the 20th unrelated thing (scikit-image's other
    photos need a download, and its remaining ones are in the real development set)."""
    pixels = np.random.default_rng(0).integers(0, 256, (384, 512, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def word_of(name: str) -> str:
    return "thing" + "".join(chr(ord("a") + int(d)) for d in str(abs(hash(name)) % 10**6))


def real_set(model: Captioner, taught_from: dict[str, list[Image.Image]], rounds: int = 5) -> None:
    """The real development set without and with a word taught from each of `taught_from`'s
    series (3 photos each), none of which shows anything of the set: the named-subject rate,
    the taught words said (every one a false positive), and the time per photo (reading,
    encoding, decoding), the best of `rounds` captionings each, without and with taken in
    turn so that other work on the machine slows both alike."""
    photos, missing = load_dev_set()
    images = [p.image() for p in photos]
    words = {word_of(name): name for name in taught_from}
    for name, shots in taught_from.items():
        model.teach(word_of(name), shots[:3])
    examples = [e for taught in model.taught_words().values() for e in taught]
    times: dict[str, float] = {"without": float("inf"), "with": float("inf")}
    results = {}
    for _ in range(rounds):
        for case in ("without", "with"):
            for word in words:
                model.forget(word)
            if case == "with":
                model.add_examples(examples)
            start = time.perf_counter()
            results[case] = model.caption(images)
            times[case] = min(times[case], (time.perf_counter() - start) / len(images))
    for word in words:
        model.forget(word)
    plain, taught = results["without"], results["with"]
    named = {
        case: named_subject_rate(
            {p.id: r.text for p, r in zip(photos, results[case], strict=True)}, photos
        ).named
        for case in results
    }
    said = [(p.id, w) for p, r in zip(photos, taught, strict=True) for w in r.tokens if w in words]
    changed = sum(a.text != b.text for a, b in zip(plain, taught, strict=True))
    print(
        f"real development set ({len(photos)} photos, {len(missing)} missing), "
        f"{len(words)} unrelated words taught:\n"
        f"  named subjects {named['without']}/{len(photos)} without, "
        f"{named['with']}/{len(photos)} with (target: within one photo)\n"
        f"  taught words in its captions (false positives): {len(said)} {said}; "
        f"captions changed: {changed}\n"
        f"  time per photo {times['without'] * 1000:.0f} ms without, "
        f"{times['with'] * 1000:.0f} ms with ({times['with'] / times['without'] - 1:+.1%}; "
        f"target within 10%; load average {os.getloadavg()[0]:.1f})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--real-only", action="store_true", help="only the real dev set's part")
    args = parser.parse_args(argv)
    model = Captioner.load("default", device="cpu", backend="torch")
    things = {name: series(photo(name)) for name in THINGS}
    unrelated = {name: series(photo(name)) for name in UNRELATED}
    # Taught for the real development set: photos not in it, of nothing it shows.
    unrelated_20 = {
        **unrelated,
        "hubble_deep_field": things["hubble_deep_field"],
        "noise": series(noise()),
    }
    if args.real_only:
        real_set(model, unrelated_20)
        return

    # Recall, one word taught at a time.
    hits = total = 0
    for name, shots in things.items():
        word = word_of(name)
        model.teach(word, shots[:3])
        said = [word in r.text for r in model.caption(shots[3:])]
        hits, total = hits + sum(said), total + len(said)
        print(f"{name}: {sum(said)}/{len(said)}")
        model.forget(word)
    print(f"recall, taught with 3 photos: {hits}/{total} = {hits / total:.0%}")

    # Every thing's and every unrelated photo's word taught at once: recall and false positives.
    for name, shots in {**things, **unrelated}.items():
        model.teach(word_of(name), shots[:3])
    hits = false = 0
    for name, shots in {**things, **unrelated}.items():
        for result in model.caption(shots[3:]):
            words = [word_of(n) for n in {**things, **unrelated} if word_of(n) in result.text]
            hits += word_of(name) in words
            false += any(w != word_of(name) for w in words)
    count = len(things) + len(unrelated)
    print(f"with {count} words taught: recall {hits}/{5 * count}, false positives {false}")

    for name in {**things, **unrelated}:
        model.forget(word_of(name))
    real_set(model, unrelated_20)

    # Speed: teach -> next caption.
    shots = things["rocket"]
    model.caption(shots[3])
    start = time.perf_counter()
    model.teach("widget", shots[:1])
    text = model.caption(shots[3]).text
    print(f"teach (1 photo) -> next caption: {time.perf_counter() - start:.3f} s ({text!r})")
    model.forget("widget")

    # Speed: 200 words of 10 examples each against none, 8 photos a caption call.
    features = model.encode([p.image() for p in load_dev_set()[0][:8]])

    def timed() -> float:
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            model.decode(features)
            best = min(best, time.perf_counter() - start)
        return best

    before = timed()
    generator = torch.Generator().manual_seed(0)
    dim = model.encoder.encoder_dim
    model.add_examples(
        [
            TaughtExample(f"word{w:03d}", torch.rand(dim, generator=generator), None)
            for w in range(200)
            for _ in range(10)
        ]
    )
    after = timed()
    print(
        f"decode of 8 photos: {before * 1000:.1f} ms, with 200 words / 2,000 examples "
        f"{after * 1000:.1f} ms ({after / before - 1:+.1%})"
    )


if __name__ == "__main__":
    main()
