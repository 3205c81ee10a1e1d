"""Batched beam search: all images and all their beams advance together in one tensor program."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from captioner.decoder import Decoder, ImageMemory
from captioner.rules import apply_rules, search_rules


@dataclass
class Hypothesis:
    """One decoded caption as word ids, with what the decoder did at each word."""

    token_ids: list[int]  # without <start> and <end>
    score: float  # log_prob / length penalty; the ranking key
    log_prob: float  # sum of log-probabilities, <end> included
    alphas: np.ndarray  # (len(token_ids), num_pixels)
    context_gate: np.ndarray  # (len(token_ids),)
    gates: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (len, decoder_dim)
    copy_gate: np.ndarray | None = None  # (len(token_ids),) copy models only


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's ((5 + length) / 6) ** alpha; `length` counts the words plus <end>.

    alpha = 0 ranks by plain log-probability (which favours short captions); larger alpha
    favours longer ones.
    """
    return ((5.0 + length) / 6.0) ** alpha


@torch.no_grad()
def beam_search(
    decoder: Decoder,
    features: torch.Tensor,
    *,
    start_id: int,
    end_id: int,
    banned_ids: tuple[int, ...] = (),
    beam_size: int = 5,
    max_length: int = 20,
    length_alpha: float = 0.0,
    no_repeat_ngram_size: int = 0,
    num_return: int | None = None,
    memory: ImageMemory | None = None,
    name_things: int = 0,
) -> list[list[Hypothesis]]:
    """Decode (batch, grid_h, grid_w, encoder_dim) features; per image the best hypotheses first.

    Each image keeps `beam_size` live beams; finished captions go to a per-image pool of the
    same size. An image stops once no live beam can beat the worst caption in its pool, and is
    then frozen, so its result does not depend on the other images in the batch. Greedy
    decoding is beam_size=1. No caption ends before its first word, and a copy model's caption
    names something: it ends only after a copied noun, never copies two nouns in a row, and
    names each thing once (a count says "two dogs").

    memory: `decoder.prepare(features)`, when the caller holds it already (it reads the copy
    memory after the search too: captioner/pointing.py). name_things: a copy model's captions
    end only once they name that many of the things the model is sure of (rules.py).
    """
    if beam_size < 1 or max_length < 1:
        raise ValueError("beam_size and max_length must be at least 1")
    # 0 asks for none: then the model's own (a learned model's, DecoderConfig).
    length_alpha = length_alpha or getattr(decoder.config, "length_penalty", 0.0)
    batch, k = features.shape[0], beam_size
    num_return = min(num_return or k, k)
    if memory is None:
        memory = decoder.prepare(features)
    vocab_size = memory.word_count or decoder.config.vocab_size  # taught words add ids
    state = decoder.initial_state(memory).repeat_rows(k)
    words = torch.full((batch * k,), start_id, dtype=torch.long, device=features.device)

    rules = search_rules(
        decoder,
        memory,
        end_id=end_id,
        banned_ids=banned_ids,
        no_repeat_ngram_size=no_repeat_ngram_size,
        name_things=name_things,
    )
    # At the length limit a caption can only end, in place of the rules: a copy model's
    # caption that has named nothing by then ends too.
    only_end = torch.ones(vocab_size, dtype=torch.bool, device=features.device)
    only_end[end_id] = False
    neg_inf = torch.tensor(-math.inf, device=features.device)
    # Pools of finished captions, one row per image for the whole search.
    pool_score = torch.full((batch, k), -math.inf, device=features.device)
    pool_logp = torch.zeros((batch, k), device=features.device)
    pool_step = torch.zeros((batch, k), dtype=torch.long, device=features.device)
    pool_beam = torch.zeros((batch, k), dtype=torch.long, device=features.device)
    # The live search holds only the images still searching: once no live beam of an image can
    # beat its pool, its rows leave every tensor, so one long caption does not make the whole
    # batch pay for it. `images` are their indices in the batch, in order.
    images = torch.arange(batch, device=features.device)
    alive = torch.full((batch, k), -math.inf, device=features.device)  # log-probs of live beams
    alive[:, 0] = 0.0  # at the start all beams are the same, so only one may expand
    # Each live beam's words so far, (searching * beams, steps): what the rules read.
    sequences = torch.empty((batch * k, 0), dtype=torch.long, device=features.device)
    history = []  # per step: what each live beam did, how the next descend, and whose they are

    for t in range(max_length + 1):
        searching = len(images)
        out = decoder.step(words, state, memory)
        log_probs = out.logits.float().log_softmax(-1)  # (searching * beams, vocab)
        # Masked after the softmax, so scores stay the model's own log-probabilities.
        if t == max_length:
            log_probs = log_probs.masked_fill(only_end, -math.inf)
        else:
            log_probs = apply_rules(rules, log_probs, sequences, images)
        candidates = (alive.unsqueeze(-1) + log_probs.view(searching, k, vocab_size)).flatten(1)
        # 2k candidates guarantee k that do not end, whatever number of them pick <end>.
        top_logp, top_index = candidates.topk(min(2 * k, candidates.shape[1]), dim=1)
        top_beam, top_word = top_index // vocab_size, top_index % vocab_size  # (searching, 2k)
        ends = top_word == end_id

        # Finished captions enter their image's pool, ranked by length-penalised score.
        new_score = top_logp / length_penalty(t + 1, length_alpha)
        new_score = torch.where(ends, new_score, neg_inf)
        merged_score, pick = torch.cat([pool_score[images], new_score], 1).topk(k, dim=1)
        pool_score[images] = merged_score
        for pool, new in ((pool_logp, top_logp), (pool_step, torch.full_like(top_beam, t)),
                          (pool_beam, top_beam)):  # fmt: skip
            pool[images] = torch.cat([pool[images], new], 1).gather(1, pick)

        # The best k candidates that did not end live on.
        alive, pick = torch.where(ends, neg_inf, top_logp).topk(k, dim=1)
        parent, next_word = top_beam.gather(1, pick), top_word.gather(1, pick)  # (searching, k)
        history.append((out, parent, next_word, images))

        still = merged_score[:, -1] < _best_reachable(alive, t, max_length, length_alpha)
        if not bool(still.any()):
            break
        # The next step's rows: each kept beam's parent row, for the images still searching.
        kept = still.nonzero().squeeze(1)  # (still searching,)
        rows = (parent[kept] + kept.unsqueeze(1) * k).view(-1)
        if len(kept) < searching:
            memory = memory.select_images(kept)
            images, alive, next_word = images[kept], alive[kept], next_word[kept]
        state = out.state.select_rows(rows)
        words = next_word.view(-1)
        sequences = torch.cat([sequences.index_select(0, rows), words.unsqueeze(1)], 1)

    return _backtrack(history, pool_score, pool_logp, pool_step, pool_beam, num_return, k)


