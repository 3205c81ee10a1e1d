"""Batch CLI throughput and memory: the CLI pipeline against encoder-only and a naive loop.

    .venv/bin/python benchmarks/batch_cli.py [--model DIR] [--counts 500 2000] [--naive-count 100]
        [--backends torch onnx onnx-int8]

Three ways to caption the same generated camera-sized JPEGs (1600x1200), each run in a fresh
child process so its peak RSS is its own:
- encoder-only: the CLI's DataLoader (same workers, same reduced-size JPEG decoding) feeding
  the encoder, and nothing else. The model's unavoidable cost, so the ceiling for the CLI.
- cli: `captioner.batch.run.run` with beam size 5, writing jsonl to a file.
- naive: open each photo at full size with PIL and call `Captioner.caption` on it, one by one.
Timing starts after the model is loaded and warmed up. Besides photos/s (wall clock), each
run reports the CPU time it used per photo, its main process and its workers together: on a
machine shared with other jobs, wall-clock rates swing with the neighbours' load, while CPU
time per photo says what throughput a dedicated, fully used machine would get.

Without a default model in the package, a stand-in with the default architecture is built:
random decoder weights, a 56-word vocabulary, and <end> made unreachable so every caption runs
to --max-length (an upper bound on the beam search cost; a trained model stops earlier).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

PHOTO_SIZE = (1600, 1200)
BEAM_SIZE = 5


# --- inputs: photos and model -------------------------------------------------------------------


def make_photo(index: int, path: Path) -> None:
    """A JPEG with photo-like statistics: smooth colour fields, shapes, and sensor noise."""
    rng = np.random.default_rng(index)
    width, height = PHOTO_SIZE
    corners = rng.integers(0, 256, size=(3, 4, 3), dtype=np.uint8)  # a coarse colour field
    image = Image.fromarray(corners).resize(PHOTO_SIZE, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(3, 12)):
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        x1, y1 = x0 + rng.integers(50, 700), y0 + rng.integers(50, 500)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, x1, y1), fill=colour)
    pixels = np.asarray(image, dtype=np.int16) + rng.normal(0, 6, (height, width, 3)).astype(
        np.int16
    )
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)


def ensure_photos(folder: Path, count: int) -> list[Path]:
    """Generate the photos once; later runs reuse them."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"photo_{i:05d}.jpg" for i in range(count)]
    missing = [(i, p) for i, p in enumerate(paths) if not p.is_file()]
    if missing:
        print(f"generating {len(missing)} photos in {folder} ...", file=sys.stderr, flush=True)
        with Pool(os.cpu_count()) as pool:
            pool.starmap(make_photo, missing, chunksize=16)
    return paths


def ensure_model(requested: str | None, folder: Path) -> tuple[Path, str]:
    """The model to measure, and a line saying which it is."""
    from captioner.registry import DEFAULT_MODEL_DIR

    if requested:
        return Path(requested), f"model: {requested}"
    if (DEFAULT_MODEL_DIR / "config.json").is_file():
        return DEFAULT_MODEL_DIR, f"model: the default model ({DEFAULT_MODEL_DIR})"
    if not (folder / "config.json").is_file():
        build_stand_in_model(folder)
    return folder, (
        f"model: stand-in with the default architecture ({folder}); no default model is "
        "installed. Random decoder, <end> unreachable: every caption is --max-length words"
    )


def build_stand_in_model(path: Path) -> None:
    import torch

    from captioner import Captioner
    from captioner.decoder import Decoder, DecoderConfig
    from captioner.encoder import Encoder, EncoderConfig
    from captioner.vocab import Vocabulary

    torch.manual_seed(0)
    encoder = Encoder(EncoderConfig())  # Lite0 at 224, the default
    vocab = Vocabulary([f"word{i}" for i in range(56)])
    decoder = Decoder(DecoderConfig(len(vocab), encoder.encoder_dim))  # default sizes
    with torch.no_grad():
        decoder.output.bias[vocab.end_id] = -1e4
    Captioner(encoder, decoder, vocab, name="benchmark-stand-in").save(path)


