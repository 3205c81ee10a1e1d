"""`captioner-train`: teacher-forced training of the attention decoder on caption data.

    captioner-train --data captions_train2017.json --images train2017/ \
        --val-data captions_val2017.json --val-images val2017/ --out runs/coco

    torchrun --nproc-per-node 4 -m training.train ...   # several GPUs or machines (DDP)

    captioner-train ... --init-from runs/coco/best --objective scst --out runs/coco-scst

The second phase, self-critical sequence training (training/objectives.py), starts from a
cross-entropy model and optimises the CIDEr-D of the model's own sampled captions.

A run directory holds `best/` and `last/` (model directories `Captioner.load` reads; `last/`
also holds the optimizer and RNG state for `--resume`), `log.jsonl` (one line per epoch) and
`curves.png`. A directory holding a run is continued with `--resume` or started again with
`--overwrite`, never either by default.

The shape is torchvision's references/: `main(argv)` parses the command line into a frozen
`TrainRun` (training/train_run.py), builds the model, the data and the objective, then `fit`
alternates `train_one_epoch` and `evaluate`, saving after each epoch.
"""

from __future__ import annotations

import itertools
import json
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from captioner import Captioner
from captioner.decoder import Decoder
from captioner.device import resolve_device
from captioner.distributed import Distributed
from captioner.encoder import Encoder
from captioner.nouns import DEFAULT_WEIGHTING, NounTable
from captioner.options import DecodeOptions
from captioner.pipeline import PhotoBatch, caption_batches
from captioner.vocab import Vocabulary
from training.batches import BucketBatchSampler, CaptionPairs, collate
from training.cider import CiderD
from training.curves import plot_curves
from training.dataset import data_record, read_data
from training.features import CacheError, OnTheFlyModel, model_inputs
from training.metrics import coco_metrics
from training.model import (
    CaptionModel,
    caption_loss,
    decoder_config,
    encoder_config,
    word_count,
)
from training.objectives import CrossEntropy, SelfCritical
from training.readers import DatasetFormatError, Sample
from training.run_dir import append_log, clear_run, truncate_log
from training.scst import CaptionSampler, MixedReward, Photos, collapse_warnings, reference_ids
from training.state import TrainingState, load_training_state, save_model, save_training_state
from training.stop import StopRequest
from training.train_run import TrainRun, build_parser, parse_args, resolve_run

Objective = CrossEntropy | SelfCritical


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, given = parse_args(parser, argv)
    run = resolve_run(parser, args, given)
    try:
        world = Distributed.from_environment()
    except ValueError as err:
        parser.error(str(err))
    device = world.local_device(resolve_device(run.device))
    world.start(device)
    log = print if world.main else (lambda *a, **k: None)
    torch.manual_seed(run.seed)
    random.seed(run.seed)

    try:
        train_samples, val_samples = read_data(run, log)
    except (DatasetFormatError, FileNotFoundError) as err:
        print(f"captioner-train: {err}", file=sys.stderr)
        return 2
    if run.resume and not run.resuming:
        log(f"no checkpoint in {run.last}; starting a new run")
    encoder, start = build_encoder(run, device)
    try:
        load, train_samples, val_samples = model_inputs(
            encoder, train_samples, val_samples, run, world, device
        )
    except CacheError as err:
        print(f"captioner-train: error: {err}", file=sys.stderr)
        return 1
    log(f"{len(train_samples)} training images, {len(val_samples)} validation images")
    model, captioner = build_model(run, encoder, start, train_samples, device, log)
    data = build_data(run, captioner, load, train_samples, val_samples, world, log)
    objective = build_objective(run, model, data, captioner.vocab, world, device)
    status = fit(run, model, captioner, data, objective, world, device)
    if status == 0:
        world.stop()
    return status


def build_encoder(run: TrainRun, device: torch.device) -> tuple[Encoder, Captioner | None]:
    """The encoder, and the model the run starts from (last/ or --init-from's; None: new
    weights), whose modules train on."""
    if run.start is None:
        return Encoder(encoder_config(run)), None
    start = Captioner.load(run.start, device=device, backend="torch")
    # Validation scores the model's own captions, as a new run's does: the hedging a loaded
    # model turns on would stay on its decoder, so a resumed run picked its best epoch by other
    # captions than the run it continues.
    start.set_hedging(None)
    if not run.resuming:  # --init-from: which blocks train is this run's choice
        start.encoder.fine_tune(run.fine_tune_blocks)
    return start.encoder, start


