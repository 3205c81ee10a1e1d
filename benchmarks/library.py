"""The caption library at scale: a synthetic library of 100,000 photos, then the figures the
app and the batch command depend on (issue #23's targets in brackets):

    search (a few typical queries, every matching path), median   [< 50 ms]
    lookup of 10,000 known photos (stat included)    [< 1 s]
    adding 10,000 model results (one transaction)    [< 2 s]
    bytes per photo on disk                          [< ~1 KB]

    .venv/bin/python benchmarks/library.py [--photos 100000] [--keep DIR]

Captions are drawn from the everyday nouns the shipped model knows, with 4 alternatives and
5 seen nouns each, as a batch run with --beam-size 5 stores them; 2,000 photos have a caption
typed by the person (each edit its own committed transaction, as in the app). The 10,000
looked-up photos are real (tiny) files, so lookup pays for stat() as the app does, and adding
their results pays for reading and hashing them. torch is never imported.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from captioner.library import Library, ModelKey, ModelResult
from captioner.library.records import FileState
from captioner.nouns import NounTable

BATCH = 10_000
QUERIES = ("bicycle", "dog", "ca", "red car", "aunt")


def cpu_name() -> str:
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    except OSError:
        return "unknown CPU"
    model = next((line.split(":", 1)[1].strip() for line in lines if "Model name" in line), "?")
    return f"{model}, {os.cpu_count()} CPUs"


def synthetic_results(paths: list[str], nouns: list[str], rng: random.Random):
    for path in paths:
        seen = rng.sample(nouns, 5)
        captions = [f"a {rng.choice(('large', 'small', 'red'))} {noun} on a table" for noun in seen]
        yield ModelResult(
            path,
            captions[0],
            -rng.random() * 10,
            tuple(seen),
            tuple((text, round(-rng.random() * 10, 4)) for text in captions[1:]),
            FileState(rng.randrange(10**5, 10**7), rng.randrange(10**18), rng.randbytes(32)),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=100_000)
    parser.add_argument("--keep", metavar="DIR", help="build the library here and keep it")
    args = parser.parse_args()
    folder = Path(args.keep or tempfile.mkdtemp(prefix="captioner-library-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    nouns = list(NounTable.load().nouns)
    model = ModelKey("benchmark-model", "{}", "benchmark")

    real = folder / "photos"
    real.mkdir(exist_ok=True)
    real_paths = []
    for number in range(BATCH):
        path = real / f"IMG_{number:05d}.jpg"
        path.write_bytes(number.to_bytes(4, "big"))  # distinct bytes: no two share a hash
        real_paths.append(str(path))
    other_paths = [f"/photos/{2000 + n % 20}/IMG_{n:06d}.jpg" for n in range(args.photos - BATCH)]

    add_times = []
    with Library.open(folder / "library.sqlite3") as library:
        for start in range(0, len(other_paths), BATCH):
            chunk = other_paths[start : start + BATCH]
            began = time.perf_counter()
            library.add_model_results(synthetic_results(chunk, nouns, rng), model)
            add_times.append(time.perf_counter() - began)
        # The real files last, with their real size and time, so lookup finds them unchanged.
        results = [
            ModelResult(r.path, r.text, r.score, r.nouns, r.alternatives, None)
            for r in synthetic_results(real_paths, nouns, rng)
        ]
        began = time.perf_counter()
        library.add_model_results(results, model)  # stats and hashes 10,000 files too
        add_real = time.perf_counter() - began
        for path in rng.sample(real_paths + other_paths, 2000):
            typed = f"Aunt {rng.choice(nouns).title()} with the {rng.choice(nouns)}"
            library.set_caption(path, typed)

        search_ms = {}
        for query in QUERIES:
            times, hits = [], 0
            for _ in range(20):
                began = time.perf_counter()
                hits = len(library.matching_paths(query))
                times.append((time.perf_counter() - began) * 1000)
            search_ms[query] = (statistics.median(times), hits)
        lookups = []
        for _ in range(3):
            began = time.perf_counter()
            entries = library.lookup(real_paths)
            lookups.append(time.perf_counter() - began)
        assert all(entry.on_disk == "ok" for entry in entries.values())
        photos = library.photo_count()
        library._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = (folder / "library.sqlite3").stat().st_size

    print(f"CPU: {cpu_name()}")
    print(f"library: {photos:,} photos, {size / 1e6:.1f} MB, {folder / 'library.sqlite3'}")
    print()
    print("| measurement | result | target |")
    print("|---|---|---|")
    for query, (ms, hits) in search_ms.items():
        print(f"| search {query!r} (all {hits:,} matches) | {ms:.1f} ms | < 50 ms |")
    print(f"| lookup of 10,000 known photos | {min(lookups) * 1000:.0f} ms | < 1 s |")
    print(
        f"| adding 10,000 model results (median of {len(add_times)} batches) | "
        f"{statistics.median(add_times):.2f} s | < 2 s |"
    )
    print(f"| adding 10,000 model results of real files (stat + SHA-256) | {add_real:.2f} s | |")
    print(f"| bytes per photo | {size / photos:.0f} | < ~1,000 |")
    if not args.keep:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