# --- one measurement, in a child process --------------------------------------------------------


def measure(mode: str, paths: list[Path], options: argparse.Namespace) -> dict:
    import torch

    from captioner import Captioner
    from captioner.options import DecodeOptions
    from captioner.photos.inputs import Photo
    from captioner.pipeline import photo_batches

    captioner = Captioner.load(
        options.model, device=options.device, backend=options.backend, precision=options.precision
    )
    decoding = DecodeOptions(beam_size=BEAM_SIZE, max_length=options.max_length)
    # Warm-up: first calls allocate buffers and pick kernels; a long run pays that once.
    warm = torch.zeros(2, 3, 224, 224)
    captioner.decode(captioner.encode(warm), decoding)

    start, cpu_start = time.perf_counter(), time.process_time()
    if mode == "encoder-only":
        batches = photo_batches(
            captioner,
            (Photo(str(p)) for p in paths),
            batch_size=options.batch_size,
            workers=options.workers,
        )
        for batch in batches:
            captioner.encode(batch.pixels)  # as the CLI does
    elif mode == "cli":
        from captioner.cli.batch.command import parse_args
        from captioner.cli.batch.run import run

        with tempfile.TemporaryDirectory() as folder:
            listing = Path(folder, "photos.txt")
            listing.write_text("".join(f"{p}\n" for p in paths))
            config = parse_args(
                [
                    *("--files-from", str(listing), "-o", str(Path(folder, "out.jsonl"))),
                    *("--batch-size", str(options.batch_size), "--workers", str(options.workers)),
                    *("--beam-size", str(BEAM_SIZE), "--max-length", str(options.max_length)),
                    *("--backend", options.backend, "--precision", options.precision),
                    "--quiet",
                ]
            )
            status = run(config, captioner)
            rows = Path(folder, "out.jsonl").read_text().count("\n")
        if status != 0 or rows != len(paths):
            raise RuntimeError(f"cli run failed: status {status}, {rows} rows")
    elif mode == "naive":
        for path in paths:
            with Image.open(path) as image:
                photo = image.convert("RGB")
            captioner.caption(photo, decoding)
    seconds = time.perf_counter() - start
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)  # the DataLoader workers, joined
    cpu_seconds = time.process_time() - cpu_start + workers.ru_utime + workers.ru_stime
    return {
        "mode": mode,
        "backend": captioner.backend + ("-int8" if captioner.precision == "int8" else ""),
        "photos": len(paths),
        "seconds": seconds,
        "rate": len(paths) / seconds,
        "cpu_ms": cpu_seconds / len(paths) * 1000,
        # ru_maxrss is in KiB on Linux; children are the DataLoader workers (the largest one).
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_rss_mb": workers.ru_maxrss / 1024,
    }


def run_child(mode: str, count: int, backend: str, options: argparse.Namespace) -> dict:
    """One measurement in a fresh process; `backend` is torch, onnx or onnx-int8."""
    command = [sys.executable, __file__, "--child", mode, "--child-count", str(count)]
    runtime, _, precision = backend.partition("-")
    command += ["--backend", runtime, "--precision", precision or "float"]
    command += ["--model", str(options.model), "--photos", str(options.photos)]
    command += ["--workers", str(options.workers), "--batch-size", str(options.batch_size)]
    command += ["--max-length", str(options.max_length), "--device", options.device]
    environment = dict(os.environ)
    if options.threads:
        environment.update(
            OMP_NUM_THREADS=str(options.threads), MKL_NUM_THREADS=str(options.threads)
        )
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} x {count} failed:\n{done.stderr}")
    result = json.loads(done.stdout.splitlines()[-1])
    print(
        f"  {backend:>5} {mode:>12} x {count:>5}: {result['rate']:7.2f} photos/s, "
        f"{result['cpu_ms']:.0f} CPU ms/photo, peak RSS {result['rss_mb']:.0f} MB",
        file=sys.stderr,
        flush=True,
    )
    return result


