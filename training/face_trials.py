"""Face trials that are not the development photos, for choosing and testing the person
detector (captioner/people.py; scripts/measure_face_detector.py).

scikit-image's LFW subset holds 100 face crops and 100 crops that are not faces (25 x 25 px);
each is pasted at a random place and size (SIDES, shares of the side, as the development
photos' faces are) on a crop of a scikit-image photo without people (BACKGROUNDS), squashed to
the encoder's 224 px square as a photo is before the detector sees it.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from skimage import data

SIDES = (0.2, 0.6)  # a pasted face's side, a share of the photo's
BACKGROUNDS = ("coffee", "rocket", "chelsea", "hubble_deep_field", "brick", "grass", "gravel")
SIZE = 224

Box = tuple[float, float, float, float]  # (left, top, right, bottom), fractions of the photo


def face_trials(count: int, seed: int = 0) -> tuple[list[np.ndarray], list[Box], list[np.ndarray]]:
    """`count` (224, 224, 3) uint8 photos with a pasted face, the faces' boxes, and `count`
    photos with a pasted crop that is not a face. Crops cycle when count exceeds 100."""
    rng = np.random.default_rng(seed)
    crops = (data.lfw_subset() * 255).astype(np.uint8)  # (200, 25, 25): 100 faces, 100 not
    backgrounds = [_rgb(getattr(data, name)()) for name in BACKGROUNDS]
    faces, boxes, others = [], [], []
    for i in range(count):
        photo, box = _pasted(crops[i % 100], backgrounds[rng.integers(len(backgrounds))], rng)
        faces.append(photo)
        boxes.append(box)
        others.append(
            _pasted(crops[100 + i % 100], backgrounds[rng.integers(len(backgrounds))], rng)[0]
        )
    return faces, boxes, others


def overlaps(found: Box, box: Box) -> bool:
    """Whether a detection covers half of the smaller of the two boxes."""
    width = min(found[2], box[2]) - max(found[0], box[0])
    height = min(found[3], box[3]) - max(found[1], box[1])
    smaller = min((b[2] - b[0]) * (b[3] - b[1]) for b in (found, box))
    return width > 0 and height > 0 and width * height >= 0.5 * smaller


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.stack([image] * 3, -1) if image.ndim == 2 else image[..., :3]


def _pasted(crop: np.ndarray, background: np.ndarray, rng) -> tuple[np.ndarray, Box]:
    height, width = background.shape[:2]
    side = min(height, width)
    top, left = rng.integers(height - side + 1), rng.integers(width - side + 1)
    square = Image.fromarray(background[top : top + side, left : left + side])
    photo = np.array(square.resize((SIZE, SIZE)))
    face = round(rng.uniform(*SIDES) * SIZE)
    y, x = rng.integers(SIZE - face + 1), rng.integers(SIZE - face + 1)
    pasted = np.array(Image.fromarray(crop).resize((face, face), Image.Resampling.BICUBIC))
    photo[y : y + face, x : x + face] = pasted[..., None]
    return photo, (x / SIZE, y / SIZE, (x + face) / SIZE, (y + face) / SIZE)
