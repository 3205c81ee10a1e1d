"""Learning the person's sentences: fine-tune a model's decoder on the captions they wrote.

    with Library.open() as library:
        result = learn_from_library(captioner, library, progress=print, cancel=event)
    Captioner.load(result.model_dir)       # "<model> + my captions", in the library's folder

The encoder stays frozen, so each photo is encoded once and its features kept in memory; only
the decoder learns, on a copy, so the loaded model is never changed. Words the model did not
know get new rows in its embedding and output layer. Two things keep it from forgetting what
it knew: the decoder is pulled toward its starting weights (L2-SP, Li et al. 2018), and it
stops when the loss on a held-out slice of the person's captions stops falling, keeping the
best epoch. The new model directory is written with `write_dir_atomically`: it appears whole
or not at all, also when learning is cancelled or the disk fills.

This lives in `captioner`, not `training`, because the app may import only `captioner`; it is
plain PyTorch in one function, which the app runs in a QThread (every tensor operation
releases the GIL, and `cancel` is checked between batches, so the caller is never blocked).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from captioner.api import Captioner
from captioner.decoder import Decoder
from captioner.files.checkpoint import write_model_files
from captioner.library.store import Library
from captioner.options import DecodeOptions
from captioner.photos.atomic import write_dir_atomically
from captioner.photos.images import ImageError
from captioner.registry import LEARNED_MODELS_FOLDER
from captioner.vocab import SPECIAL_TOKENS, Vocabulary, tokenize

MODELS_FOLDER = LEARNED_MODELS_FOLDER  # beside the library file: where learned models go
SUFFIX = " + my captions"
# The decoder's tensors with a row per word (rows first), which grow when the person's
# captions bring new words.
WORD_ROWS = ("embedding.weight", "output.weight", "output.bias")
# The length penalties (beam.py's alpha) a learned model may carry as its own: _length_penalty.
LENGTH_PENALTIES = (0.0, 0.5, 1.0, 1.5)


class LearnError(Exception):
    """Learning could not start or its model could not be written; the message says why."""


class LearnCancelled(LearnError):
    """`cancel` was set: nothing was written."""


@dataclass(frozen=True)
class LearnSettings:
    """How to learn. The defaults are those the check (scripts/check_learning.py) measured."""

    max_epochs: int = 40
    patience: int = 4  # epochs without a lower validation loss before stopping
    batch_size: int = 32
    lr: float = 1e-3
    # L2-SP strength: alpha * sum (w - w_start)^2 is added to the mean word loss.
    l2sp: float = 1e-2
    validation_share: float = 0.1  # of the captions, at least one when there are two or more
    min_word_count: int = 1  # a word of the person's seen this often joins the vocabulary
    # The rank of the learned model's path from each cell's raw encoder features (decoder.py,
    # RawAdapter; 0: none), for a model that reads cells as ImageNet classes
    # (semantic_features), which carry little of colour.
    raw_feature_rank: int = 64
    seed: int = 0


@dataclass(frozen=True)
class LearnProgress:
    """What the progress bar shows."""

    fraction: float  # 0..1 of the whole run (encoding, then epochs up to max_epochs)
    seconds_left: float | None  # None until there is something to estimate from
    stage: str  # "encoding" or "learning"
    epoch: int = 0
    validation_loss: float | None = None


@dataclass(frozen=True)
class LearnResult:
    model_dir: Path
    captions: int  # the person's captions learned from (training and validation)
    validation_captions: int
    skipped: int  # photos that no longer exist or cannot be read
    new_words: tuple[str, ...]
    epochs: int  # epochs run (the best one is kept)
    start_loss: float  # validation loss (per word) of the starting model
    best_loss: float  # ... and of the learned one
    train_losses: tuple[float, ...]  # mean training word loss per epoch


def learned_model_dir(library: Library, model_name: str) -> Path:
    """Where a model learned from `library` on top of `model_name` goes."""
    safe = model_name.replace(os.sep, "_").replace("/", "_")
    return Path(library.path).parent / MODELS_FOLDER / f"{safe}{SUFFIX}"


def person_captions(library: Library) -> list[tuple[str, str]]:
    """(photo path, caption) of every photo whose caption the person wrote or accepted."""
    entries = library.search(filter="checked", captions=False)
    return [(entry.path, entry.person.text) for entry in entries if entry.person is not None]


def learn_from_library(
    captioner: Captioner,
    library: Library,
    *,
    out_dir: str | os.PathLike | None = None,
    settings: LearnSettings = LearnSettings(),
    progress: Callable[[LearnProgress], object] | None = None,
    cancel: threading.Event | None = None,
) -> LearnResult:
    """Fine-tune `captioner`'s decoder on the person's captions in `library` and write the
    result to `out_dir` (default `learned_model_dir`). Raises LearnError (no captions, none
    readable, the model cannot be written), LearnCancelled."""
    examples = person_captions(library)
    if not examples:
        raise LearnError(
            "the library holds none of your captions: write or accept some captions first"
        )
    target = Path(out_dir) if out_dir is not None else learned_model_dir(library, captioner.name)
    return learn(captioner, examples, target, settings=settings, progress=progress, cancel=cancel)


def learn(
    captioner: Captioner,
    examples: Sequence[tuple[str | os.PathLike, str]],
    out_dir: str | os.PathLike,
    *,
    settings: LearnSettings = LearnSettings(),
    progress: Callable[[LearnProgress], object] | None = None,
    cancel: threading.Event | None = None,
) -> LearnResult:
    """Fine-tune on (photo path, caption) pairs; see `learn_from_library`."""
    out_dir = Path(out_dir)
    if not examples:
        raise LearnError("no captions to learn from")
    report = _Reporter(progress, cancel)
    features, captions, skipped = _encode(captioner, examples, report)
    if not captions:
        raise LearnError(f"none of the {len(examples)} captioned photos can be read any more")
    vocab, new_words = _grown_vocabulary(captioner.vocab, captions, settings.min_word_count)
    ids = [vocab.encode(caption) for caption in captions]
    end_after_noun = _all_name_a_noun(captioner.decoder, ids)
    torch.manual_seed(settings.seed)  # the raw-feature path's first layer is drawn at random
    start = _grown_decoder(
        captioner.decoder,
        len(vocab),
        raw_feature_rank=_raw_feature_rank(captioner.decoder, settings),
        end_after_noun=end_after_noun,
        free_nouns=_free_nouns(captioner.decoder, ids, end_after_noun),
        no_repeat_ngram_size=_no_repeat_ngram_size(captioner.decoder, end_after_noun),
    )
    train_rows, val_rows = _split(len(ids), settings)
    known = captioner.decoder.config.vocab_size
    decoder, history = _fine_tune(
        start, known, features, ids, train_rows, val_rows, settings, report
    )
    learned = Captioner(
        captioner.encoder,
        decoder,
        vocab,
        name=out_dir.name,
        device=captioner.device,
        backend="torch",  # only its files are wanted; the ONNX export would be wasted
    )
    decoder.config = dataclasses.replace(
        decoder.config, length_penalty=_length_penalty(learned, features, ids, val_rows)
    )
    result = LearnResult(
        model_dir=out_dir,
        captions=len(captions),
        validation_captions=len(val_rows),
        skipped=skipped,
        new_words=tuple(new_words),
        epochs=len(history.train_losses),
        start_loss=history.start_loss,
        best_loss=history.best_loss,
        train_losses=tuple(history.train_losses),
    )
    when = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    provenance = {
        "from_model": captioner.name,
        "from_identity": captioner.identity,
        "captions": result.captions,
        "validation_captions": result.validation_captions,
        "new_words": list(new_words),
        "time": when.isoformat(),
        "settings": dataclasses.asdict(settings),
    }
    config, vocab_out, tensors = learned.model_files({"learned": provenance})
    card = _model_card(out_dir.name, captioner.name, result, when, settings)
    report.check_cancel()

    def write(folder: Path) -> None:
        write_model_files(folder, config, vocab_out, tensors)
        (folder / "README.md").write_text(card, encoding="utf-8")
        report.check_cancel()  # a cancel during the write still leaves nothing

    try:
        write_dir_atomically(out_dir, write)
    except OSError as error:
        reason = error.strerror or str(error)
        raise LearnError(f"could not write the new model to {out_dir}: {reason}") from error
    report(LearnProgress(1.0, 0.0, "learning", result.epochs, result.best_loss))
    return result


class _Reporter:
    """Progress with a time-left estimate, and the cancel check."""

    def __init__(
        self, callback: Callable[[LearnProgress], object] | None, cancel: threading.Event | None
    ) -> None:
        self.callback, self.cancel = callback, cancel
        self.started = time.monotonic()

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise LearnCancelled("learning cancelled; nothing was written")

    def __call__(self, update: LearnProgress) -> None:
        self.check_cancel()
        if self.callback is not None:
            self.callback(update)

    def estimate(self, fraction: float) -> float | None:
        """Seconds left, assuming the rest goes as fast as what is done."""
        if fraction <= 0.0:
            return None
        return (time.monotonic() - self.started) * (1.0 - fraction) / fraction


# Share of the progress bar for encoding: on 2 CPU cores a photo takes about as long to
# encode as an epoch takes to learn 40 captions, so with the default 40 epochs, a fifth.
ENCODE_SHARE = 0.2


def _encode(
    captioner: Captioner, examples: Sequence[tuple[str | os.PathLike, str]], report: _Reporter
) -> tuple[torch.Tensor, list[str], int]:
    """Features (photos, gh, gw, encoder_dim) of the readable photos, their captions, and how
    many were skipped (gone, or unreadable)."""
    chunks, captions, skipped = [], [], 0
    step = 8  # photos per encoder call: small enough to check cancel often
    for first in range(0, len(examples), step):
        pixels, kept = [], []
        for path, caption in examples[first : first + step]:
            if not tokenize(caption):
                skipped += 1  # no word to learn
                continue
            try:
                pixels.append(captioner.preprocess(path))
            except (ImageError, OSError):
                skipped += 1
                continue
            kept.append(caption)
        if pixels:
            chunks.append(captioner.encode(torch.stack(pixels)).float().cpu())
            captions += kept
        done = min(first + step, len(examples)) / len(examples) * ENCODE_SHARE
        report(LearnProgress(done, report.estimate(done) if first else None, "encoding"))
    features = torch.cat(chunks) if chunks else torch.empty(0)  # (photos, gh, gw, encoder_dim)
    return features, captions, skipped


def _grown_vocabulary(
    vocab: Vocabulary, captions: list[str], min_count: int
) -> tuple[Vocabulary, list[str]]:
    """The model's vocabulary with the person's new words appended (ids of known words stay)."""
    counts: dict[str, int] = {}
    for caption in captions:
        for token in vocab.join_phrases(tokenize(caption)):
            counts[token] = counts.get(token, 0) + 1
    new = [w for w, n in counts.items() if n >= min_count and w not in vocab.stoi]
    new = [w for w in new if w not in SPECIAL_TOKENS]
    return Vocabulary(vocab.itos[len(SPECIAL_TOKENS) :] + new), new


def _raw_feature_rank(decoder: Decoder, settings: LearnSettings) -> int:
    """The learned model's raw-feature path: the one it has, else a new one when it reads cells
    as ImageNet classes (a decoder reading raw features already sees what the path adds)."""
    if decoder.config.raw_feature_rank or not decoder.config.semantic_features:
        return decoder.config.raw_feature_rank
    return settings.raw_feature_rank


def _all_name_a_noun(decoder: Decoder, ids: list[list[int]]) -> bool:
    """Whether a copy model may keep ending captions only after a noun it copies: every one
    of the person's captions names one (none without a copy path)."""
    if decoder.copy_head is None:
        return decoder.config.end_after_noun
    nouns = set(decoder.noun_singular_ids.tolist()) | set(decoder.noun_plural_ids.tolist())
    return decoder.config.end_after_noun and all(nouns & set(caption) for caption in ids)


