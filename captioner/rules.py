"""Decoding rules: which words a caption may say next, written once for every search.

Beam search (beam.py), consensus sampling (consensus.py) and self-critical training's sampler
(training/scst.py) apply the same rules, built by `decoding_rules`, so no sampler draws a
caption the beam search could never return. A rule is a filter in the shape of whisper's
LogitFilter or transformers' LogitsProcessor: it takes one step's scores (rows, vocab) and the
rows' words so far (rows, steps), and returns the scores with the words it forbids at -inf.
Masking keeps the other scores as they were, so a beam's score stays the model's own
log-probability.

Rules keep no state: they read everything from the history, so they follow the rows wherever
a search reorders or drops them, as long as the search moves the history with its rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import torch

from captioner.decoder import Decoder, ImageMemory
from captioner.noun_tree import Hedge
from captioner.taught import TaughtNouns
from captioner.vocab import Vocabulary

# Words the model never says: it learned no caption with them.
BANNED_IDS = (Vocabulary.pad_id, Vocabulary.start_id, Vocabulary.unk_id)
# Words that say how big a thing is, which a copy model says only after its first noun.
SIZE_WORDS = ("large", "small", "big", "little")
SMALL_WORDS = ("small", "little")
# Words that count more than one thing: a hypernym without a plural ("photo", "furniture") is
# not said after them ("two photo").
COUNT_WORDS = ("two", "three", "four", "several", "many")
# Which size words may open an image's caption (size_openings).
NO_SIZE, ANY_SIZE, ONLY_SMALL = 0, 1, 2
# When (size_openings): a grid cell is sure of a thing where its top noun has SURE_CELL; a
# thing is THING_CELLS sure cells or more (of the default model's 7 x 7); two things differ in
# size when one has SIZE_RATIO times the other's cells; the largest thing is small in the
# frame at SMALL_THING cells or fewer. Chosen on validation composites and 32 calibration
# photos, not the development photos (docs/guides/hedging.md, "Size words").
SURE_CELL = 0.8
THING_CELLS = 2
SIZE_RATIO = 3.0
SMALL_THING = 10
# Which sure things (the same things) a copy model's caption names before it ends, where
# DecodeOptions.name_things asks for them (things_to_name): the largest first, a second one
# only of SECOND_THING cells or more, a cell sure at NAMING_SURE; a caption that has not named
# them after NAMING_WORDS words may end anyway.
SECOND_THING = 2
NAMING_SURE = SURE_CELL
NAMING_WORDS = 10


class Rule(Protocol):
    def __call__(self, scores: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """(rows, vocab) scores of the next word, (rows, steps) words so far without <start>
        -> the scores with the banned words at -inf."""
        ...


class SpecialTokens:
    """The banned words never, and <end> not before the first word: an empty caption says
    nothing, and would rank first in a search."""

    def __init__(
        self, vocab_size: int, banned_ids: Sequence[int], end_id: int, device: torch.device | str
    ) -> None:
        self.never = torch.zeros(vocab_size, dtype=torch.bool, device=device)
        self.never[list(banned_ids)] = True
        self.at_first_word = self.never.clone()
        self.at_first_word[end_id] = True

    def __call__(self, scores: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        banned = self.at_first_word if history.shape[1] == 0 else self.never
        return scores.masked_fill(banned, -math.inf)


class NoRepeatNgram:
    """No n-gram twice in a caption: a word that would complete one already said is banned
    (<end> never is, so a caption can always finish)."""

    def __init__(self, n: int, end_id: int) -> None:
        self.n, self.end_id = n, end_id

    def __call__(self, scores: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        n, length = self.n, history.shape[1]
        if length < n:  # no complete n-gram yet
            return scores
        if n == 1:
            banned = torch.zeros_like(scores).scatter_(1, history, 1.0) > 0
        else:
            grams = history.unfold(1, n, 1)  # (rows, length - n + 1, n)
            suffix = history[:, length - n + 1 :]  # (rows, n - 1)
            matches = (grams[:, :, :-1] == suffix.unsqueeze(1)).all(-1).float()  # (rows, grams)
            banned = torch.zeros_like(scores).scatter_add_(1, grams[:, :, -1], matches) > 0
        banned[:, self.end_id] = False
        return scores.masked_fill(banned, -math.inf)


class CopyGrammar:
    """A copy model's sentence form: <end> only once a noun has been said (unless not
    `end_after_noun`: a model learned from captions that do not all name one), and never a
    noun right after a noun."""

    def __init__(
        self, noun_of_word: torch.Tensor, end_id: int, end_after_noun: bool = True
    ) -> None:
        self.is_noun = noun_of_word >= 0  # (vocab,)
        self.end_id = end_id
        self.end_after_noun = end_after_noun

    def __call__(self, scores: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        is_noun = self.is_noun[history]  # (rows, steps)
        if history.shape[1]:
            after_noun = is_noun[:, -1]
        else:
            after_noun = torch.zeros(len(history), dtype=torch.bool, device=history.device)
        banned = after_noun.unsqueeze(1) & self.is_noun  # (rows, vocab)
        if self.end_after_noun:
            banned[:, self.end_id] |= ~is_noun.any(1)
        return scores.masked_fill(banned, -math.inf)


class SizeOnlyAfterANoun:
    """No size word before the caption's first noun, unless the photo shows things whose size
    tells them apart, or one small thing (`size_openings`). A copy model learned "a large dog"
    from composites, where the size compares things pasted at different scales; on a photo
    whose subject fills the frame "large" says nothing, and it opened 45 of 48 captions of the
    development photos. After a first noun a size word can still tell two things apart ("a dog
    and a small cat")."""

    # Rows differ by their image: the search says which images its rows are (apply_rules).
    per_image = True

    def __init__(
        self,
        size_ids: Sequence[int],
        noun_of_word: torch.Tensor,
        size_openings: torch.Tensor | None = None,
        small_ids: Sequence[int] = (),
    ) -> None:
        """size_openings: (batch,) which size words each image of the search may open with
        (NO_SIZE, ANY_SIZE or ONLY_SMALL: `size_openings`); None: none. small_ids: the size
        words that say "small"."""
        self.is_size = torch.zeros_like(noun_of_word, dtype=torch.bool)  # (vocab,)
        self.is_size[list(size_ids)] = True
        self.is_small = torch.zeros_like(self.is_size)  # (vocab,)
        self.is_small[list(small_ids)] = True
        self.is_noun = noun_of_word >= 0  # (vocab,)
        self.size_openings = size_openings

    def __call__(
        self, scores: torch.Tensor, history: torch.Tensor, images: torch.Tensor | None = None
    ) -> torch.Tensor:
        """images: (searching,) the batch index of each block of rows (rows = images x
        beams or samples); None: the rows are of no image that may open with a size word."""
        named = self.is_noun[history].any(1)  # (rows,)
        banned = ~named.unsqueeze(1) & self.is_size  # (rows, vocab)
        if self.size_openings is not None and images is not None:
            kind = self.size_openings[images].repeat_interleave(len(history) // len(images))
            banned &= (kind != ANY_SIZE).unsqueeze(1)
            banned &= ~((kind == ONLY_SMALL).unsqueeze(1) & self.is_small)
        return scores.masked_fill(banned, -math.inf)


def size_openings(noun_probs: torch.Tensor, hedge: Hedge | None = None) -> torch.Tensor:
    """(batch, num_pixels, nouns) a copy memory's cell distributions -> (batch,) which size
    words may open each image's caption: any (ANY_SIZE) where it shows two things the model is
    sure of whose sizes clearly differ ("a small dog and a large bicycle"); "small" (ONLY_SMALL)
    where the largest thing it is sure of fills only a small part of the frame ("a small
    kite"); else none (NO_SIZE).

    A thing is the cells whose top noun has at least SURE_CELL, grouped by that noun, with a
    hypernym's cells joining those of a noun under it ("animal" cells beside "llama" ones are
    the llama). Only things of at least THING_CELLS cells count. The thresholds were chosen
    on validation composites and 32 calibration photos (docs/guides/hedging.md)."""
    result = torch.full((len(noun_probs),), NO_SIZE)
    for image, things in enumerate(sure_things(noun_probs, hedge)):
        sizes = [cells for cells, _ in things]
        counted = [size for size in sizes if size >= THING_CELLS]
        contrast = len(counted) >= 2 and counted[0] >= SIZE_RATIO * counted[-1]
        if contrast:
            result[image] = ANY_SIZE
        elif sizes and sizes[0] <= SMALL_THING:
            result[image] = ONLY_SMALL
    return result.to(noun_probs.device)


def sure_things(
    noun_probs: torch.Tensor, hedge: Hedge | None = None, sure: float | None = None
) -> list[list[tuple[int, list[int]]]]:
    """(batch, num_pixels, columns) a copy memory's cell distributions -> per image the things
    the model is sure of, the largest first: (cells, the copy columns whose cells they are).

    A cell is sure of its top noun where that has at least `sure` (default SURE_CELL); a thing
    is the sure cells of one noun, with a hypernym's cells joining those of a noun under it
    ("animal" cells beside "llama" ones are the llama)."""
    top_p, top = noun_probs.max(-1)  # (batch, num_pixels)
    sure_cells = top_p >= (SURE_CELL if sure is None else sure)  # (batch, num_pixels)
    related = _related_columns(hedge, noun_probs.shape[-1], noun_probs.device)
    result = []
    for columns, is_sure in zip(top.tolist(), sure_cells.tolist(), strict=True):
        cells: dict[int, int] = {}
        for column, counted in zip(columns, is_sure, strict=True):
            if counted:
                cells[column] = cells.get(column, 0) + 1
        things: dict[int, list[int]] = {}  # the largest group first, with the groups it joined
        for column in sorted(cells, key=cells.get, reverse=True):
            home = next((t for t in things if related(t, column)), column)
            things.setdefault(home, []).append(column)
        grouped = [(sum(cells[c] for c in members), members) for members in things.values()]
        result.append(sorted(grouped, key=lambda thing: thing[0], reverse=True))
    return result


def things_to_name(
    noun_probs: torch.Tensor, hedge: Hedge | None = None, count: int = 0
) -> torch.Tensor | None:
    """(batch, num_pixels, columns) a copy memory's cell distributions -> (batch, count,
    columns): for each image, the `count` things (`sure_things` of THING_CELLS cells or more)
    its caption names before it ends, each as the copy columns that name it (its nouns and the
    hypernyms above them, never the root "a photo"); a row of False names nothing. None where
    count is 0."""
    if not count:
        return None
    columns = noun_probs.shape[-1]
    nouns = _noun_sets(hedge, columns, noun_probs.device)  # (columns, table nouns)
    root = columns - 1 if hedge is not None and hedge.root else None
    if root is not None:  # "a photo" is true of every photo: it names no thing
        nouns[root] = False
    result = torch.zeros(len(noun_probs), count, columns, dtype=torch.bool)
    for image, things in enumerate(sure_things(noun_probs, hedge, NAMING_SURE)):
        counted = [
            (cells, members)
            for cells, members in things
            if cells >= THING_CELLS and members != [root]
        ]
        if len(counted) > 1 and counted[1][0] < SECOND_THING:
            counted = counted[:1]
        for slot, (_, members) in enumerate(counted[:count]):
            named = nouns[members]  # (members, table nouns)
            below = ~(nouns.unsqueeze(0) & ~named.unsqueeze(1)).any(-1)  # (members, columns)
            above = ~(named.unsqueeze(1) & ~nouns.unsqueeze(0)).any(-1)
            either = (below | above) & nouns.any(-1) & named.any(-1, keepdim=True)
            result[image, slot] = either.any(0)
            result[image, slot, [m for m in members if m != root]] = True
    return result.to(noun_probs.device)


def _noun_sets(hedge: Hedge | None, columns: int, device: torch.device) -> torch.Tensor:
    """(columns, table nouns) the table nouns each copy column names: a noun itself, a
    hypernym the nouns under it; a taught word none (it is under no node of the tree).
    Columns are the table's nouns, taught words, hypernyms; without a tree, the nouns alone."""
    if hedge is None:
        return torch.eye(columns, dtype=torch.bool, device=device)
    under = hedge.under.to(device).bool()  # (table nouns, nodes): node is the noun or above it
    nouns, taught = under.shape[0], columns - under.shape[1]
    sets = torch.zeros(columns, nouns, dtype=torch.bool, device=device)
    sets[:nouns] = under[:, :nouns].T
    sets[nouns + taught :] = under[:, nouns:].T
    return sets


def _related_columns(hedge: Hedge | None, columns: int, device: torch.device):
    """(a, b) -> whether copy columns a and b name one thing: the same, or one a hypernym of
    the other in the hedge's tree. Columns are the table's nouns, taught words, hypernyms."""
    if hedge is None:
        return lambda a, b: a == b
    sets = _noun_sets(hedge, columns, device)

    def related(a: int, b: int) -> bool:
        a_nouns, b_nouns = sets[a], sets[b]  # the nouns under each
        if a == b or not a_nouns.any() or not b_nouns.any():
            return a == b
        return bool((a_nouns <= b_nouns).all() or (b_nouns <= a_nouns).all())

    return related


class NameTheSureThings:
    """A copy model's caption ends only once it has named the things the model is sure of
    (`things_to_name`): "a dog and a bicycle" where both are sure, not "a bicycle" alone. A
    caption that has not named them after NAMING_WORDS words may end, so a search never runs
    on to its length limit for a thing it cannot say."""

    per_image = True

    def __init__(self, noun_of_word: torch.Tensor, to_name: torch.Tensor, end_id: int) -> None:
        """to_name: (batch, things, columns) the copy columns that name each thing of each
        image (`things_to_name`); noun_of_word: (vocab,) each word's copy column, -1 for
        none."""
        self.column = noun_of_word + 1  # (vocab,) 0 gathers the words that are no noun
        self.to_name = to_name
        self.end_id = end_id

    def __call__(
        self, scores: torch.Tensor, history: torch.Tensor, images: torch.Tensor | None = None
    ) -> torch.Tensor:
        """images: (searching,) the batch index of each block of rows; None: no image's."""
        if images is None or history.shape[1] >= NAMING_WORDS:
            return scores
        rows, columns = len(history), self.to_name.shape[-1]
        said = torch.zeros((rows, columns + 1), dtype=torch.bool, device=history.device)
        said = said.scatter_(1, self.column[history], True)[:, 1:]  # (rows, columns)
        needed = self.to_name[images].repeat_interleave(rows // len(images), 0)
        named = (needed & said.unsqueeze(1)).any(-1)  # (rows, things)
        unnamed = (needed.any(-1) & ~named).any(-1)  # (rows,)
        banned = torch.zeros_like(scores, dtype=torch.bool)
        banned[:, self.end_id] = unnamed
        return scores.masked_fill(banned, -math.inf)


class NoPluralAfterACount:
    """Words with no plural of their own (the noun tree's root "photo" and its mass nouns,
    whose plural slot says the singular) are not said right after a count above one: the
    search offered "two photo" and "there are two photo" for the deep-field photo."""

    def __init__(self, count_ids: Sequence[int], singular_only: torch.Tensor, vocab_size: int):
        device = singular_only.device
        self.is_count = torch.zeros(vocab_size, dtype=torch.bool, device=device)
        self.is_count[list(count_ids)] = True
        self.banned = torch.zeros(vocab_size, dtype=torch.bool, device=device)
        self.banned[singular_only] = True

    def __call__(self, scores: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        if not history.shape[1]:
            return scores
        after_count = self.is_count[history[:, -1]].unsqueeze(1)  # (rows, 1)
        return scores.masked_fill(after_count & self.banned, -math.inf)


class EachNounOnce:
    """A copy model names each thing once ("two dogs", never "a dog next to a dog"), so a noun
    said, singular or plural, is not said again: on photos, a second noun would otherwise
    repeat the first."""

    def __init__(self, noun_of_word: torch.Tensor) -> None:
        # Column 0 gathers the words that are no noun; it is never banned.
        self.column = noun_of_word + 1  # (vocab,)
        self.columns = int(self.column.max()) + 1

    def __call__(self, scores: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        said = torch.zeros(
            (len(history), self.columns), dtype=torch.bool, device=history.device
        ).scatter_(1, self.column[history], True)  # (rows, nouns + 1)
        said[:, 0] = False
        return scores.masked_fill(said[:, self.column], -math.inf)  # (rows, vocab)


def decoding_rules(
    decoder: Decoder,
    *,
    end_id: int,
    banned_ids: Sequence[int] = BANNED_IDS,
    no_repeat_ngram_size: int = 0,
    device: torch.device | str = "cpu",
    taught: TaughtNouns | None = None,
    size_openings: torch.Tensor | None = None,
    to_name: torch.Tensor | None = None,
) -> list[Rule]:
    """The rules every search of `decoder` applies, their tables on `device`. Of the decoder
    they read only `config` and, for a copy model, `noun_singular_ids` and `noun_plural_ids`.
    taught: the words taught to a copy model (the `taught` of the memory the search prepared),
    nouns like the table's; their ids take the vocabulary to taught.word_count. A decoder
    that hedges (noun_tree.py, not while training) says hypernyms too, nouns with ids after
    those. size_openings: (batch,) which size words each image may open with (`size_openings`
    of the search's memory); None: none. to_name: (batch, things, columns) the sure things
    each image's caption names before it ends (`things_to_name` of the memory); None: none."""
    vocab_size = taught.word_count if taught is not None else decoder.config.vocab_size
    hedge = None if getattr(decoder, "training", False) else getattr(decoder, "hedge", None)
    hedge_base = vocab_size
    if hedge is not None:
        vocab_size += hedge.id_count
    rules: list[Rule] = [SpecialTokens(vocab_size, banned_ids, end_id, device)]
    if decoder.config.copy_nouns:
        # Every caption a copy model learned from names an object, and none puts two nouns side
        # by side (a two-word noun is one word). On photos unlike its training images, its
        # sentence can drift into "one above the other" or "bridges bridges bridges"; like the
        # first-word rule, these keep the search among captions of the form it was taught (a
        # mild version of constrained beam search, Anderson et al. 2017).
        noun_of_word = torch.full((vocab_size,), -1, dtype=torch.long, device=device)
        noun_index = torch.arange(decoder.config.copy_nouns, device=device)
        noun_of_word[decoder.noun_singular_ids.to(device)] = noun_index
        noun_of_word[decoder.noun_plural_ids.to(device)] = noun_index
        if taught is not None:
            # A taught word is one more noun, its own column of EachNounOnce, and a two-word
            # one ("coffee grinder") is one word id, so it stays one unit. A taught word the
            # table already has keeps the table's column: it is the same noun.
            count = decoder.config.copy_nouns
            taught_index = torch.arange(count, count + len(taught.words), device=device)
            for ids in (taught.singular_ids.to(device), taught.plural_ids.to(device)):
                fresh = noun_of_word[ids] < 0
                noun_of_word[ids[fresh]] = taught_index[fresh]
        # A learned model's free nouns are said as the person says them ("an orange star and
        # an orange square"): ordinary words here.
        free = getattr(decoder.config, "free_nouns", ())
        noun_of_word[torch.tensor(free, dtype=torch.long, device=device)] = -1
        if hedge is not None:  # each hypernym is one more noun, in its copy column
            count = decoder.config.copy_nouns + (len(taught.words) if taught is not None else 0)
            hedge_index = torch.arange(count, count + len(hedge.words), device=device)
            singular, plural = (ids.to(device) for ids in hedge.word_ids(hedge_base))
            noun_of_word[singular] = hedge_index
            noun_of_word[plural] = hedge_index
            count_ids = getattr(decoder, "count_word_ids", ())
            if count_ids:
                rules.append(
                    NoPluralAfterACount(count_ids, singular[singular == plural], vocab_size)
                )
        # A config without the field (an older one, a stand-in) ends only after a noun.
        end_after_noun = getattr(decoder.config, "end_after_noun", True)
        grammar = CopyGrammar(noun_of_word, end_id, end_after_noun)
        rules += [grammar, EachNounOnce(noun_of_word)]
        size_ids = getattr(decoder, "size_word_ids", ())
        # A model learned from captions that name things the copy path cannot ("a small red
        # circle") says their size words where they do: banned before a copied noun, "small"
        # was never said (BLEU-4 0.222 against 0.305 on scripts/check_learning.py).
        if size_ids and end_after_noun:
            small_ids = getattr(decoder, "small_word_ids", ())
            rules.append(SizeOnlyAfterANoun(size_ids, noun_of_word, size_openings, small_ids))
        if to_name is not None and end_after_noun:
            rules.append(NameTheSureThings(noun_of_word, to_name, end_id))
    # 0 asks for none: then the model's own (a learned model's, DecoderConfig).
    no_repeat_ngram_size = no_repeat_ngram_size or getattr(
        decoder.config, "no_repeat_ngram_size", 0
    )
    if no_repeat_ngram_size > 0:
        rules.append(NoRepeatNgram(no_repeat_ngram_size, end_id))
    return rules


def search_rules(
    decoder: Decoder,
    memory: ImageMemory,
    *,
    end_id: int,
    banned_ids: Sequence[int] = BANNED_IDS,
    no_repeat_ngram_size: int = 0,
    name_things: int = 0,
) -> list[Rule]:
    """`decoding_rules` for a search or sampler over `memory`'s images (decoder.prepare): its
    taught words and, for a copy memory, which size words each image may open with (where
    sizes tell things apart) and the things the model is sure of that each caption names
    before it ends (`name_things` of them)."""
    copy = memory.noun_probs is not None
    return decoding_rules(
        decoder,
        end_id=end_id,
        banned_ids=banned_ids,
        no_repeat_ngram_size=no_repeat_ngram_size,
        device=memory.attention_keys.device,
        taught=memory.taught,
        size_openings=size_openings(memory.noun_probs, memory.hedge) if copy else None,
        to_name=things_to_name(memory.noun_probs, memory.hedge, name_things) if copy else None,
    )


def apply_rules(
    rules: Sequence[Rule],
    scores: torch.Tensor,
    history: torch.Tensor,
    images: torch.Tensor | None = None,
) -> torch.Tensor:
    """(rows, vocab) scores with every rule's banned words at -inf. images: (searching,) the
    batch index of each image whose rows these are, in order, equally many rows each; the
    rules that differ per image (`per_image`) read it."""
    for rule in rules:
        if getattr(rule, "per_image", False):
            scores = rule(scores, history, images)
        else:
            scores = rule(scores, history)
    return scores
