"""People: a second noun source for "person", from a face detector that ships offline.

ImageNet-1k has no person class, so the copy path (copy_head.py) names people only through
what they wear (the table maps suits and uniforms to "person"): a face alone becomes "a helmet"
or "a llama". OpenCV's LBP cascade for frontal faces (Liao et al. 2007's local binary patterns;
data/lbpcascade_frontalface.xml, from OpenCV's own data, BSD-3-Clause; opencv-python-headless
ships only the Haar cascades) finds faces, and the cells a face and the body below it cover say
"person" with PERSON_PROBABILITY, mixed into those cells' noun distributions as taught words
are (taught.py): a cell that surely shows a person gives "person" nearly all of its copy
distribution and counts as a named thing for the gate. Two faces make the plural as the counts
of other nouns do: by the model's plural switch ("two people").

Measured (docs/guides/hedging.md, scripts/measure_face_detector.py): on 300 LFW faces pasted
on photos without people the LBP cascade at 160 px finds 271 and fires on none of 300 crops
that are not faces, where the Haar `alt2` cascade it replaced found 269 with one false alarm,
at 3.3 instead of 8.9 ms a photo on one thread; on the 48 development photos both find the
three frontal faces and nothing else. OpenCV's HOG people detector fires on spoons, chairs and
a parrot and finds none of the photos' people. Faces in profile or under a helmet are missed.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import torch

# The probability that a cell a detected person covers shows a person.
PERSON_PROBABILITY = 0.9
CASCADE_PATH = Path(__file__).parent / "data" / "lbpcascade_frontalface.xml"
# Detection settings, on the photo as the encoder sees it (squashed to its square input) and
# scaled down to DETECTION_SIDE pixels: a face at least MIN_FACE of the side, confirmed by
# MIN_NEIGHBOURS overlapping detections. The cascade's window is 24 px, so at 160 px faces
# under 15% of the side are missed; the development photos' faces are 21-61% of it. Chosen
# (scripts/measure_face_detector.py) as the cheapest setting that finds as many pasted faces
# as the Haar cascade before it, with no false alarm, and the astronaut's face however the
# photo was scaled (at 144 px it is lost to some resamplings).
DETECTION_SIDE = 160
MIN_FACE = 0.09
MIN_NEIGHBOURS = 4
SCALE_STEP = 1.1
# A face box grown to the head and shoulders below it, in face widths and heights.
BODY_WIDTH, BODY_BELOW = 3.0, 3.0


@cache
def _face_cascade(path: Path):
    import cv2  # optional at import time: a model without the detector never needs it

    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise OSError(f"the face detector's cascade {path} could not be read")
    return cascade


def load_detector() -> None:
    """Read the face cascade now, so a missing or damaged file is found when a model loads
    rather than at every photo: OSError naming the file. Needs OpenCV."""
    _face_cascade(CASCADE_PATH)


def detect_faces(image: np.ndarray) -> list[tuple[float, float, float, float]]:
    """(H, W, 3) uint8 RGB -> the faces as (left, top, right, bottom), fractions of the image."""
    import cv2

    height, width = image.shape[:2]
    gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    scale = DETECTION_SIDE / max(height, width)
    if scale < 1:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        height, width = gray.shape
    gray = cv2.equalizeHist(gray)
    side = max(8, round(MIN_FACE * min(height, width)))
    faces = _face_cascade(CASCADE_PATH).detectMultiScale(
        gray, SCALE_STEP, MIN_NEIGHBOURS, minSize=(side, side)
    )
    return [(x / width, y / height, (x + w) / width, (y + h) / height) for x, y, w, h in faces]


def person_box(face: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """A face's box grown to the head and shoulders, clipped to the image."""
    left, top, right, bottom = face
    width, height, centre = right - left, bottom - top, (left + right) / 2
    return (
        max(0.0, centre - BODY_WIDTH * width / 2),
        max(0.0, top - 0.2 * height),
        min(1.0, centre + BODY_WIDTH * width / 2),
        min(1.0, bottom + BODY_BELOW * height),
    )


def cell_probs(images: np.ndarray, grid_shape: tuple[int, int]) -> torch.Tensor:
    """(batch, H, W, 3) uint8 RGB photos -> (batch, grid_h * grid_w): the probability that each
    grid cell shows a person, PERSON_PROBABILITY where a detected person covers half of it."""
    grid_h, grid_w = grid_shape
    probs = torch.zeros(len(images), grid_h, grid_w)
    for i, image in enumerate(images):
        for face in detect_faces(image):
            left, top, right, bottom = person_box(face)
            rows = _covered(top, bottom, grid_h)
            cols = _covered(left, right, grid_w)
            covered = rows[:, None] * cols[None, :] >= 0.5  # (grid_h, grid_w)
            probs[i][covered] = PERSON_PROBABILITY
    return probs.flatten(1)


def _covered(low: float, high: float, cells: int) -> torch.Tensor:
    """(cells,) the share of each cell along one axis inside [low, high]."""
    edges = torch.arange(cells + 1, dtype=torch.float32) / cells
    return (edges[1:].clamp(max=high) - edges[:-1].clamp(min=low)).clamp(min=0) * cells


def pixels_to_images(pixels: torch.Tensor, mean, std) -> np.ndarray:
    """The encoder's (batch, 3, H, W) normalised input -> (batch, H, W, 3) uint8 RGB."""
    mean = torch.tensor(mean, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(std, device=pixels.device).view(1, 3, 1, 1)
    rgb = (pixels.float() * std + mean).clamp(0, 1) * 255
    return rgb.round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def with_people(
    noun_probs: torch.Tensor, noun_mass: torch.Tensor, people: torch.Tensor, person: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A copy memory's noun distributions (batch, num_pixels, copy_nouns) and named shares
    (batch, num_pixels) with the person probabilities (batch, num_pixels) mixed in as a taught
    word's are: "person" (column `person`) takes that share of each cell's distribution."""
    share = people.to(noun_probs.dtype).unsqueeze(-1)  # (batch, num_pixels, 1)
    person_column = torch.zeros_like(noun_probs[0, 0])
    person_column[person] = 1.0
    mixed = noun_probs * (1.0 - share) + person_column * share
    return mixed, noun_mass + (1.0 - noun_mass) * share.squeeze(-1)