# --- the table ----------------------------------------------------------------------------------


def table(results: list[dict]) -> str:
    encoders = {(r["backend"], r["photos"]): r for r in results if r["mode"] == "encoder-only"}
    lines = [
        "| backend | mode | photos | photos/s | CPU ms/photo | vs its encoder-only: wall, CPU "
        "| peak RSS main, MB | peak RSS worker, MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        same = {photos: e for (backend, photos), e in encoders.items() if backend == r["backend"]}
        encoder = same.get(r["photos"], same[min(same)])
        worker = f"{r['worker_rss_mb']:.0f}" if r["mode"] != "naive" else "-"
        lines.append(
            f"| {r['backend']} | {r['mode']} | {r['photos']:,} | {r['rate']:.2f} "
            f"| {r['cpu_ms']:.0f} "
            f"| {r['rate'] / encoder['rate']:.0%}, {encoder['cpu_ms'] / r['cpu_ms']:.0%} "
            f"| {r['rss_mb']:.0f} | {worker} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model directory (default: the default model, if any)")
    parser.add_argument("--photos", default="/tmp/captioner-bench-photos", help="photo cache")
    parser.add_argument("--stand-in", default="/tmp/captioner-bench-model", help="model cache")
    parser.add_argument("--counts", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--naive-count", type=int, default=100, help="photos for the naive loop")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=20)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=("torch", "onnx", "onnx-int8"),
        default=["torch", "onnx"],
        help="compared side by side (onnx-int8: --backend onnx --precision int8)",
    )
    parser.add_argument("--backend", help=argparse.SUPPRESS)  # the child's
    parser.add_argument("--precision", default="float", help=argparse.SUPPRESS)
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads per process (OMP_NUM_THREADS); default: torch's choice",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-count", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args()

    if options.child:
        paths = sorted(Path(options.photos).glob("photo_*.jpg"))[: options.child_count]
        print(json.dumps(measure(options.child, paths, options)))
        return

    options.model, model_line = ensure_model(options.model, Path(options.stand_in))
    ensure_photos(Path(options.photos), max(options.counts + [options.naive_count]))
    print(model_line)
    print(
        f"{os.cpu_count()} CPUs, --workers {options.workers}, --batch-size {options.batch_size}, "
        f"beam size {BEAM_SIZE}, --max-length {options.max_length}, device {options.device}, "
        f"torch threads {options.threads or 'default'}"
    )
    results = []
    for backend in options.backends:
        for count in sorted(options.counts):
            results.append(run_child("encoder-only", count, backend, options))
            results.append(run_child("cli", count, backend, options))
        results.append(run_child("naive", options.naive_count, backend, options))
    print(table(results))
    largest = max(options.counts)
    cli = {r["backend"]: r for r in results if r["mode"] == "cli" and r["photos"] == largest}
    for backend in options.backends:
        naive = next(r for r in results if r["mode"] == "naive" and r["backend"] == backend)
        print(
            f"{backend}: CLI ({largest:,} photos) vs naive loop (first {naive['photos']:,} "
            f"photos): {cli[backend]['rate'] / naive['rate']:.1f}x the photos/s, "
            f"{naive['cpu_ms'] / cli[backend]['cpu_ms']:.1f}x less CPU per photo"
        )
        rss = [r["rss_mb"] for r in results if r["mode"] == "cli" and r["backend"] == backend]
        print(f"{backend}: CLI peak RSS, largest / smallest run: {max(rss) / min(rss):.3f}")
    for faster, slower in (("onnx", "torch"), ("onnx-int8", "onnx"), ("onnx-int8", "torch")):
        if {faster, slower} <= cli.keys():
            ratio = cli[faster]["rate"] / cli[slower]["rate"]
            print(f"CLI photos/s, {faster} / {slower}: {ratio:.2f}x")
    print(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
