"""Consensus reranking: of the beam's captions, keep the one the model's own samples agree with.

Beam search returns the single most probable word sequence. When the model can say a scene in
many ways, that is not the caption it believes most: a rare wording with few paraphrases ("two
blue crosses one above the other") can outscore each of the many wordings of the usual
description, although together they hold far more probability. Drawing captions from the model
and keeping the beam caption that agrees most with them (minimum Bayes risk decoding, with
sentence BLEU as the agreement) picks the usual description instead.

Samples are drawn with Gumbel noise from one generator per image, seeded the same for every
image, so an image's caption is repeatable and never depends on the other images in its batch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from captioner.decoder import Decoder, ImageMemory
from captioner.rules import apply_rules, search_rules
from captioner.sampling import ImageNoise

SAMPLING_SEED = 0
# Add-one smoothing (Lin and Och 2004): short captions, or ones that share no 4-gram, still score
# by their shorter n-grams instead of dropping to about zero.
_smoothing = SmoothingFunction().method2


@torch.no_grad()
def sample_captions(
    decoder: Decoder,
    features: torch.Tensor,
    *,
    num_samples: int,
    start_id: int,
    end_id: int,
    banned_ids: tuple[int, ...] = (),
    max_length: int = 20,
    no_repeat_ngram_size: int = 0,
    temperature: float = 0.7,
    name_things: int = 0,
    memory: ImageMemory | None = None,
) -> list[list[list[int]]]:
    """Draw num_samples captions per image from (batch, grid_h, grid_w, encoder_dim) features.

    Returns per image a list of word-id lists (without <start> and <end>), each at least one
    word long and, as beam search's, within the decoding rules (captioner/rules.py). A
    temperature below 1 sharpens the model's distribution, so the samples stay on its likely
    wordings. memory: `decoder.prepare(features)` as the beam search read it (with the encoder's
    class maps and the people it found), when the caller holds it.
    """
    if num_samples < 1 or temperature <= 0:
        raise ValueError("num_samples must be at least 1 and temperature above 0")
    batch, n, device = features.shape[0], num_samples, features.device
    if memory is None:
        memory = decoder.prepare(features)
    state = decoder.initial_state(memory).repeat_rows(n)
    words = torch.full((batch * n,), start_id, dtype=torch.long, device=device)
    rules = search_rules(  # as beam search's
        decoder,
        memory,
        end_id=end_id,
        banned_ids=banned_ids,
        no_repeat_ngram_size=no_repeat_ngram_size,
        name_things=name_things,
    )
    noise = ImageNoise(batch, n, SAMPLING_SEED)

    drawn = []  # per step: (batch, n) words, <end> for images no longer sampling
    # An image whose samples have all ended leaves the batch; its generator is its own, so the
    # others' draws do not change.
    images = torch.arange(batch, device=device)
    finished = torch.zeros(batch * n, dtype=torch.bool, device=device)
    history = torch.empty((batch * n, 0), dtype=torch.long, device=device)  # (sampling * n, t)
    for t in range(max_length + 1):
        out = decoder.step(words, state, memory)
        if t == max_length:
            words = torch.full_like(words, end_id)
        else:
            scores = apply_rules(rules, out.logits.float() / temperature, history, images)
            gumbel = noise.draw(images.tolist(), scores.shape[1]).to(device)
            words = (scores + gumbel).argmax(-1)  # (sampling * n,)
        words = words.masked_fill(finished, end_id)
        step_words = torch.full((batch, n), end_id, dtype=torch.long, device=device)
        step_words[images] = words.view(-1, n)
        drawn.append(step_words)
        history = torch.cat([history, words.unsqueeze(1)], 1)
        finished |= words == end_id
        still = ~finished.view(-1, n).all(1)  # (sampling,)
        if not bool(still.any()):
            break
        state = out.state
        if not bool(still.all()):
            kept = still.nonzero().squeeze(1)
            rows = (kept.unsqueeze(1) * n + torch.arange(n, device=device)).view(-1)
            memory, images = memory.select_images(kept), images[kept]
            state, words, finished = state.select_rows(rows), words[rows], finished[rows]
            history = history[rows]

    ids = torch.stack(drawn, 2).cpu().tolist()  # (batch, n, steps)
    return [[row[: row.index(end_id)] for row in image] for image in ids]


def consensus_ranking(
    candidates: Sequence[Sequence[int]], samples: Sequence[Sequence[int]]
) -> list[int]:
    """Candidate indices, the one with the highest mean sentence BLEU-4 against the samples first.

    Ties keep the candidates' own order, so with beam captions the more probable one wins.
    """
    # Samples repeat (the model's favourite wording often makes a third of them): score each
    # distinct one once and weight it by its count.
    counts = Counter(tuple(sample) for sample in samples)

    def agreement(candidate: Sequence[int]) -> float:
        return sum(
            count * sentence_bleu([list(sample)], list(candidate), smoothing_function=_smoothing)
            for sample, count in counts.items()
        )

    scores = [agreement(candidate) for candidate in candidates]
    return sorted(range(len(candidates)), key=lambda i: -scores[i])
