"""How often the person detector (captioner/people.py) finds a face, fires on nothing, and
what it costs, for several cascades and detection settings side by side.

    python scripts/measure_face_detector.py [--trials 300] [--seed 0]

The trials are not the development photos (training/face_trials.py: scikit-image's LFW faces
and crops that are not faces, pasted on photos without people). A face trial counts as found
when a detection covers half of the pasted face; a trial without a face counts as a false
alarm when anything is detected. For each setting the development photos' count of photos with
a detection is printed too (those with people, those without), to see that a setting keeps the
three frontal faces found there and fires on no other photo. CPU time is per photo, OpenCV on
one thread.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
from PIL import Image

from captioner import people
from training.face_trials import SIZE, face_trials, overlaps

HAAR = "haar alt2"
CASCADES = {
    HAAR: cv2.data.haarcascades + "haarcascade_frontalface_alt2.xml",  # the detector before
    "lbp": str(people.CASCADE_PATH),
}
# (cascade, DETECTION_SIDE, SCALE_STEP, MIN_NEIGHBOURS)
SETTINGS = (
    (HAAR, 128, 1.1, 4),
    (HAAR, 128, 1.2, 3),
    (HAAR, 128, 1.25, 2),
    ("lbp", 128, 1.1, 3),
    ("lbp", 128, 1.05, 4),
    ("lbp", 144, 1.1, 3),
    ("lbp", 144, 1.1, 4),
    ("lbp", 160, 1.1, 3),
    ("lbp", 160, 1.1, 4),
    ("lbp", 160, 1.15, 3),
    ("lbp", 176, 1.1, 4),
)


def development_photos() -> tuple[list[np.ndarray], list[bool]]:
    """The development photos squashed to the encoder's square, and whether each shows people."""
    from training.real_photos import load_dev_set

    found, _ = load_dev_set()
    photos = [
        np.array(photo.image().resize((SIZE, SIZE), Image.Resampling.BILINEAR)) for photo in found
    ]
    return photos, [bool({"person", "people"} & set(photo.nouns)) for photo in found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    cv2.setNumThreads(1)
    faces, boxes, others = face_trials(args.trials, args.seed)
    dev, with_people = development_photos()
    print(f"{len(faces)} face trials, {len(others)} without a face; {len(dev)} development photos")
    print("OpenCV on 1 thread; ms: CPU time a photo\n")
    print(
        "| cascade | side | scale step | neighbours | faces found | false alarms "
        "| dev: people | dev: others | ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for cascade, side, step, neighbours in SETTINGS:
        people.CASCADE_PATH = CASCADES[cascade]
        people.DETECTION_SIDE, people.SCALE_STEP, people.MIN_NEIGHBOURS = side, step, neighbours
        people.detect_faces(dev[0])  # the cascade's loading stays out of the time
        started = time.process_time()
        found = sum(
            any(overlaps(f, box) for f in people.detect_faces(photo))
            for photo, box in zip(faces, boxes, strict=True)
        )
        alarms = sum(bool(people.detect_faces(photo)) for photo in others)
        fired = [bool(people.detect_faces(photo)) for photo in dev]
        ms = (time.process_time() - started) / (len(faces) + len(others) + len(dev)) * 1000
        on_people = sum(f and p for f, p in zip(fired, with_people, strict=True))
        on_others = sum(f and not p for f, p in zip(fired, with_people, strict=True))
        print(
            f"| {cascade} | {side} | {step} | {neighbours} | {found}/{len(faces)} "
            f"| {alarms}/{len(others)} | {on_people}/{sum(with_people)} "
            f"| {on_others}/{len(dev) - sum(with_people)} | {ms:.2f} |"
        )


if __name__ == "__main__":
    main()