def _free_nouns(decoder: Decoder, ids: list[list[int]], end_after_noun: bool) -> tuple[int, ...]:
    """The table nouns a learned copy model says from its vocabulary too: when the person's
    captions name things the copy path cannot (not `end_after_noun`), the table nouns they
    use, as they use them ("an orange star": the ImageNet classifier sees no fruit there)."""
    if decoder.copy_head is None or end_after_noun:
        return tuple(decoder.config.free_nouns)
    nouns = set(decoder.noun_singular_ids.tolist()) | set(decoder.noun_plural_ids.tolist())
    used = {word for caption in ids for word in caption} & nouns
    return tuple(sorted(used | set(decoder.config.free_nouns)))


def _no_repeat_ngram_size(decoder: Decoder, end_after_noun: bool) -> int:
    """The learned model's own no-repeat n-gram size: the starting model's, else 3 when the
    person's captions name things the copy path cannot. EachNounOnce keeps a copy model from
    naming a thing twice, but the person's new nouns are not the table's."""
    if decoder.config.no_repeat_ngram_size or end_after_noun or decoder.copy_head is None:
        return decoder.config.no_repeat_ngram_size
    return 3


def _grown_decoder(decoder: Decoder, vocab_size: int, **config_changes) -> Decoder:
    """A copy of `decoder` with `vocab_size` words and `config_changes`: new words start as
    the average known word (embedding and output row), so they neither dominate nor vanish
    at the first step; a new raw-feature path starts at zero (decoder.RawAdapter), so the
    copy captions as `decoder` does until it learns."""
    old = decoder.config.vocab_size
    config = dataclasses.replace(decoder.config, vocab_size=vocab_size, **config_changes)
    grown = Decoder(config)
    state = grown.state_dict()  # the raw-feature path's starting weights, if it is new
    state.update({k: v.detach().clone() for k, v in decoder.state_dict().items()})
    for name in WORD_ROWS:
        rows = state[name]  # (old, ...) known words
        mean = rows[len(SPECIAL_TOKENS) :].mean(0, keepdim=True)
        state[name] = torch.cat([rows, mean.expand(vocab_size - old, *rows.shape[1:])])
    grown.load_state_dict(state)
    return grown.to(next(decoder.parameters()).device)


