"""`captioner-train`: teacher-forced training of the attention decoder on caption data.

    captioner-train --data captions_train2017.json --images train2017/ \
        --val-data captions_val2017.json --val-images val2017/ --out runs/coco

    torchrun --nproc-per-node 4 -m training.train ...   # several GPUs or machines (DDP)

A run directory holds `best/` and `last/` (model directories `Captioner.load` reads; `last/`
also holds the optimizer and RNG state for `--resume`), `log.jsonl` (one line per epoch) and
`curves.png`. A directory holding a run is continued with `--resume` or started again with
`--overwrite`, never either by default.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from captioner import Captioner
from captioner.atomic import save_atomically, write_atomically
from captioner.checkpoint import WEIGHTS_FILE, write_dir_atomically, write_model_files
from captioner.decoder import GATE_BLOCKS, START_STATES, Decoder, DecoderConfig
from captioner.device import device_argument, resolve_device
from captioner.encoder import EFFICIENTNET_LITE, Encoder, EncoderConfig
from captioner.images import load_image
from captioner.nouns import DEFAULT_WEIGHTING, NounTable
from captioner.options import DecodeOptions
from captioner.vocab import Vocabulary
from training.batches import BucketBatchSampler, CaptionPairs, collate
from training.features import CacheDiskFullError, FeatureCache, default_cache_root
from training.metrics import coco_metrics
from training.readers import FORMATS, DatasetFormatError, Sample, read_samples

STATE_TENSORS, STATE_JSON = "training_state.safetensors", "training_state.json"
RUN_FILES = ("best", "last", "log.jsonl", "curves.png")  # what a run writes in its directory
# Options the model is built from, and where a run's config.json records each. Resuming
# rebuilds the model from config.json, so a different value on the command line is refused.
MODEL_OPTIONS = {
    "encoder": ("encoder", "name"),
    "encoder_weights": ("encoder", "weights"),
    "image_size": ("encoder", "image_size"),
    "feature_stride": ("encoder", "feature_stride"),
    "grid_size": ("encoder", "grid_size"),
    "fine_tune_blocks": ("encoder", "fine_tune_blocks"),
    "cell": ("decoder", "cell"),
    "start_state": ("decoder", "start_state"),
    "coordinates": ("decoder", "coordinates"),
    "word_attention": ("decoder", "word_attention"),
    "normalize_features": ("decoder", "normalize_features"),
    "embed_dim": ("decoder", "embed_dim"),
    "decoder_dim": ("decoder", "decoder_dim"),
    "attention_dim": ("decoder", "attention_dim"),
    "dropout": ("decoder", "dropout"),
    "copy_nouns": ("decoder", "copy_nouns"),  # a flag here, the number of nouns in config.json
    "semantic_features": ("decoder", "semantic_features"),
}
# Options a resumed run keeps from its checkpoint, which saves them: the vocabulary, the
# optimizer and scheduler states and the batch order were made with them. Not given, they
# take the run's values; given, they must equal them.
KEPT_OPTIONS = ("min_word_count", "batch_size", "seed", "lr", "encoder_lr", "metric", "lr_patience")


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
    data.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="encoder feature cache (default: captioner/features in $XDG_CACHE_HOME or ~/.cache)",
    )
    data.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="processes loading photos (default: the CPU count, at most 4)",
    )

    model = p.add_argument_group("model")
    model.add_argument(
        "--name", default=None, help="model name stored in config.json (default: OUT's name)"
    )
    model.add_argument(
        "--encoder", default="efficientnet-lite0", help="efficientnet-lite0 or a torchvision ResNet"
    )
    model.add_argument(
        "--encoder-weights", default=None, help="local weights file (torchvision backbones)"
    )
    model.add_argument("--image-size", type=int, default=224, help="photos are resized to N x N")
    model.add_argument(
        "--feature-stride",
        type=int,
        default=32,
        choices=[16, 32],
        help="32: the backbone's last features; 16: an earlier, finer stage",
    )
    model.add_argument(
        "--grid-size",
        type=int,
        default=None,
        help="pool the feature map to N x N (default: image size / feature stride)",
    )
    model.add_argument(
        "--fine-tune-blocks", type=int, default=0, help="train the encoder's last N blocks"
    )
    model.add_argument("--cell", choices=list(GATE_BLOCKS), default="lstm", help="decoder cell")
    model.add_argument(
        "--start-state",
        choices=START_STATES,
        default="mean",
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
    model.add_argument("--embed-dim", type=int, default=256, help="word embedding size")
    model.add_argument("--decoder-dim", type=int, default=512, help="decoder state size")
    model.add_argument("--attention-dim", type=int, default=512, help="attention layer size")
    model.add_argument("--dropout", type=float, default=0.5, help="before the word classifier")
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
    opt.add_argument("--batch-size", type=int, default=64, help="global batch size (all processes)")
    opt.add_argument("--lr", type=float, default=4e-4, help="decoder learning rate")
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
    opt.add_argument(
        "--device",
        type=device_argument,
        default="auto",
        help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps",
    )
    again = opt.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run in OUT from last/")
    again.add_argument(
        "--overwrite",
        action="store_true",
        help="start again in an OUT holding a run: its best/, last/ and log are replaced",
    )
    opt.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def parse_args(
    parser: argparse.ArgumentParser, argv: list[str] | None
) -> tuple[argparse.Namespace, set[str]]:
    """The arguments, and which of the options a run records the command line gave.

    argparse leaves an attribute the namespace already has unless the option is given, so a
    marker left in place means the option's default applies.
    """
    unset = object()
    recorded = [*MODEL_OPTIONS, *KEPT_OPTIONS]
    args = parser.parse_args(argv, argparse.Namespace(**dict.fromkeys(recorded, unset)))
    given = {dest for dest in recorded if getattr(args, dest) is not unset}
    for dest in set(recorded) - given:
        setattr(args, dest, parser.get_default(dest))
    return args, given


def check_run_dir(
    parser: argparse.ArgumentParser, args: argparse.Namespace, given: set[str]
) -> bool:
    """Exit with a usage error where the command would replace a run or ignore an option.

    Returns whether the run in OUT is resumed from its last/ checkpoint; if so, the kept
    options the command line did not give are set to the run's.
    """
    last = args.out / "last"
    holds_run = any((args.out / name).exists() for name in RUN_FILES)
    if not args.resume:
        if holds_run and not args.overwrite:
            parser.error(
                f"{args.out} already holds a training run: pass --resume to continue it, or "
                "--overwrite to start again (its best/ model is replaced)"
            )
        return False
    if not (last / STATE_JSON).is_file():
        if holds_run:
            parser.error(
                f"{args.out} holds a training run but no checkpoint to resume in {last}: "
                "pass --overwrite to start again (its best/ model is replaced)"
            )
        return False
    config = json.loads((last / "config.json").read_text())
    run_values = {dest: config[section].get(key) for dest, (section, key) in MODEL_OPTIONS.items()}
    run_values["copy_nouns"] = bool(run_values["copy_nouns"])
    # Checkpoints from before the options were saved have none: those options go unchecked.
    kept = json.loads((last / STATE_JSON).read_text()).get("options", {})
    for dest in KEPT_OPTIONS:
        if dest in kept:
            run_values[dest] = kept[dest]
            if dest not in given:
                setattr(args, dest, kept[dest])
    for dest in [dest for dest in run_values if dest in given]:
        ours, theirs = getattr(args, dest), run_values[dest]
        if ours != theirs:
            option = "--" + dest.replace("_", "-")
            stated = option if isinstance(ours, bool) else f"{option} {ours}"
            if theirs is False:
                was = "model (made without it)"
            elif theirs is None:
                was = "default"
            else:
                was = theirs
            parser.error(
                f"{stated} differs from the run's {was} in {last}; drop it to resume, "
                "or start a new --out"
            )
    return True


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: torch.device) -> Distributed:
        """torchrun sets WORLD_SIZE and RANK; without them this is a single process."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            return cls()
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), world_size)

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def sum(self, value: float) -> float:
        if self.world_size == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(tensor)
        return tensor.item()