def build_model(
    run: TrainRun,
    encoder: Encoder,
    start: Captioner | None,
    train_samples: list[Sample],
    device: torch.device,
    log: Callable[[str], None],
) -> tuple[CaptionModel, Captioner]:
    """The module that trains, and the Captioner of the same encoder and decoder that
    validates and saves it."""
    if start:
        vocab, decoder = start.vocab, start.decoder
    else:
        vocab, decoder = new_decoder(run, encoder, train_samples)
    on_the_fly = run.no_cache and not encoder.trainable
    model = (OnTheFlyModel if on_the_fly else CaptionModel)(encoder, decoder).to(device)
    log(
        f"vocabulary: {len(vocab)} words (min count {run.min_word_count}); "
        f"{decoder.config.cell} decoder, {sum(p.numel() for p in decoder.parameters()):,} weights"
    )
    captioner = Captioner(encoder, decoder, vocab, name=run.name or run.out.name, device=device)
    return model, captioner


def new_decoder(
    run: TrainRun, encoder: Encoder, train_samples: list[Sample]
) -> tuple[Vocabulary, Decoder]:
    """A new run's vocabulary and decoder. The words are those of the photos that remain (an
    unreadable photo's captions bring none); with --copy-nouns every noun of the table joins
    them, whether or not a caption says it, and the decoder reads the encoder's classifier."""
    vocab = Vocabulary.from_tokens(
        (tokens for s in train_samples for tokens in s.tokens), run.min_word_count
    )
    if not run.copy_nouns:
        return vocab, Decoder(decoder_config(run, len(vocab), encoder.encoder_dim, 0))
    table = NounTable.load()
    vocab = Vocabulary(dict.fromkeys([*vocab.itos[4:], *table.nouns, *table.plurals]))
    decoder = Decoder(decoder_config(run, len(vocab), encoder.encoder_dim, len(table.nouns)))
    decoder.attach_noun_head(
        *encoder.imagenet_classifier(),
        table.class_to_noun_matrix(DEFAULT_WEIGHTING),
        torch.tensor([vocab.stoi[noun] for noun in table.nouns]),
        torch.tensor([vocab.stoi[plural] for plural in table.plurals]),
    )
    return vocab, decoder


@dataclass(frozen=True)
class TrainData:
    """What a run trains and validates on."""

    train_samples: list[Sample]
    loader: DataLoader  # batches of (inputs, captions), or with SCST of (inputs, image indices)
    sampler: BucketBatchSampler  # the loader's batches, epoch by epoch
    val_samples: list[Sample]
    val_pairs: CaptionPairs


def build_data(
    run: TrainRun,
    captioner: Captioner,
    load: Callable[[Path], torch.Tensor],
    train_samples: list[Sample],
    val_samples: list[Sample],
    world: Distributed,
    log: Callable[[str], None],
) -> TrainData:
    """The training batches and the validation pairs, in `captioner`'s vocabulary; `load`
    turns a photo into the model's input (features or pixels)."""
    vocab = captioner.vocab
    train_pairs = CaptionPairs(train_samples, vocab, load, run.max_caption_length)
    if train_pairs.clipped:
        log(f"{train_pairs.clipped} captions longer than {run.max_caption_length} words clipped")
    val_pairs = CaptionPairs(val_samples, vocab, load, run.max_caption_length)
    # SCST reads each image once per epoch, and draws its captions itself.
    scst = run.objective == "scst"
    train_set = Photos(train_samples, load) if scst else train_pairs
    sampler = BucketBatchSampler(
        [1] * len(train_set) if scst else train_pairs.lengths(),
        run.batch_size,
        seed=run.seed,
        rank=world.rank,
        world_size=world.world_size,
    )
    # Cached features load faster in-process; photos are decoded in worker processes.
    reads_pixels = captioner.encoder.trainable or run.no_cache
    # Loaders get their own generator: drawing their seed from the global RNG would shift the
    # dropout masks whenever a run builds its cache or resumes, and break exact resumption.
    loader = DataLoader(
        train_set, batch_sampler=sampler, collate_fn=None if scst else collate,
        num_workers=run.workers if reads_pixels else 0, generator=torch.Generator(),
    )  # fmt: skip
    return TrainData(train_samples, loader, sampler, val_samples, val_pairs)