def _length_penalty(
    learned: Captioner, features: torch.Tensor, ids: list[list[int]], rows: list[int]
) -> float:
    """Of LENGTH_PENALTIES, the one whose beam-search captions of the held-out photos are on
    average as long as the person's captions of them (the smallest on a tie; 0 when none are
    held out). Beam search favours short captions; a person's may be longer (check_learning.py:
    6.9 words against 8.8, BLEU-4 0.366 at 0 and 0.406 at 1.0)."""
    if not rows:
        return 0.0
    wanted = sum(len(ids[row]) - 2 for row in rows) / len(rows)  # without <start> and <end>
    held_out = features[rows]

    def length_gap(alpha: float) -> float:
        results = learned.decode(held_out, DecodeOptions(length_penalty=alpha))
        return abs(sum(len(r.tokens) for r in results) / len(results) - wanted)

    return min(LENGTH_PENALTIES, key=length_gap)


def _split(count: int, settings: LearnSettings) -> tuple[list[int], list[int]]:
    """Training and validation rows: a seeded shuffle, so the same library gives the same split."""
    rows = list(range(count))
    random.Random(settings.seed).shuffle(rows)
    held = 0 if count < 2 else max(1, round(count * settings.validation_share))
    return rows[held:], rows[:held]


@dataclass
class _History:
    start_loss: float
    best_loss: float
    train_losses: list[float]


