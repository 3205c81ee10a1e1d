"""`captioner-train`: teacher-forced training of the attention decoder on caption data.

    captioner-train --data captions_train2017.json --images train2017/ \
        --val-data captions_val2017.json --val-images val2017/ --out runs/coco

    torchrun --nproc-per-node 4 -m training.train ...   # several GPUs or machines (DDP)

    captioner-train ... --init-from runs/coco/best --objective scst --out runs/coco-scst

The second phase, self-critical sequence training (training/scst.py), starts from a
cross-entropy model and optimises the CIDEr-D of the model's own sampled captions.

A run directory holds `best/` and `last/` (model directories `Captioner.load` reads; `last/`
also holds the optimizer and RNG state for `--resume`), `log.jsonl` (one line per epoch) and
`curves.png`. A directory holding a run is continued with `--resume` or started again with
`--overwrite`, never either by default.

The shape is torchvision's references/: `main(argv)` parses, sets up (device, processes, data,
model, optimizer), then alternates `train_one_epoch` and `evaluate`, saving after each epoch.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from captioner import Captioner
from captioner.cli.args import add_batch_size_argument, add_device_argument, add_workers_argument
from captioner.decoder import GATE_BLOCKS, START_STATES, Decoder
from captioner.device import resolve_device
from captioner.distributed import Distributed
from captioner.encoder import EFFICIENTNET_LITE, Encoder
from captioner.nouns import DEFAULT_WEIGHTING, NounTable
from captioner.options import DecodeOptions
from captioner.photos.images import load_image
from captioner.pipeline import PhotoBatch, caption_batches
from captioner.vocab import Vocabulary
from training.batches import BucketBatchSampler, CaptionPairs, collate
from training.cider import CiderD
from training.curves import plot_curves
from training.dataset import data_record, read_data
from training.features import (
    CacheBuiltElsewhereError,
    CacheError,
    FeatureCache,
    OnTheFlyModel,
    default_cache_root,
)
from training.metrics import coco_metrics
from training.model import (
    MODEL_OPTIONS,
    CaptionModel,
    caption_loss,
    config_default,
    decoder_config,
    encoder_config,
    mixed_precision,
    model_option_values,
    word_count,
)
from training.readers import FORMATS, DatasetFormatError, Sample
from training.run_dir import KEPT_OPTIONS, append_log, check_run_dir, clear_run, truncate_log
from training.scst import (
    BASELINES,
    CaptionSampler,
    MixedReward,
    Photos,
    SelfCritical,
    collapse_warnings,
    reference_ids,
)
from training.state import (
    STATE_JSON,
    TrainingState,
    load_training_state,
    save_model,
    save_training_state,
)
from training.stop import StopRequest


class HelpWithDefaults(argparse.HelpFormatter):
    """--help adds each option's default, unless there is none to show (None, an unset flag)
    or its help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            not action.option_strings
            or action.default is None
            or action.default is False
            or action.default == argparse.SUPPRESS
            or "default" in text
        ):
            return text
        return f"{text} (default: %(default)s)".lstrip()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="captioner-train",
        description=__doc__.split("\n\n")[0],
        formatter_class=HelpWithDefaults,
    )
    data = p.add_argument_group("data")
    data.add_argument(
        "--data",
        required=True,
        type=Path,
        help="training captions (COCO, Karpathy, Flickr, CSV, JSONL)",
    )
    data.add_argument(
        "--images",
        required=True,
        type=Path,
        help="folder the caption file's image names are relative to",
    )
    data.add_argument(
        "--val-data", type=Path, help="validation captions (default: the val split of --data)"
    )
    data.add_argument("--val-images", type=Path, help="folder for --val-data (default: --images)")
    data.add_argument("--format", choices=FORMATS, help="caption file format (default: detected)")
    data.add_argument(
        "--skip-missing", action="store_true", help="drop captions whose image is missing"
    )
    data.add_argument("--min-word-count", type=int, default=5, help="rarer words become <unk>")
    data.add_argument(
        "--max-caption-length", type=int, default=50, help="longer captions are clipped"
    )
    data.add_argument(
        "--val-max-images", type=int, default=1000, help="images captioned for val metrics"
    )
    cache = data.add_mutually_exclusive_group()
    cache.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="encoder feature cache (default: captioner/features in $XDG_CACHE_HOME or ~/.cache)",
    )
    cache.add_argument(
        "--no-cache",
        action="store_true",
        help="encode the photos on the fly every epoch, caching nothing (a frozen encoder's "
        "features are otherwise cached on disk: ~800 kB a photo for ResNet-101 at 14 x 14)",
    )
    add_workers_argument(data, help="processes loading photos (default: the CPU count, at most 4)")

    model = p.add_argument_group("model")
    model.add_argument(
        "--name", default=None, help="model name stored in config.json (default: OUT's name)"
    )
    add_model_option(model, "--encoder", help="efficientnet-lite0 or a torchvision ResNet")
    add_model_option(model, "--encoder-weights", help="local weights file (torchvision backbones)")
    add_model_option(model, "--image-size", type=int, help="photos are resized to N x N")
    add_model_option(
        model,
        "--feature-stride",
        type=int,
        choices=[16, 32],
        help="32: the backbone's last features; 16: an earlier, finer stage",
    )
    add_model_option(
        model,
        "--grid-size",
        type=int,
        help="pool the feature map to N x N (default: image size / feature stride)",
    )
    add_model_option(
        model,
        "--fine-tune-blocks",
        type=int,
        help="train the encoder's last N blocks",
    )
    add_model_option(model, "--cell", choices=list(GATE_BLOCKS), help="decoder cell")
    add_model_option(
        model,
        "--start-state",
        choices=START_STATES,
        help="decoder start state: from the mean feature (the paper) or learned, one for all",
    )
    model.add_argument(
        "--coordinates",
        action="store_true",
        help="give the decoder each grid cell's position next to its features",
    )
    model.add_argument(
        "--word-attention",
        action="store_true",
        help="let the attention query see the word being read (the paper's does not)",
    )
    model.add_argument(
        "--normalize-features",
        action="store_true",
        help="layer-normalise each grid cell's features (for mid-network, unnormalised stages)",
    )
    add_model_option(model, "--embed-dim", type=int, help="word embedding size")
    add_model_option(model, "--decoder-dim", type=int, help="decoder state size")
    add_model_option(model, "--attention-dim", type=int, help="attention layer size")
    add_model_option(model, "--dropout", type=float, help="before the word classifier")
    model.add_argument(
        "--copy-nouns",
        action="store_true",
        help="name objects by copying nouns from the encoder's ImageNet classifier (issue #12): "
        "the noun table's nouns and plurals join the vocabulary and are said only by copying; "
        "needs an efficientnet-lite encoder at --feature-stride 32",
    )
    model.add_argument(
        "--semantic-features",
        action="store_true",
        help="with --copy-nouns: the decoder reads each grid cell as the ImageNet classifier "
        "sees it (class log-probabilities), not its raw features, so sentences learned from "
        "composites carry over to photos",
    )

    opt = p.add_argument_group("optimisation")
    opt.add_argument("--out", required=True, type=Path, help="run directory")
    opt.add_argument(
        "--epochs", type=int, default=20, help="epochs in all, counting those a resumed run did"
    )
    add_batch_size_argument(opt, default=64, help="global batch size (all processes)")
    opt.add_argument(
        "--lr",
        type=float,
        default=None,
        help=f"decoder learning rate (default: {LEARNING_RATES['cross-entropy']:g}, "
        f"with --objective scst {LEARNING_RATES['scst']:g})",
    )
    opt.add_argument(
        "--encoder-lr", type=float, default=1e-4, help="learning rate of fine-tuned blocks"
    )
    opt.add_argument("--grad-clip", type=float, default=5.0, help="gradient norm limit")
    opt.add_argument(
        "--attention-lambda", type=float, default=1.0, help="doubly stochastic attention weight"
    )
    opt.add_argument(
        "--metric", choices=["CIDEr", "Bleu_4"], default="CIDEr", help="model selection metric"
    )
    opt.add_argument(
        "--patience", type=int, default=5, help="stop after N epochs without improvement"
    )
    opt.add_argument(
        "--lr-patience", type=int, default=2, help="halve the learning rate after N flat epochs"
    )
    opt.add_argument(
        "--val-beam-size", type=int, default=3, help="beam size of the validation captions"
    )
    opt.add_argument("--seed", type=int, default=0, help="weights, dropout and batch order")
    add_device_argument(opt, help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps")
    again = opt.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run in OUT from last/")
    again.add_argument(
        "--overwrite",
        action="store_true",
        help="start again in an OUT holding a run: its best/, last/ and log are replaced",
    )
    opt.add_argument("--no-progress", action="store_true", help="no progress bars")

    scst = p.add_argument_group("self-critical training (issue #15)")
    scst.add_argument(
        "--objective",
        choices=list(LEARNING_RATES),
        default="cross-entropy",
        help="scst: reinforce the CIDEr-D of sampled captions; needs --init-from (or --resume)",
    )
    scst.add_argument(
        "--init-from",
        type=Path,
        help="start from this model directory's weights, vocabulary and model options "
        "(a cross-entropy run's best/); model options given must equal its",
    )
    scst.add_argument("--scst-samples", type=int, default=5, help="captions drawn per image")
    scst.add_argument(
        "--scst-baseline",
        choices=BASELINES,
        default="mean",
        help="each sample's baseline: the mean reward of the image's other samples, or the "
        "reward of the greedy caption (Rennie et al.)",
    )
    scst.add_argument(
        "--scst-max-length",
        type=int,
        default=16,
        help="tokens drawn per caption, <end> included; a longer one is cut off and loses the "
        "reward of its <end>",
    )
    scst.add_argument(
        "--scst-bleu-weight",
        type=float,
        default=0.0,
        help="add this times sentence BLEU-4 to each caption's CIDEr-D reward",
    )
    return p


# SCST starts from a model that is already good, and its policy gradient is far noisier than
# cross-entropy's (one reward per whole caption, estimated from a few samples): at the
# cross-entropy rate a few bad batches undo what the first phase learned.
LEARNING_RATES = {"cross-entropy": 4e-4, "scst": 5e-5}
# The options of the objective, which a resumed run keeps from its checkpoint as KEPT_OPTIONS.
OBJECTIVE_OPTIONS = (
    "objective", "scst_samples", "scst_baseline", "scst_max_length", "scst_bleu_weight"
)  # fmt: skip


def add_model_option(group: argparse._ArgumentGroup, option: str, **kwargs) -> None:
    """A model option, whose default is that of the config field it sets."""
    group.add_argument(option, default=config_default(option[2:].replace("-", "_")), **kwargs)


def parse_args(
    parser: argparse.ArgumentParser, argv: list[str] | None
) -> tuple[argparse.Namespace, set[str]]:
    """The arguments, and which of the options a run records the command line gave.

    argparse leaves an attribute the namespace already has unless the option is given, so a
    marker left in place means the option's default applies.
    """
    unset = object()
    recorded = [*MODEL_OPTIONS, *KEPT_OPTIONS, *OBJECTIVE_OPTIONS]
    args = parser.parse_args(argv, argparse.Namespace(**dict.fromkeys(recorded, unset)))
    given = {dest for dest in recorded if getattr(args, dest) is not unset}
    for dest in set(recorded) - given:
        setattr(args, dest, parser.get_default(dest))
    return args, given


class CrossEntropy:
    """Teacher forcing's objective of one batch of (inputs, captions).

    `trained` is the CaptionModel, or its DistributedDataParallel wrapper under torchrun.
    """

    def __init__(self, trained: nn.Module, world: Distributed, attention_lambda: float) -> None:
        self.trained, self.world, self.attention_lambda = trained, world, attention_lambda

    def __call__(
        self, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device
    ) -> tuple[torch.Tensor, float, int]:
        """The loss to back-propagate, the summed cross-entropy of this process's words, and
        the words over all processes."""
        inputs, captions = batch[0].to(device), batch[1].to(device)
        tokens = word_count(captions)
        global_tokens, global_captions = self.world.sum(tokens), self.world.sum(len(captions))
        with mixed_precision(device):
            logits, alphas = self.trained(inputs, captions)
        cross_entropy, penalty = caption_loss(logits, alphas, captions, self.attention_lambda)
        # DDP averages gradients over processes, hence the world-size factor.
        loss = self.world.world_size * (cross_entropy / global_tokens + penalty / global_captions)
        return loss, cross_entropy.item(), global_tokens

    def epoch_row(self) -> dict:
        return {}


def train_one_epoch(
    objective: CrossEntropy | SelfCritical,
    model: CaptionModel,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    sampler: BucketBatchSampler,
    state: TrainingState,
    world: Distributed,
    args: argparse.Namespace,
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
        desc=f"epoch {epoch + 1}/{args.epochs}",
        disable=args.no_progress or not world.main,
        unit="batch",
    )
    interrupted = False
    with StopRequest() as stop:
        for index, batch in enumerate(loader, start=state.batch):
            loss, summed, global_tokens = objective(batch, device)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, given = parse_args(parser, argv)
    resuming = check_run_dir(parser, args, given)
    if resuming:
        keep_objective(parser, args, given)
    if args.objective == "scst" and not (resuming or args.init_from):
        parser.error("--objective scst starts from a trained model: give --init-from RUN/best")
    if args.scst_baseline == "mean" and args.scst_samples < 2:
        parser.error("--scst-baseline mean needs --scst-samples 2 or more")
    if args.init_from and not resuming:
        take_model_options(parser, args, given)
    if args.lr is None:
        args.lr = LEARNING_RATES[args.objective]
    if args.copy_nouns and (args.encoder not in EFFICIENTNET_LITE or args.feature_stride != 32):
        parser.error(
            "--copy-nouns reads the ImageNet classifier of an efficientnet-lite encoder, which "
            "was trained on the last stage's features: use --feature-stride 32"
        )
    if args.semantic_features and not args.copy_nouns:
        parser.error("--semantic-features reads the ImageNet classifier: it needs --copy-nouns")
    try:
        world = Distributed.from_environment()
    except ValueError as err:
        parser.error(str(err))
    device = world.local_device(resolve_device(args.device))
    world.start(device)
    log = print if world.main else (lambda *a, **k: None)
    torch.manual_seed(args.seed)
    random.seed(args.seed)

    try:
        train_samples, val_samples = read_data(args, log)
    except (DatasetFormatError, FileNotFoundError) as err:
        print(f"captioner-train: {err}", file=sys.stderr)
        return 2
    data = data_record(args)

    last = args.out / "last"
    if args.resume and not resuming:
        log(f"no checkpoint in {last}; starting a new run")
    start = last if resuming else args.init_from
    if start:
        saved = Captioner.load(start, device=device, backend="torch")  # its modules train on
        encoder, decoder, vocab = saved.encoder, saved.decoder, saved.vocab
        if not resuming:  # --init-from: which blocks train is this run's choice
            encoder.fine_tune(args.fine_tune_blocks)
    else:
        encoder = Encoder(encoder_config(args))
    try:
        load, train_samples, val_samples = model_inputs(
            encoder, train_samples, val_samples, args, world, device
        )
    except CacheError as err:
        print(f"captioner-train: error: {err}", file=sys.stderr)
        return 1
    log(f"{len(train_samples)} training images, {len(val_samples)} validation images")
    if not start:
        vocab, decoder = new_decoder(args, encoder, train_samples)
    on_the_fly = args.no_cache and not encoder.trainable
    model = (OnTheFlyModel if on_the_fly else CaptionModel)(encoder, decoder).to(device)
    log(
        f"vocabulary: {len(vocab)} words (min count {args.min_word_count}); "
        f"{decoder.config.cell} decoder, {sum(p.numel() for p in decoder.parameters()):,} weights"
    )

    train_pairs = CaptionPairs(train_samples, vocab, load, args.max_caption_length)
    if train_pairs.clipped:
        log(f"{train_pairs.clipped} captions longer than {args.max_caption_length} words clipped")
    val_pairs = CaptionPairs(val_samples, vocab, load, args.max_caption_length)
    # SCST reads each image once per epoch, and draws its captions itself.
    scst = args.objective == "scst"
    train_set = Photos(train_samples, load) if scst else train_pairs
    sampler = BucketBatchSampler(
        [1] * len(train_set) if scst else train_pairs.lengths(),
        args.batch_size,
        seed=args.seed,
        rank=world.rank,
        world_size=world.world_size,
    )
    # Cached features load faster in-process; photos are decoded in worker processes.
    workers = args.workers if encoder.trainable or on_the_fly else 0
    # Loaders get their own generator: drawing their seed from the global RNG would shift the
    # dropout masks whenever a run builds its cache or resumes, and break exact resumption.
    train_loader = DataLoader(
        train_set, batch_sampler=sampler, collate_fn=None if scst else collate,
        num_workers=workers, generator=torch.Generator(),
    )  # fmt: skip
    optimizer = torch.optim.Adam(model.parameter_groups(args.lr, args.encoder_lr))
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=0.5, patience=args.lr_patience
    )
    state = TrainingState()
    if resuming:
        state = load_training_state(last, optimizer, scheduler)
        log(f"resuming from epoch {state.epoch + 1}, batch {state.batch}")
        truncate_log(args.out / "log.jsonl", state.epoch)
    trained = CaptionSampler(model) if scst else model
    if world.launched:
        trained = DistributedDataParallel(
            trained, device_ids=[device.index] if device.type == "cuda" else None
        )
    if scst:
        references = reference_ids(train_samples, vocab)
        scorer = CiderD(references)
        if args.scst_bleu_weight:
            scorer = MixedReward(scorer, references, args.scst_bleu_weight)
        objective = SelfCritical(
            trained, model, scorer, world,
            num_samples=args.scst_samples, baseline=args.scst_baseline,
            max_length=args.scst_max_length,
        )  # fmt: skip
    else:
        objective = CrossEntropy(trained, world, args.attention_lambda)
    captioner = Captioner(encoder, decoder, vocab, name=args.name or args.out.name, device=device)
    save = partial(save_run, args=args, captioner=captioner, state=state, data=data,
                   optimizer=optimizer, scheduler=scheduler)  # fmt: skip

    if world.main and not resuming:
        # Only now, with the data read and cached: a failure before leaves the old run whole.
        clear_run(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    for _ in range(state.epoch, args.epochs):
        row = train_one_epoch(
            objective, model, optimizer, train_loader, sampler, state, world, args, device
        )
        if row is None:
            if world.main:
                save(last)
                log(f"interrupted: saved {last}; continue with --resume")
            return 130
        if world.main:
            row.update(
                evaluate(model, captioner, val_pairs, val_samples, batch_size=args.batch_size,
                         beam_size=args.val_beam_size, max_images=args.val_max_images)
            )  # fmt: skip
        score = world.sum(row.get(args.metric, -state.train_loss) if world.main else 0.0)
        row["lr"] = optimizer.param_groups[0]["lr"]
        scheduler.step(score)
        improved = state.end_epoch(score)
        if world.main:
            if improved:
                save(args.out / "best", resumable=False)
            save(last)
            append_log(args.out, row)
            plot_curves(args.out)
            if scst:
                for warning in collapse_warnings(read_log(args.out)):
                    print(f"captioner-train: warning: {warning}", file=sys.stderr)
            log(
                " ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                )
            )
        world.barrier()
        if state.stale_epochs >= args.patience:
            log(f"early stop: no {args.metric} improvement for {args.patience} epochs")
            break
    log(f"best {args.metric} {state.best:.4f} (epoch {state.best_epoch}) in {args.out}")
    world.stop()
    return 0


def keep_objective(
    parser: argparse.ArgumentParser, args: argparse.Namespace, given: set[str]
) -> None:
    """A resumed run keeps the objective options its checkpoint saved (see KEPT_OPTIONS)."""
    kept = json.loads((args.out / "last" / STATE_JSON).read_text()).get("options", {})
    for dest in (dest for dest in OBJECTIVE_OPTIONS if dest in kept):
        if dest not in given:
            setattr(args, dest, kept[dest])
        elif getattr(args, dest) != kept[dest]:
            option = "--" + dest.replace("_", "-")
            parser.error(f"{option} {getattr(args, dest)} differs from the run's {kept[dest]}")


def take_model_options(
    parser: argparse.ArgumentParser, args: argparse.Namespace, given: set[str]
) -> None:
    """With --init-from, the model is that directory's: the model options are set to its, and
    one the command line gives must equal it, but for --fine-tune-blocks: which of the
    encoder's blocks train is this run's choice (the tutorial's recipe tunes a converged
    decoder's encoder), not the model's shape."""
    config = json.loads((args.init_from / "config.json").read_text())
    for dest, value in model_option_values(config).items():
        if dest == "fine_tune_blocks" and dest in given:
            continue
        if dest in given and getattr(args, dest) != value:
            option = "--" + dest.replace("_", "-")
            parser.error(f"{option} {getattr(args, dest)} differs from {args.init_from}'s {value}")
        setattr(args, dest, value)


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def model_inputs(
    encoder: Encoder,
    train_samples: list[Sample],
    val_samples: list[Sample],
    args: argparse.Namespace,
    world: Distributed,
    device: torch.device,
) -> tuple[Callable[[Path], torch.Tensor], list[Sample], list[Sample]]:
    """How a photo becomes the model's input, and the training and validation samples that have
    one. A fine-tuned encoder, or any with --no-cache, reads pixels; a frozen one's features are
    cached once (by the main process; photos it cannot read are dropped), where the disk holds
    them. Raises a CacheError in every process when the main one cannot build the cache."""
    if encoder.trainable or args.no_cache:
        return partial(pixels, encoder), train_samples, val_samples
    cache = FeatureCache(args.cache_dir or default_cache_root(), encoder)
    cache_error = None
    if world.main:
        paths = [s.image_path for s in train_samples + val_samples]
        try:
            cache.check_space(paths)
            failed = cache.build(
                paths, workers=args.workers, device=device, progress=not args.no_progress
            )
        except CacheError as error:
            cache_error, failed = error, {}
        for error in list(failed.values())[:5]:
            print(f"captioner-train: skipped {error}", file=sys.stderr)
        if failed:
            print(f"{len(failed)} unreadable photos skipped")
    # Every process waits here for the cache, and learns whether the main one could build
    # it: a barrier alone would keep the others waiting for ever after its error.
    if world.sum(float(cache_error is not None)):
        raise cache_error or CacheBuiltElsewhereError()
    train_samples, val_samples = (
        [s for s in samples if cache.path_for(s.image_path).is_file()]
        for samples in (train_samples, val_samples)
    )
    return cache.load, train_samples, val_samples


def pixels(encoder: Encoder, path: Path) -> torch.Tensor:
    """A photo as the encoder's input, (3, image_size, image_size)."""
    return encoder.preprocess(load_image(path, min_size=encoder.config.image_size))


def new_decoder(
    args: argparse.Namespace, encoder: Encoder, train_samples: list[Sample]
) -> tuple[Vocabulary, Decoder]:
    """A new run's vocabulary and decoder. The words are those of the photos that remain (an
    unreadable photo's captions bring none); with --copy-nouns every noun of the table joins
    them, whether or not a caption says it, and the decoder reads the encoder's classifier."""
    vocab = Vocabulary.from_tokens(
        (tokens for s in train_samples for tokens in s.tokens), args.min_word_count
    )
    if not args.copy_nouns:
        return vocab, Decoder(decoder_config(args, len(vocab), encoder.encoder_dim, 0))
    table = NounTable.load()
    vocab = Vocabulary(dict.fromkeys([*vocab.itos[4:], *table.nouns, *table.plurals]))
    decoder = Decoder(decoder_config(args, len(vocab), encoder.encoder_dim, len(table.nouns)))
    decoder.attach_noun_head(
        *encoder.imagenet_classifier(),
        table.class_to_noun_matrix(DEFAULT_WEIGHTING),
        torch.tensor([vocab.stoi[noun] for noun in table.nouns]),
        torch.tensor([vocab.stoi[plural] for plural in table.plurals]),
    )
    return vocab, decoder


def save_run(
    directory: Path,
    *,
    args: argparse.Namespace,
    captioner: Captioner,
    state: TrainingState,
    data: dict,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau,
    resumable: bool = True,
) -> None:
    """The model in `directory` (best/, last/), with where training stood in its config.json;
    `resumable` adds what --resume reads (last/)."""
    record = {"epoch": state.epoch, "best_epoch": state.best_epoch, args.metric: state.best,
              "data": data}  # fmt: skip
    options = {dest: getattr(args, dest) for dest in (*KEPT_OPTIONS, *OBJECTIVE_OPTIONS)}
    add_state = partial(save_training_state, optimizer=optimizer, scheduler=scheduler,
                        state=state, options=options)  # fmt: skip
    save_model(directory, captioner, record, add_state if resumable else None)


if __name__ == "__main__":
    sys.exit(main())
