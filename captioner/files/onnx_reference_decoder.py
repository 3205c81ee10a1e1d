"""Caption photos with the ONNX graphs in this folder: numpy and onnxruntime only.

    python reference_decoder.py photo.jpg [more.jpg ...] [--beam-size 5] [--max-length 20]

`captioner-export --onnx` copies this file into the folder it writes. It is the reference for
running the graphs elsewhere: encoder.onnx, then prepare.onnx once per image, then
decoder_step.onnx once per word, with captioner's beam search and rules (captioner/beam.py,
captioner/rules.py) written out in numpy, so it gives captioner's captions. Beam size 1 is
greedy decoding. Reading a photo file needs Pillow; `ReferenceDecoder.caption` takes pixels.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

SPECIAL_WORDS = 4  # <pad> <start> <end> <unk>: never part of a caption's text
NO_SIZE, ANY_SIZE, ONLY_SMALL = 0, 1, 2  # as in captioner/rules.py


class ReferenceDecoder:
    """The graphs, vocabulary and decoding tables of one exported folder."""

    def __init__(self, folder: str | Path | None = None) -> None:
        """folder: None is the one this file is in."""
        folder = Path(folder) if folder is not None else Path(__file__).resolve().parent

        def session(name: str) -> ort.InferenceSession:
            return ort.InferenceSession(str(folder / name), providers=["CPUExecutionProvider"])

        self.encoder, self.prepare = session("encoder.onnx"), session("prepare.onnx")
        self.step = session("decoder_step.onnx")
        self.words = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))["itos"]
        self.tables = json.loads((folder / "decoding.json").read_text(encoding="utf-8"))
        noun_of_word = self.tables["noun_of_word"]
        self.noun_of_word = None if noun_of_word is None else np.array(noun_of_word)
        self.an_words = set(self.tables["an_words"])

    def pixels(self, path: str | Path) -> np.ndarray:
        """A photo file -> (3, size, size) float32 input, resized as captioner resizes (its
        reduced-size decoding of large JPEGs can change a pixel's value by a little)."""
        from PIL import Image, ImageOps

        size = self.tables["image_size"]
        with Image.open(path) as image:
            if self.tables["draft_decoding"]:
                image.draft("RGB", (size, size))
            image = ImageOps.exif_transpose(image).convert("RGB")
        if image.size != (size, size):
            gap = self.tables["reducing_gap"]
            image = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=gap)
        pixels = np.asarray(image, dtype=np.float32) / 255.0
        pixels = (pixels - np.float32(self.tables["mean"])) / np.float32(self.tables["std"])
        return pixels.transpose(2, 0, 1).astype(np.float32)

    def caption(
        self,
        pixels: np.ndarray,
        beam_size: int = 5,
        max_length: int = 20,
        length_penalty: float = 0.0,
    ) -> list[str]:
        """(batch, 3, size, size) pixels -> the best caption of each image."""
        (features,) = self.encoder.run(None, {"pixels": pixels.astype(np.float32)})
        names = [output.name for output in self.prepare.get_outputs()]
        prepared = dict(
            zip(names, self.prepare.run(None, {"encoder_features": features}), strict=True)
        )
        captions = []
        for image in range(len(features)):
            # Per image: copy_words and copy_slots are tables, the same for every image.
            memory = {
                name: value if name in ("copy_words", "copy_slots") else value[image : image + 1]
                for name, value in prepared.items()
            }
            opening = self._size_opening(memory["noun_probs"][0]) if "noun_probs" in memory else 0
            ids = self._search(memory, beam_size, max_length, length_penalty, opening)
            captions.append(self._text(ids))
        return captions

    def _size_opening(self, noun_probs: np.ndarray) -> int:
        """(num_pixels, nouns) one image's cell distributions -> the size words its caption
        may open with (captioner/rules.py size_openings): ANY_SIZE where it shows two things
        the model is sure of whose sizes clearly differ, ONLY_SMALL where the largest fills a
        small part of the frame, else NO_SIZE."""
        rule = self.tables.get("size_rule")
        if rule is None:
            return NO_SIZE
        sure = noun_probs.max(-1) >= rule["sure_cell"]
        cells = np.bincount(noun_probs.argmax(-1)[sure], minlength=1)
        sizes = sorted((int(n) for n in cells if n > 0), reverse=True)
        counted = [size for size in sizes if size >= rule["thing_cells"]]
        if len(counted) >= 2 and counted[0] >= rule["size_ratio"] * counted[-1]:
            return ANY_SIZE
        return ONLY_SMALL if sizes and sizes[0] <= rule["small_thing"] else NO_SIZE

    def _search(
        self, memory: dict[str, np.ndarray], k: int, max_length: int, alpha: float, opening: int
    ) -> list[int]:
        """Beam search of one image, as captioner/beam.py: the word ids of the best caption."""
        end_id = self.tables["end_id"]
        state = {name: np.repeat(memory.pop(name), k, 0) for name in ("h", "c") if name in memory}
        words = np.full(k, self.tables["start_id"], dtype=np.int64)
        alive = np.full(k, -np.inf, dtype=np.float32)
        alive[0] = 0.0  # at the start all beams are the same, so only one may expand
        histories: list[list[int]] = [[] for _ in range(k)]
        pool: list[tuple[float, list[int]]] = []  # finished captions: (score, words), best first
        outputs = [output.name for output in self.step.get_outputs()]
        for t in range(max_length + 1):
            out = dict(
                zip(outputs, self.step.run(None, {"words": words, **state, **memory}), strict=True)
            )
            logits = out["logits"].astype(np.float32)
            shifted = logits - logits.max(-1, keepdims=True)
            log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
            vocab_size = log_probs.shape[1]
            for row, history in enumerate(histories):
                log_probs[
                    row, self._banned(history, vocab_size, opening, at_limit=t == max_length)
                ] = -np.inf
            candidates = (alive[:, None] + log_probs).reshape(-1)
            top = np.argsort(-candidates, kind="stable")[: min(2 * k, candidates.size)]
            top_logp, top_beam, top_word = candidates[top], top // vocab_size, top % vocab_size
            ends = top_word == end_id
            penalty = ((5.0 + t + 1) / 6.0) ** alpha
            pool += [
                (float(logp / penalty), histories[beam])
                for logp, beam, ended in zip(top_logp, top_beam, ends, strict=True)
                if ended and logp > -np.inf
            ]
            pool = sorted(pool, key=lambda entry: -entry[0])[:k]
            living = np.where(ends, -np.inf, top_logp).astype(np.float32)
            pick = np.argsort(-living, kind="stable")[:k]
            alive, parent, next_word = living[pick], top_beam[pick], top_word[pick]
            # An image stops once no live beam can beat the worst caption in a full pool.
            largest = max(((5.0 + t + 2) / 6.0) ** alpha, ((6.0 + max_length) / 6.0) ** alpha)
            worst = pool[-1][0] if len(pool) == k else -math.inf
            if not worst < float(alive.max()) / largest:
                break
            state = {name: out[f"next_{name}"][parent] for name in ("h", "c") if name in state}
            histories = [
                histories[beam] + [int(word)] for beam, word in zip(parent, next_word, strict=True)
            ]
            words = next_word.astype(np.int64)
        return pool[0][1] if pool else []

    def _banned(
        self, history: list[int], vocab_size: int, opening: int, *, at_limit: bool
    ) -> np.ndarray:
        """Which words may not come next (captioner/rules.py); at the length limit, all but
        <end>. opening: the size words the caption may open with (_size_opening)."""
        end_id = self.tables["end_id"]
        banned = np.zeros(vocab_size, dtype=bool)
        if at_limit:
            banned[:] = True
            banned[end_id] = False
            return banned
        banned[self.tables["banned_ids"]] = True
        banned[end_id] = not history  # an empty caption says nothing
        if self.noun_of_word is not None:  # a copy model's sentence form
            nouns = self.noun_of_word[history] if history else np.zeros(0, dtype=np.int64)
            is_noun = self.noun_of_word >= 0
            if history and nouns[-1] >= 0:
                banned |= is_noun  # never a noun right after a noun
            banned[end_id] |= not (nouns >= 0).any()  # <end> only once a noun is said
            said = nouns[nouns >= 0]
            banned |= np.isin(self.noun_of_word, said)  # each thing named once
            rule = self.tables.get("size_rule")
            if rule is not None and not len(said) and opening != ANY_SIZE:
                allowed = rule["small_ids"] if opening == ONLY_SMALL else []
                banned[sorted(set(rule["size_ids"]) - set(allowed))] = True
        return banned

    def _text(self, ids: list[int]) -> str:
        """Word ids -> the caption, each "a"/"an" the one the next word takes."""
        words = [self.words[i] for i in ids if i >= SPECIAL_WORDS]
        for i in range(len(words) - 1):
            if words[i] in ("a", "an"):
                words[i] = "an" if words[i + 1] in self.an_words else "a"
        return " ".join(words)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="*", help="photo files (read with Pillow)")
    parser.add_argument("--pixels", help="a .npy file of (batch, 3, size, size) inputs instead")
    parser.add_argument("--beam-size", type=int, default=5, help="1 is greedy decoding")
    parser.add_argument("--max-length", type=int, default=20)
    parser.add_argument("--length-penalty", type=float, default=0.0)
    args = parser.parse_args(argv)
    decoder = ReferenceDecoder()
    if args.pixels:
        pixels = np.load(args.pixels)
    else:
        pixels = np.stack([decoder.pixels(path) for path in args.photos])
    for caption in decoder.caption(pixels, args.beam_size, args.max_length, args.length_penalty):
        print(caption)
    return 0


if __name__ == "__main__":
    sys.exit(main())