def _padded(ids: list[list[int]], device: torch.device) -> torch.Tensor:
    """(captions, longest) word ids, <pad> after each caption's <end>."""
    batch = torch.full((len(ids), max(map(len, ids))), Vocabulary.pad_id, dtype=torch.long)
    for row, caption in enumerate(ids):
        batch[row, : len(caption)] = torch.tensor(caption)
    return batch.to(device)


def _word_loss(
    decoder: Decoder, features: torch.Tensor, captions: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy of each next word (teacher forcing) and the number of words.
    features (batch, gh, gw, encoder_dim), captions (batch, T + 1)."""
    logits, _ = decoder(features, captions)  # (batch, T, vocab)
    targets = captions[:, 1:]
    loss = F.cross_entropy(
        logits.transpose(1, 2).float(), targets, ignore_index=Vocabulary.pad_id, reduction="sum"
    )
    return loss, int((targets != Vocabulary.pad_id).sum())


@torch.no_grad()
def _validation_loss(
    decoder: Decoder, features: torch.Tensor, ids: list[list[int]], rows: list[int], batch: int
) -> float:
    """Mean per-word loss of the held-out captions (nan when none are held out)."""
    if not rows:
        return math.nan
    decoder.eval()
    device = next(decoder.parameters()).device
    total, words = 0.0, 0
    for first in range(0, len(rows), batch):
        part = rows[first : first + batch]
        loss, count = _word_loss(
            decoder, features[part].to(device), _padded([ids[r] for r in part], device)
        )
        total, words = total + float(loss.detach()), words + count
    return total / words


def _fine_tune(
    decoder: Decoder,
    known_words: int,
    features: torch.Tensor,
    ids: list[list[int]],
    train_rows: list[int],
    val_rows: list[int],
    settings: LearnSettings,
    report: _Reporter,
) -> tuple[Decoder, _History]:
    """Adam on the word loss plus L2-SP; returns the decoder of the best validation epoch
    (the last epoch's when nothing is held out). The anchor is the starting weights; a new
    word's rows (from `known_words` on) have no starting point, so they are left free. A new
    raw-feature path is anchored at its start, whose last layer is zero: pulled toward adding
    nothing, it learns only what the captions need (left free, it measured BLEU-4 0.227
    against 0.297 on the check)."""
    torch.manual_seed(settings.seed)
    device = next(decoder.parameters()).device
    known = {
        name: known_words if name in WORD_ROWS else p.shape[0]
        for name, p in decoder.named_parameters()
    }
    anchor = {name: p.detach()[: known[name]].clone() for name, p in decoder.named_parameters()}
    trainable = [p for p in decoder.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=settings.lr)
    start_loss = _validation_loss(decoder, features, ids, val_rows, settings.batch_size)
    # With captions held out, the start is a candidate too: learning that never beats it on
    # them gives back the starting weights.
    best_state = {k: v.detach().clone() for k, v in decoder.state_dict().items()}
    best_loss, stale = start_loss, 0
    train_losses: list[float] = []
    order = random.Random(settings.seed)
    for epoch in range(1, settings.max_epochs + 1):
        decoder.train()
        rows = list(train_rows)
        order.shuffle(rows)
        total, words = 0.0, 0
        for first in range(0, len(rows), settings.batch_size):
            report.check_cancel()
            part = rows[first : first + settings.batch_size]
            loss, count = _word_loss(
                decoder, features[part].to(device), _padded([ids[r] for r in part], device)
            )
            drift = sum(
                ((p[: known[n]] - anchor[n]) ** 2).sum()
                for n, p in decoder.named_parameters()
                if p.requires_grad
            )
            optimizer.zero_grad()
            (loss / count + settings.l2sp * drift).backward()
            optimizer.step()
            total, words = total + float(loss.detach()), words + count
        train_losses.append(total / words)
        val_loss = _validation_loss(decoder, features, ids, val_rows, settings.batch_size)
        if not val_rows or val_loss < best_loss:
            best_loss, stale = val_loss, 0
            best_state = {k: v.detach().clone() for k, v in decoder.state_dict().items()}
        else:
            stale += 1
        done = ENCODE_SHARE + (1.0 - ENCODE_SHARE) * epoch / settings.max_epochs
        report(LearnProgress(done, report.estimate(done), "learning", epoch, val_loss))
        if stale >= settings.patience:
            break
    decoder.load_state_dict(best_state)
    decoder.eval()
    return decoder, _History(start_loss, best_loss, train_losses)


def _model_card(
    name: str, source: str, result: LearnResult, when: datetime.datetime, settings: LearnSettings
) -> str:
    """README.md of the learned model: what it learned from, when, and how."""
    new = ", ".join(result.new_words[:40]) + (" ..." if len(result.new_words) > 40 else "")
    lines = [
        f"# {name}",
        "",
        f"The model **{source}**, its decoder fine-tuned on {result.captions} of your captions "
        f"from the caption library on {when:%Y-%m-%d %H:%M} UTC "
        f"({result.captions - result.validation_captions} learned from, "
        f"{result.validation_captions} held out to decide when to stop).",
        "",
        f"- Started from: {source} (unchanged; its encoder is this model's, frozen).",
        f"- Photos skipped (gone or unreadable): {result.skipped}.",
        f"- New words ({len(result.new_words)}): {new or 'none'}.",
        f"- Epochs: {result.epochs}; loss per word on the held-out captions: "
        f"{result.start_loss:.3f} before, {result.best_loss:.3f} after.",
        f"- Kept close to {source}'s weights (L2-SP, strength {settings.l2sp:g}) so that it "
        "still says what it said of other photos; learning rate "
        f"{settings.lr:g}, batch {settings.batch_size}.",
        "",
        f"It knows what {source} knew, and your sentences from those {result.captions} "
        "photos; it has seen nothing else of yours.",
        "",
    ]
    return "\n".join(lines)