def _best_reachable(
    alive: torch.Tensor, t: int, max_length: int, length_alpha: float
) -> torch.Tensor:
    """An upper bound on the score any live beam can still finish with, per image.

    Log-probabilities only fall as words are added, so a beam ending at length L scores at most
    alive / penalty(L); the bound takes the L (from t + 2 to max_length + 1) that is best.
    """
    best = alive.max(dim=1).values  # (batch,) <= 0
    largest_penalty = max(
        length_penalty(t + 2, length_alpha), length_penalty(max_length + 1, length_alpha)
    )
    return best / largest_penalty


def _backtrack(history, pool_score, pool_logp, pool_step, pool_beam, num_return, k):
    """Follow parent pointers back from each pooled caption to collect its words and maps.

    A step's tensors hold only the images still searching then; an image's captions all ended
    by the step it stopped at, so at every step one of them has a word or its <end>, the image
    was searching. At other steps `block` points anywhere and what it reads is cut off below.
    """
    batch = pool_score.shape[0]
    beam = pool_beam.clone()  # (batch, k): the beam each caption is on at the current step
    words, alphas, betas, gates = [], [], [], {name: [] for name in history[0][0].gates}
    copy_gates = [] if history[0][0].copy_gate is not None else None
    block = torch.zeros(batch, dtype=torch.long, device=pool_score.device)
    for t in range(len(history) - 1, -1, -1):
        out, parent, next_word, images = history[t]
        block.zero_()[images] = torch.arange(len(images), device=block.device)  # (batch,)
        has_word = pool_step > t  # captions that ended after step t have a word from step t
        word_here = next_word[block].gather(1, beam)
        beam = torch.where(has_word, parent[block].gather(1, beam), beam)  # the beam at step t
        rows = (block.unsqueeze(1) * k + beam).view(-1)
        words.append(word_here)
        alphas.append(out.alpha.index_select(0, rows).view(batch, k, -1))
        betas.append(out.beta.index_select(0, rows).view(batch, k))
        for name, value in out.gates.items():
            gates[name].append(value.index_select(0, rows).view(batch, k, -1))
        if copy_gates is not None:
            copy_gates.append(out.copy_gate.index_select(0, rows).view(batch, k))

    # Steps were collected last to first; index by step after reversing.
    words = torch.stack(words[::-1], 2).cpu().numpy()  # (batch, k, steps)
    alphas = torch.stack(alphas[::-1], 2).float().cpu().numpy()  # (batch, k, steps, P)
    betas = torch.stack(betas[::-1], 2).float().cpu().numpy()  # (batch, k, steps)
    gates = {n: torch.stack(v[::-1], 2).float().cpu().numpy() for n, v in gates.items()}
    if copy_gates is not None:
        copy_gates = torch.stack(copy_gates[::-1], 2).float().cpu().numpy()  # (batch, k, steps)
    scores, logps, steps = (
        pool_score.cpu().tolist(),
        pool_logp.cpu().tolist(),
        pool_step.cpu().tolist(),
    )

    results = []
    for b in range(batch):
        hypotheses = []
        for j in range(k):
            if len(hypotheses) == num_return or scores[b][j] == -math.inf:
                break
            length = steps[b][j]  # words before <end>
            hypotheses.append(
                Hypothesis(
                    token_ids=words[b, j, :length].tolist(),
                    score=scores[b][j],
                    log_prob=logps[b][j],
                    alphas=alphas[b, j, :length],
                    context_gate=betas[b, j, :length],
                    gates={n: v[b, j, :length] for n, v in gates.items()},
                    copy_gate=copy_gates[b, j, :length] if copy_gates is not None else None,
                )
            )
        results.append(hypotheses)
    return results
