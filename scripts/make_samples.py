"""Write captioner/samples/: the app's sample photos and their LICENSES.md, from scikit-image.

Only scikit-image data files whose documentation (the docstring of their `skimage.data`
function) releases them into the public domain or under CC0 are used, so captioner can ship
them. Left out: `stereo_motorcycle` (Middlebury 2014, no licence stated), `moon` (no source or
licence stated), `coins` ("no known copyright restrictions" is not a licence), `horse` (a
drawing, not a photo), `clock` (public domain, but too motion-blurred to show anything). Each
photo is scaled to at most MAX_SIDE pixels and stored as JPEG, to keep the package small.

Usage: python scripts/make_samples.py [--out captioner/samples]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image
from skimage import data

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "captioner" / "samples"
MAX_SIDE = 640
QUALITY = 88


class Sample(NamedTuple):
    function: str  # in skimage.data
    subject: str
    source: str
    licence: str


SAMPLES = [
    Sample(
        "astronaut",
        "Eileen Collins, NASA astronaut",
        "NASA Great Images database (https://flic.kr/p/r9qvLn)",
        "public domain (NASA: no known copyright restrictions, released into the public domain)",
    ),
    Sample(
        "chelsea",
        "Chelsea the cat",
        "Stefan van der Walt",
        "CC0 by the photographer",
    ),
    Sample(
        "coffee",
        "a cup of coffee on a saucer, courtesy of Pikolo Espresso Bar",
        "Rachel Michetti",
        "CC0 by the photographer",
    ),
    Sample(
        "rocket",
        "Falcon 9 carrying DSCOVR lifting off from Cape Canaveral",
        "SpaceX Photos (https://www.flickr.com/photos/spacexphotos/16511594820/)",
        "public domain (released by SpaceX)",
    ),
    Sample(
        "camera",
        "a man with a camera on a tripod (grey)",
        "Lav Varshney",
        "CC0 by the photographer",
    ),
    Sample(
        "hubble_deep_field",
        "the Hubble eXtreme Deep Field: thousands of galaxies",
        "HubbleSite, NASA (http://hubblesite.org/newscenter/archive/releases/2012/37/image/a/)",
        "public domain (NASA)",
    ),
]


def sample_image(sample: Sample) -> Image.Image:
    """The photo at most MAX_SIDE pixels on its longer side (grey photos stay grey)."""
    image = Image.fromarray(np.ascontiguousarray(getattr(data, sample.function)()))
    image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    return image


def licences_text() -> str:
    rows = "\n".join(
        f"| {s.function}.jpg | {s.subject} | {s.source} | {s.licence} |" for s in SAMPLES
    )
    return (
        "# Sample photos: sources and licences\n\n"
        "Made by `scripts/make_samples.py` from scikit-image's data files "
        "(`skimage.data.<name>()`), scaled to at most "
        f"{MAX_SIDE} px. Each licence is as scikit-image documents it for that file.\n\n"
        "| file | subject | source | licence |\n|---|---|---|---|\n"
        f"{rows}\n"
    )


def write_samples(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for sample in SAMPLES:
        path = out / f"{sample.function}.jpg"
        sample_image(sample).save(path, quality=QUALITY, optimize=True)
        written.append(path)
    (out / "LICENSES.md").write_text(licences_text(), encoding="utf-8")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="default: %(default)s")
    args = parser.parse_args(argv)
    for path in write_samples(args.out):
        print(f"{path} ({path.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
