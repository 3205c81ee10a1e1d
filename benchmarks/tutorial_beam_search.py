"""captioner's beam search against the PyTorch tutorial's, on the same weights.

    python -m benchmarks.tutorial_beam_search [--model DIR|NAME] [--scenes 300] [--photos 60]
        [--beam-size 3]

sgrvinod/a-PyTorch-Tutorial-to-Image-Captioning's caption.py searches one image at a time: at
each step it takes the k best (beam, word) pairs of all k x vocabulary candidates, moves those
that said <end> to its finished list and searches on with k minus that many beams; after 50
steps it stops and returns the best finished caption, and fails (max() of an empty list) when
none finished. `tutorial_beam_search` re-implements that procedure on captioner's decoder step.
Both searches' captions are then scored by the same teacher-forced log-probability, and the
script prints how often they differ, which is the more probable where they do, and how often
the tutorial's search would have crashed. Inputs: generated shapes scenes (the shipped
"shapes" model's own domain) and crops of real photos (outside it: flatter word distributions).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import torch

from benchmarks.common import sample_photos
from captioner import Captioner
from captioner.beam import beam_search
from captioner.decoder import Decoder, ImageMemory

TUTORIAL_MAX_STEPS = 50  # caption.py: `if step > 50: break`


class NoCaptionFinished(RuntimeError):
    """Where the tutorial's caption.py raises ValueError: max() of no finished caption."""


@torch.no_grad()
def tutorial_beam_search(
    decoder: Decoder, features: torch.Tensor, start_id: int, end_id: int, beam_size: int
) -> list[int]:
    """One image's (1, grid_h, grid_w, encoder_dim) features -> the word ids caption.py's
    search chooses, ending with <end>. Raises NoCaptionFinished where caption.py crashes."""
    memory = decoder.prepare(features)
    k = beam_size
    state = decoder.initial_state(memory).repeat_rows(k)
    words = torch.full((k,), start_id, dtype=torch.long)
    sequences = [[] for _ in range(k)]
    scores = torch.zeros(k)
    finished: list[tuple[float, list[int]]] = []
    for step in range(1, TUTORIAL_MAX_STEPS + 2):
        out = decoder.step(words, state, memory)
        log_probs = scores.unsqueeze(1) + out.logits.log_softmax(-1)  # (k, vocab)
        vocab_size = log_probs.shape[1]
        # At the first step every beam is the same <start>: only the first row's words.
        candidates = log_probs[0] if step == 1 else log_probs.flatten()
        top_scores, top = candidates.topk(k)
        beams, next_words = top // vocab_size, top % vocab_size
        sequences = [
            sequences[b] + [w] for b, w in zip(beams.tolist(), next_words.tolist(), strict=True)
        ]
        ended = next_words == end_id
        finished += [
            (s, q)
            for s, q, e in zip(top_scores.tolist(), sequences, ended.tolist(), strict=True)
            if e
        ]
        k -= int(ended.sum())
        if k == 0:
            break
        live = (~ended).nonzero().squeeze(1)
        sequences = [sequences[i] for i in live.tolist()]
        state = out.state.select_rows(beams[live])
        scores, words = top_scores[live], next_words[live]
    if not finished:
        raise NoCaptionFinished(f"no beam said <end> within {TUTORIAL_MAX_STEPS} steps")
    return max(finished, key=lambda pair: pair[0])[1]


@torch.no_grad()
def caption_log_prob(decoder: Decoder, memory: ImageMemory, ids: list[int], start_id: int) -> float:
    """log p(ids | image) under the decoder, <end> included: the one score both searches share."""
    state = decoder.initial_state(memory)
    total, previous = 0.0, start_id
    for word in ids:
        out = decoder.step(torch.tensor([previous]), state, memory)
        total += out.logits.log_softmax(-1)[0, word].item()
        state, previous = out.state, word
    return total


@dataclass
class Tally:
    images: int = 0
    same: int = 0
    captioner_more_probable: int = 0
    tutorial_more_probable: int = 0
    tutorial_said_a_banned_word: int = 0  # <unk>, <pad> or <start>: captioner never says them
    tutorial_crashed: int = 0

    def row(self, name: str) -> str:
        differ = self.images - self.same - self.tutorial_crashed
        return (
            f"{name:<16} {self.images:>6} {self.same:>6} {differ:>7} "
            f"{self.captioner_more_probable:>12} {self.tutorial_more_probable:>12} "
            f"{self.tutorial_said_a_banned_word:>10} {self.tutorial_crashed:>8}"
        )


@torch.no_grad()
def compare(model: Captioner, features: torch.Tensor, beam_size: int) -> Tally:
    vocab, decoder = model.vocab, model.decoder
    banned = (vocab.pad_id, vocab.start_id, vocab.unk_id)
    ours = beam_search(
        decoder,
        features,
        start_id=vocab.start_id,
        end_id=vocab.end_id,
        banned_ids=banned,
        beam_size=beam_size,
        max_length=TUTORIAL_MAX_STEPS,
    )
    tally = Tally()
    for image, hypotheses in zip(features.split(1), ours, strict=True):
        tally.images += 1
        mine = [*hypotheses[0].token_ids, vocab.end_id]
        try:
            theirs = tutorial_beam_search(decoder, image, vocab.start_id, vocab.end_id, beam_size)
        except NoCaptionFinished:
            tally.tutorial_crashed += 1
            continue
        if theirs == mine:
            tally.same += 1
            continue
        memory = decoder.prepare(image)
        if caption_log_prob(decoder, memory, mine, vocab.start_id) >= caption_log_prob(
            decoder, memory, theirs, vocab.start_id
        ):
            tally.captioner_more_probable += 1
        else:
            tally.tutorial_more_probable += 1
            tally.tutorial_said_a_banned_word += any(w in banned for w in theirs)
    return tally


def scene_images(count: int) -> list:
    from training.scenes import make_scene  # the shapes model's own kind of image

    rng = np.random.default_rng(0)
    return [make_scene(rng)[0] for _ in range(count)]


def photo_crops(count: int) -> list:
    """Random crops (half to all of each side) of the six scikit-image photos: real images,
    each a different input."""
    rng = np.random.default_rng(0)
    photos = sample_photos(6)
    crops = []
    for i in range(count):
        photo = photos[i % len(photos)]
        width, height = (int(side * rng.uniform(0.5, 1.0)) for side in photo.size)
        left = int(rng.integers(0, photo.size[0] - width + 1))
        top = int(rng.integers(0, photo.size[1] - height + 1))
        crops.append(photo.crop((left, top, left + width, top + height)))
    return crops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shapes")
    parser.add_argument("--scenes", type=int, default=300)
    parser.add_argument("--photos", type=int, default=60)
    parser.add_argument("--beam-size", type=int, nargs="+", default=[3, 5])
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = Captioner.load(args.model, device="cpu", backend="torch")
    if model.decoder.config.copy_nouns:
        parser.error("a copy model's search has rules the tutorial's lacks: use another model")
    inputs = {"shapes scenes": scene_images(args.scenes), "photo crops": photo_crops(args.photos)}
    features = {name: model.encode(images) for name, images in inputs.items()}
    print(f"model {model.name}; both captions scored by the same teacher-forced log p")
    header = (
        "inputs           images   same  differ  captioner>tut  tut>captioner  tut_banned crashed"
    )
    for beam_size in args.beam_size:
        print(f"\nbeam size {beam_size}\n{header}")
        for name, encoded in features.items():
            print(compare(model, encoded, beam_size).row(name))


if __name__ == "__main__":
    main()