def build_objective(
    run: TrainRun,
    model: CaptionModel,
    data: TrainData,
    vocab: Vocabulary,
    world: Distributed,
    device: torch.device,
) -> Objective:
    """The loss of a batch: cross-entropy, or SCST's rewarded against the training captions.
    Under torchrun, what runs the forward pass is wrapped in DistributedDataParallel."""
    scst = run.objective == "scst"
    trained = CaptionSampler(model) if scst else model
    if world.launched:
        trained = DistributedDataParallel(
            trained, device_ids=[device.index] if device.type == "cuda" else None
        )
    if not scst:
        return CrossEntropy(trained, world, run.attention_lambda)
    references = reference_ids(data.train_samples, vocab)
    scorer = CiderD(references)
    if run.scst_bleu_weight:
        scorer = MixedReward(scorer, references, run.scst_bleu_weight)
    return SelfCritical(
        trained, model, scorer, world,
        num_samples=run.scst_samples, baseline=run.scst_baseline, max_length=run.scst_max_length,
    )  # fmt: skip


def fit(
    run: TrainRun,
    model: CaptionModel,
    captioner: Captioner,
    data: TrainData,
    objective: Objective,
    world: Distributed,
    device: torch.device,
) -> int:
    """Train from where the run stands to its last epoch or an early stop, validating and
    saving after each epoch; returns the exit status, 130 when Ctrl-C stopped it."""
    log = print if world.main else (lambda *a, **k: None)
    optimizer = torch.optim.Adam(model.parameter_groups(run.lr, run.encoder_lr))
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=0.5, patience=run.lr_patience
    )
    state = TrainingState()
    if run.resuming:
        state = load_training_state(run.last, optimizer, scheduler)
        log(f"resuming from epoch {state.epoch + 1}, batch {state.batch}")
        truncate_log(run.out / "log.jsonl", state.epoch)
    # Without validation data the best epoch is the one of least training loss, scored as the
    # loss negated so that higher is better, as for the metrics; it is never called a metric.
    validated = bool(data.val_samples)
    selected_by = run.metric if validated else "training loss"
    save = partial(save_run, run=run, captioner=captioner, state=state, data=data_record(run),
                   optimizer=optimizer, scheduler=scheduler, validated=validated)  # fmt: skip

    if world.main and not run.resuming:
        # Only now, with the data read and cached: a failure before leaves the old run whole.
        clear_run(run.out)
    run.out.mkdir(parents=True, exist_ok=True)
    for _ in range(state.epoch, run.epochs):
        row = train_one_epoch(
            objective, model, optimizer, data.loader, data.sampler, state, world, run, device
        )
        if row is None:
            if world.main:
                save(run.last)
                log(f"interrupted: saved {run.last}; continue with --resume")
            return 130
        if world.main:
            row.update(
                evaluate(model, captioner, data.val_pairs, data.val_samples,
                         batch_size=run.batch_size, beam_size=run.val_beam_size,
                         max_images=run.val_max_images)
            )  # fmt: skip
        score = world.sum(row.get(run.metric, -state.train_loss) if world.main else 0.0)
        row["lr"] = optimizer.param_groups[0]["lr"]
        scheduler.step(score)
        improved = state.end_epoch(score)
        if world.main:
            if improved:
                save(run.out / "best", resumable=False)
            save(run.last)
            report_epoch(run, row)
        world.barrier()
        if state.stale_epochs >= run.patience:
            log(f"early stop: no {selected_by} improvement for {run.patience} epochs")
            break
    if validated:
        log(f"best {run.metric} {state.best:.4f} (epoch {state.best_epoch}) in {run.out}")
    else:
        log(
            f"best training loss {-state.best:.4f} (epoch {state.best_epoch}; no validation "
            f"data) in {run.out}"
        )
    return 0


def report_epoch(run: TrainRun, row: dict) -> None:
    """An epoch's line in log.jsonl and on the terminal, the curves, and SCST's warnings."""
    append_log(run.out, row)
    plot_curves(run.out)
    if run.objective == "scst":
        for warning in collapse_warnings(read_log(run.out)):
            print(f"captioner-train: warning: {warning}", file=sys.stderr)
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))