class StopRequest:
    """Ctrl-C (or SIGTERM from a scheduler) finishes the current batch, then the run saves.

    Stopping between batches keeps weights, optimizer, RNG and progress consistent, so the
    resumed run is exactly the uninterrupted one. A second Ctrl-C stops at once.
    """

    signals = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> StopRequest:
        self.requested = False
        self.previous = {s: signal.signal(s, self._handle) for s in self.signals}
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this batch (Ctrl-C again to stop now)", file=sys.stderr)

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)


class CaptionModel(nn.Module):
    """The trainable pair. Inputs are cached features, or pixels when the encoder is fine-tuned."""

    def __init__(self, encoder: Encoder, decoder: Decoder) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, inputs: torch.Tensor, captions: torch.Tensor):
        features = self.encoder(inputs) if self.encoder.trainable else inputs
        return self.decoder(features, captions)


def caption_loss(
    logits: torch.Tensor, alphas: torch.Tensor, captions: torch.Tensor, attention_lambda: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy over real words, and the summed doubly stochastic penalty.

    logits (batch, T, vocab), alphas (batch, T, pixels), captions (batch, T + 1). The penalty
    lambda * sum_pixels (1 - sum_t alpha)^2 pushes every grid cell to get attention at some
    word. Sums (not means) let the caller divide by counts over all processes.
    """
    targets = captions[:, 1:]
    real = (targets != Vocabulary.pad_id).unsqueeze(-1)  # (batch, T, 1)
    cross_entropy = F.cross_entropy(
        logits.transpose(1, 2).float(), targets, ignore_index=Vocabulary.pad_id, reduction="sum"
    )
    coverage = (alphas.float() * real).sum(dim=1)  # (batch, pixels)
    penalty = attention_lambda * ((1.0 - coverage) ** 2).sum()
    return cross_entropy, penalty


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, given = parse_args(parser, argv)
    resuming = check_run_dir(parser, args, given)
    if args.copy_nouns and (args.encoder not in EFFICIENTNET_LITE or args.feature_stride != 32):
        parser.error(
            "--copy-nouns reads the ImageNet classifier of an efficientnet-lite encoder, which "
            "was trained on the last stage's features: use --feature-stride 32"
        )
    if args.semantic_features and not args.copy_nouns:
        parser.error("--semantic-features reads the ImageNet classifier: it needs --copy-nouns")
    device = resolve_device(args.device)
    world = Distributed.from_environment(device)
    if device.type == "cuda" and world.world_size > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    log = print if world.main else (lambda *a, **k: None)
    torch.manual_seed(args.seed)
    random.seed(args.seed)

    try:
        train_samples, val_samples = read_data(args, log)
    except (DatasetFormatError, FileNotFoundError) as err:
        print(f"captioner-train: {err}", file=sys.stderr)
        return 2

    if args.resume and not resuming:
        log(f"no checkpoint in {args.out / 'last'}; starting a new run")
    if resuming:
        vocab = Vocabulary.load(args.out / "last" / "vocab.json")
        saved = json.loads((args.out / "last" / "config.json").read_text())
        encoder_config = EncoderConfig.from_dict(saved["encoder"])
        decoder_config = DecoderConfig.from_dict(saved["decoder"])
    else:
        encoder_config = EncoderConfig(
            name=args.encoder,
            image_size=args.image_size,
            feature_stride=args.feature_stride,
            grid_size=args.grid_size,
            fine_tune_blocks=args.fine_tune_blocks,
            weights=args.encoder_weights,
        )
        decoder_config = None
    encoder = Encoder(encoder_config)

    if encoder.trainable:
        load = _pixel_loader(encoder)
    else:
        cache = FeatureCache(args.cache_dir or default_cache_root(), encoder)
        if world.main:
            paths = [s.image_path for s in train_samples + val_samples]
            try:
                failed = cache.build(
                    paths, workers=args.workers, device=device, progress=not args.no_progress
                )
            except CacheDiskFullError as err:
                print(f"captioner-train: error: {err}", file=sys.stderr)
                return 1
            for error in list(failed.values())[:5]:
                print(f"captioner-train: skipped {error}", file=sys.stderr)
            if failed:
                log(f"{len(failed)} unreadable photos skipped")
        world.barrier()
        train_samples, val_samples = (
            [s for s in samples if cache.path_for(s.image_path).is_file()]
            for samples in (train_samples, val_samples)
        )
        load = cache.load

    log(f"{len(train_samples)} training images, {len(val_samples)} validation images")
    if not resuming:
        # From the photos that remain: an unreadable photo's captions bring no words
        vocab = Vocabulary.from_tokens(
            (tokens for s in train_samples for tokens in s.tokens), args.min_word_count
        )
        if args.copy_nouns:
            # Every noun can be copied, whether or not a training caption says it.
            table = NounTable.load()
            vocab = Vocabulary(dict.fromkeys([*vocab.itos[4:], *table.nouns, *table.plurals]))
    decoder_config = decoder_config or DecoderConfig(
        len(vocab), encoder.encoder_dim, args.embed_dim, args.decoder_dim, args.attention_dim,
        args.dropout, args.cell, args.start_state, args.coordinates,
        args.normalize_features, args.word_attention,
        copy_nouns=len(table.nouns) if args.copy_nouns else 0,
        semantic_features=args.semantic_features,
    )  # fmt: skip
    decoder = Decoder(decoder_config)
    if args.copy_nouns and not resuming:  # a resumed run's checkpoint holds them
        decoder.attach_noun_head(
            *encoder.imagenet_classifier(),
            table.class_to_noun_matrix(DEFAULT_WEIGHTING),
            torch.tensor([vocab.stoi[noun] for noun in table.nouns]),
            torch.tensor([vocab.stoi[plural] for plural in table.plurals]),
        )
    model = CaptionModel(encoder, decoder).to(device)
    log(
        f"vocabulary: {len(vocab)} words (min count {args.min_word_count}); "
        f"{decoder_config.cell} decoder, {sum(p.numel() for p in decoder.parameters()):,} weights"
    )

    train_pairs = CaptionPairs(train_samples, vocab, load, args.max_caption_length)
    if train_pairs.clipped:
        log(f"{train_pairs.clipped} captions longer than {args.max_caption_length} words clipped")
    val_pairs = CaptionPairs(val_samples, vocab, load, args.max_caption_length)
    sampler = BucketBatchSampler(
        train_pairs.lengths(),
        args.batch_size,
        seed=args.seed,
        rank=world.rank,
        world_size=world.world_size,
    )
    workers = args.workers if encoder.trainable else 0  # cached features load faster in-process
    # Loaders get their own generator: drawing their seed from the global RNG would shift the
    # dropout masks whenever a run builds its cache or resumes, and break exact resumption.
    train_loader = DataLoader(
        train_pairs, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
        generator=torch.Generator(),
    )  # fmt: skip

    parameter_groups = [{"params": list(decoder.parameters()), "lr": args.lr}]
    if encoder.trainable:
        tuned = [p for p in encoder.parameters() if p.requires_grad]
        parameter_groups.append({"params": tuned, "lr": args.encoder_lr})
    optimizer = torch.optim.Adam(parameter_groups)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=0.5, patience=args.lr_patience
    )
    progress = {"epoch": 0, "batch": 0, "loss_sum": 0.0, "tokens": 0, "best": -math.inf,
                "best_epoch": 0, "stale_epochs": 0}  # fmt: skip
    if resuming:
        progress = load_training_state(args.out / "last", model, optimizer, scheduler)
        log(f"resuming from epoch {progress['epoch'] + 1}, batch {progress['batch']}")
        truncate_log(args.out / "log.jsonl", progress["epoch"])
    trained = wrap_ddp(model, device) if world.world_size > 1 else model
    use_amp = device.type == "cuda"

    def save(where: str) -> None:
        captioner = Captioner(
            encoder, decoder, vocab, name=args.name or args.out.name, device=device
        )
        extra = {
            "training": {
                "epoch": progress["epoch"],
                "best_epoch": progress["best_epoch"],
                args.metric: progress["best"],
                "data": str(args.data),
            }
        }
        files = captioner.model_files(extra)

        def write(directory: Path) -> None:
            write_model_files(directory, *files)
            if where == "last":
                options = {dest: getattr(args, dest) for dest in KEPT_OPTIONS}
                save_training_state(directory, optimizer, scheduler, progress, options)

        write_dir_atomically(args.out / where, write)
        model.train()

    if world.main and not resuming:
        # Only now, with the data read and cached: a failure before leaves the old run whole.
        clear_run(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    for epoch in range(progress["epoch"], args.epochs):
        sampler.set_epoch(epoch, skip_batches=progress["batch"])
        model.train()
        # A resumed epoch's rate counts only the batches run since this process started it.
        started, tokens_before = time.perf_counter(), progress["tokens"]
        bar = tqdm(
            total=len(sampler),
            initial=progress["batch"],
            desc=f"epoch {epoch + 1}/{args.epochs}",
            disable=args.no_progress or not world.main,
            unit="batch",
        )
        interrupted = False
        with StopRequest() as stop:
            for index, (inputs, captions) in enumerate(train_loader, start=progress["batch"]):
                inputs, captions = inputs.to(device), captions.to(device)
                tokens = int((captions[:, 1:] != Vocabulary.pad_id).sum())
                global_tokens, global_captions = world.sum(tokens), world.sum(len(captions))
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                    logits, alphas = trained(inputs, captions)
                cross_entropy, penalty = caption_loss(
                    logits, alphas, captions, args.attention_lambda
                )
                # DDP averages gradients over processes, hence the world-size factor.
                loss = world.world_size * (
                    cross_entropy / global_tokens + penalty / global_captions
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
                optimizer.step()
                progress["loss_sum"] += world.sum(cross_entropy.item())
                progress["tokens"] += global_tokens
                progress["batch"] = index + 1
                elapsed = time.perf_counter() - started
                bar.set_postfix(
                    loss=f"{progress['loss_sum'] / progress['tokens']:.3f}",
                    tok_s=f"{(progress['tokens'] - tokens_before) / max(elapsed, 1e-9):,.0f}",
                )
                bar.update(1)
                interrupted = world.sum(float(stop.requested)) > 0  # all processes agree
                if interrupted:
                    break
        bar.close()
        if interrupted:
            if world.main:
                save("last")
                log(f"interrupted: saved {args.out / 'last'}; continue with --resume")
            return 130

        train_loss = progress["loss_sum"] / max(progress["tokens"], 1)
        tokens_per_s = (progress["tokens"] - tokens_before) / (time.perf_counter() - started)
        row = {
            "epoch": epoch + 1,
            "train_loss": round(train_loss, 6),
            "train_tokens_per_s": round(tokens_per_s, 1),
        }
        if world.main:
            row.update(validate(model, vocab, val_pairs, val_samples, args, device))
        score = world.sum(row.get(args.metric, -train_loss) if world.main else 0.0)
        row["lr"] = optimizer.param_groups[0]["lr"]
        scheduler.step(score)
        improved = score > progress["best"]
        progress.update(epoch=epoch + 1, batch=0, loss_sum=0.0, tokens=0)
        if improved:
            progress.update(best=score, best_epoch=epoch + 1, stale_epochs=0)
        else:
            progress["stale_epochs"] += 1
        if world.main:
            if improved:
                save("best")
            save("last")
            with open(args.out / "log.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            plot_curves(args.out)
            log(
                " ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                )
            )
        world.barrier()
        if progress["stale_epochs"] >= args.patience:
            log(f"early stop: no {args.metric} improvement for {args.patience} epochs")
            break
    log(f"best {args.metric} {progress['best']:.4f} (epoch {progress['best_epoch']}) in {args.out}")
    if world.world_size > 1:
        dist.destroy_process_group()
    return 0


def read_data(args, log) -> tuple[list[Sample], list[Sample]]:
    """Training and validation samples; a Karpathy file brings its own val split."""
    result = read_samples(
        args.data, args.images, format=args.format, skip_missing=args.skip_missing
    )
    report_read(args.data, result, log)
    train = [s for s in result.samples if s.split == "train"]
    if not train:
        raise DatasetFormatError(
            f"{args.data}: no training images (splits: {sorted({s.split for s in result.samples})})"
        )
    if args.val_data:
        val_result = read_samples(
            args.val_data,
            args.val_images or args.images,
            format=args.format,
            skip_missing=args.skip_missing,
        )
        report_read(args.val_data, val_result, log)
        val = val_result.samples
    else:
        val = [s for s in result.samples if s.split == "val"]
    if not val:
        log("no validation data (--val-data or a val split): best/ is chosen by training loss")
    return train, val


def report_read(path: Path, result, log) -> None:
    if result.empty_captions_dropped:
        log(f"{path}: {result.empty_captions_dropped} empty captions dropped")
    if result.missing_images:
        log(f"{path}: {len(result.missing_images)} images missing, skipped")


def _pixel_loader(encoder: Encoder):
    size = encoder.config.image_size
    return lambda path: encoder.preprocess(load_image(path, min_size=size))


@torch.no_grad()
def validate(model: CaptionModel, vocab, val_pairs, val_samples, args, device) -> dict:
    """Teacher-forced loss on every val caption, and COCO metrics of beam-searched captions."""
    if not val_samples:
        return {}
    model.eval()
    loader = DataLoader(
        val_pairs, batch_size=args.batch_size, collate_fn=collate, generator=torch.Generator()
    )
    loss_sum, tokens = 0.0, 0
    for inputs, captions in loader:
        inputs, captions = inputs.to(device), captions.to(device)
        logits, alphas = model(inputs, captions)
        cross_entropy, _ = caption_loss(logits, alphas, captions, 0.0)
        loss_sum += cross_entropy.item()
        tokens += int((captions[:, 1:] != Vocabulary.pad_id).sum())

    captioner = Captioner(model.encoder, model.decoder, vocab, device=device)
    samples = val_samples[: args.val_max_images]
    candidates = {}
    for start in range(0, len(samples), args.batch_size):
        chunk = samples[start : start + args.batch_size]
        inputs = torch.stack([val_pairs.load(s.image_path) for s in chunk]).to(device)
        features = model.encoder(inputs) if model.encoder.trainable else inputs
        for sample, result in zip(
            chunk,
            captioner.decode(features, DecodeOptions(beam_size=args.val_beam_size)),
            strict=True,
        ):
            candidates[sample.image_id] = result.text
    references = {s.image_id: list(s.captions) for s in samples}
    metrics = coco_metrics(references, candidates, meteor=False)
    model.train()
    return {
        "val_loss": round(loss_sum / max(tokens, 1), 6),
        **{k: round(v, 6) for k, v in metrics.items()},
    }


def save_training_state(
    directory: Path, optimizer, scheduler, progress: dict, options: dict
) -> None:
    """Optimizer moments and RNG states as tensors (safetensors), the rest as JSON: no pickle."""
    optimizer_state = optimizer.state_dict()
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    for index, state in optimizer_state["state"].items():
        for name, value in state.items():
            tensors[f"optimizer.{index}.{name}"] = value.detach().cpu().reshape(value.shape)
    save_file(tensors, directory / STATE_TENSORS)
    meta = {"progress": progress, "optimizer_param_groups": optimizer_state["param_groups"],
            "scheduler": scheduler.state_dict(), "options": options}  # fmt: skip
    (directory / STATE_JSON).write_text(json.dumps(meta, indent=1) + "\n")


def load_training_state(directory: Path, model, optimizer, scheduler) -> dict:
    """Weights, optimizer, scheduler and RNG state from `directory`; returns the progress."""
    weights = load_file(directory / WEIGHTS_FILE)
    for prefix, module in (("decoder.", model.decoder), ("encoder.", model.encoder)):
        part = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
        if part:
            module.load_state_dict(part)
    tensors = load_file(directory / STATE_TENSORS)
    meta = json.loads((directory / STATE_JSON).read_text())
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer_param_groups"]})
    scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)
    return meta["progress"]


def clear_run(run_dir: Path) -> None:
    """Remove what a run wrote (--overwrite), so that none of it mixes with the new run."""
    for name in RUN_FILES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def truncate_log(path: Path, epochs_done: int) -> None:
    """Drop log lines of epochs after the checkpoint, which the resumed run will redo."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line)["epoch"] <= epochs_done]
    write_atomically(path, "".join(line + "\n" for line in kept).encode())


def plot_curves(run_dir: Path) -> None:
    """curves.png: losses and the validation metrics per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line]
    epochs = [r["epoch"] for r in rows]
    figure, (losses, scores) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("train_loss", "val_loss"):
        if any(key in r for r in rows):
            losses.plot(epochs, [r.get(key) for r in rows], marker="o", label=key)
    for key in ("Bleu_4", "CIDEr", "ROUGE_L"):
        if any(key in r for r in rows):
            scores.plot(epochs, [r.get(key) for r in rows], marker="o", label=key)
    for axes, title in ((losses, "cross-entropy per word"), (scores, "validation metrics")):
        axes.set_xlabel("epoch")
        axes.set_title(title)
        axes.grid(alpha=0.3)
        if axes.lines:
            axes.legend()
    figure.tight_layout()
    save_atomically(run_dir / "curves.png", lambda file: figure.savefig(file, format="png", dpi=80))
    plt.close(figure)


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


if __name__ == "__main__":
    sys.exit(main())