def train_one_epoch(
    objective: Objective,
    model: CaptionModel,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    sampler: BucketBatchSampler,
    state: TrainingState,
    world: Distributed,
    run: TrainRun,
    device: torch.device,
) -> dict | None:
    """Train the epoch `state` is in, from the batch it is at; returns the epoch's log row, or
    None when Ctrl-C stopped it (after a whole batch, so `state` is where to resume).

    `state`'s loss is the objective's per token: cross-entropy per word, or SCST's.
    """
    epoch = state.epoch
    sampler.set_epoch(epoch, skip_batches=state.batch)
    model.train()
    # A resumed epoch's rate counts only the batches run since this process started it.
    started, tokens_before = time.perf_counter(), state.tokens
    bar = tqdm(
        total=len(sampler),
        initial=state.batch,
        desc=f"epoch {epoch + 1}/{run.epochs}",
        disable=run.no_progress or not world.main,
        unit="batch",
    )
    interrupted = False
    with StopRequest() as stop:
        for index, batch in enumerate(loader, start=state.batch):
            loss, summed, global_tokens = objective(batch, device)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), run.grad_clip)
            optimizer.step()
            state.loss_sum += world.sum(summed)
            state.tokens += global_tokens
            state.batch = index + 1
            elapsed = time.perf_counter() - started
            bar.set_postfix(
                loss=f"{state.train_loss:.3f}",
                tok_s=f"{(state.tokens - tokens_before) / max(elapsed, 1e-9):,.0f}",
            )
            bar.update(1)
            interrupted = world.sum(float(stop.requested)) > 0  # all processes agree
            if interrupted:
                break
    bar.close()
    if interrupted:
        return None
    tokens_per_s = (state.tokens - tokens_before) / (time.perf_counter() - started)
    return {
        "epoch": epoch + 1,
        "train_loss": round(state.train_loss, 6),
        "train_tokens_per_s": round(tokens_per_s, 1),
        **objective.epoch_row(),
    }


@torch.no_grad()
def evaluate(
    model: CaptionModel,
    captioner: Captioner,
    val_pairs: CaptionPairs,
    val_samples: list[Sample],
    *,
    batch_size: int,
    beam_size: int,
    max_images: int,
) -> dict:
    """Teacher-forced loss on every val caption, and COCO metrics of beam-searched captions of
    the first `max_images` photos. `captioner` holds the model's encoder and decoder."""
    if not val_samples:
        return {}
    device = captioner.device
    model.eval()
    loader = DataLoader(
        val_pairs, batch_size=batch_size, collate_fn=collate, generator=torch.Generator()
    )
    loss_sum, tokens = 0.0, 0
    for inputs, captions in loader:
        inputs, captions = inputs.to(device), captions.to(device)
        logits, alphas = model(inputs, captions)
        cross_entropy, _ = caption_loss(logits, alphas, captions, 0.0)
        loss_sum += cross_entropy.item()
        tokens += word_count(captions)

    samples = val_samples[:max_images]

    def batches() -> Iterator[PhotoBatch]:  # each made while the engine decodes the one before
        for start in range(0, len(samples), batch_size):
            chunk = samples[start : start + batch_size]
            inputs = torch.stack([val_pairs.load(s.image_path) for s in chunk]).to(device)
            names = [str(s.image_path) for s in chunk]
            yield PhotoBatch.ready(names, features=model.features(inputs))

    results = caption_batches(captioner, batches(), DecodeOptions(beam_size=beam_size))
    captions = itertools.chain.from_iterable(results)
    candidates = {s.image_id: r.text for s, r in zip(samples, captions, strict=True)}
    references = {s.image_id: list(s.captions) for s in samples}
    metrics = coco_metrics(references, candidates, meteor=False)
    model.train()
    return {
        "val_loss": round(loss_sum / max(tokens, 1), 6),
        **{k: round(v, 6) for k, v in metrics.items()},
    }


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def save_run(
    directory: Path,
    *,
    run: TrainRun,
    captioner: Captioner,
    state: TrainingState,
    data: dict,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau,
    resumable: bool = True,
    validated: bool = True,
) -> None:
    """The model in `directory` (best/, last/), with where training stood in its config.json;
    `resumable` adds what --resume reads (last/). Without validation data (`validated` False)
    no metric was measured, and none is recorded: the best score is a negated training loss."""
    score = {run.metric: state.best} if validated else {}
    record = {"epoch": state.epoch, "best_epoch": state.best_epoch, **score, "data": data}
    add_state = partial(save_training_state, optimizer=optimizer, scheduler=scheduler,
                        state=state, options=run.recorded_options())  # fmt: skip
    save_model(directory, captioner, record, add_state if resumable else None)


if __name__ == "__main__":
    sys.exit(main())
