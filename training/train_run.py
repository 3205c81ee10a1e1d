"""TrainRun: everything one captioner-train run was asked to do, checked once, then only read.

The command line is parsed (`build_parser`, `parse_args`), then completed from what the run
continues (`resolve_run`): a resumed run takes the options it keeps from its checkpoint, an
`--init-from` run the model options of the model it starts from. What comes out is a frozen
`TrainRun`; nothing changes it after.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from captioner.cli.args import add_batch_size_argument, add_device_argument, add_workers_argument
from captioner.decoder import GATE_BLOCKS, START_STATES
from captioner.encoder import EFFICIENTNET_LITE
from captioner.registry import CONFIG_FILE, resolve_model
from training.model import MODEL_OPTIONS, config_default, model_option_values
from training.objectives import BASELINES
from training.readers import FORMATS
from training.run_dir import KEPT_OPTIONS, check_run_dir
from training.state import saved_options

# SCST starts from a model that is already good, and its policy gradient is far noisier than
# cross-entropy's (one reward per whole caption, estimated from a few samples): at the
# cross-entropy rate a few bad batches undo what the first phase learned.
LEARNING_RATES = {"cross-entropy": 4e-4, "scst": 5e-5}
# The options of the objective, which a resumed run keeps from its checkpoint as KEPT_OPTIONS.
OBJECTIVE_OPTIONS = (
    "objective", "scst_samples", "scst_baseline", "scst_max_length", "scst_bleu_weight"
)  # fmt: skip


@dataclass(frozen=True)
class TrainRun:
    """One training run, as its command line and the run or model it continues set it up.

    The fields are the command line's options by their argparse names, plus `resuming`.
    Raises ValueError, naming the options, where two options contradict each other.
    """

    # Data
    data: Path
    images: Path
    val_data: Path | None
    val_images: Path | None
    format: str | None  # None: detected
    skip_missing: bool
    min_word_count: int
    max_caption_length: int
    val_max_images: int
    cache_dir: Path | None  # None: default_cache_root()
    no_cache: bool
    workers: int

    # Model (MODEL_OPTIONS: the fields of EncoderConfig and DecoderConfig they set)
    name: str | None  # None: the run directory's name
    encoder: str
    encoder_weights: str | None
    image_size: int
    feature_stride: int
    grid_size: int | None
    fine_tune_blocks: int
    cell: str
    start_state: str
    coordinates: bool
    word_attention: bool
    normalize_features: bool
    embed_dim: int
    decoder_dim: int
    attention_dim: int
    dropout: float
    copy_nouns: bool
    semantic_features: bool

    # Optimisation
    out: Path
    epochs: int
    batch_size: int
    lr: float
    encoder_lr: float
    grad_clip: float
    attention_lambda: float
    metric: str
    patience: int
    lr_patience: int
    val_beam_size: int
    seed: int
    device: str
    resume: bool  # asked to continue the run in `out`
    overwrite: bool
    no_progress: bool

    # Self-critical training
    objective: str
    init_from: Path | None
    scst_samples: int
    scst_baseline: str
    scst_max_length: int
    scst_bleu_weight: float

    resuming: bool  # continues from `out`'s last/ (--resume, and there is a checkpoint there)

    def __post_init__(self) -> None:
        if self.objective == "scst" and not (self.resuming or self.init_from):
            raise ValueError(
                "--objective scst starts from a trained model: give --init-from RUN/best"
            )
        if self.scst_baseline == "mean" and self.scst_samples < 2:
            raise ValueError("--scst-baseline mean needs --scst-samples 2 or more")
        if self.copy_nouns and (self.encoder not in EFFICIENTNET_LITE or self.feature_stride != 32):
            raise ValueError(
                "--copy-nouns reads the ImageNet classifier of an efficientnet-lite encoder, "
                "which was trained on the last stage's features: use --feature-stride 32"
            )
        if self.semantic_features and not self.copy_nouns:
            raise ValueError(
                "--semantic-features reads the ImageNet classifier: it needs --copy-nouns"
            )

    @property
    def last(self) -> Path:
        """The checkpoint a run saves after every epoch, and resumes from."""
        return self.out / "last"

    @property
    def start(self) -> Path | None:
        """The model directory whose weights the run starts from: last/ when resuming, else
        --init-from's (None: new weights)."""
        return self.last if self.resuming else self.init_from

    def recorded_options(self) -> dict:
        """The options last/ saves for --resume to keep (KEPT_OPTIONS and the objective's)."""
        return {dest: getattr(self, dest) for dest in (*KEPT_OPTIONS, *OBJECTIVE_OPTIONS)}


def resolve_run(
    parser: argparse.ArgumentParser, args: argparse.Namespace, given: set[str]
) -> TrainRun:
    """The run the parsed command line asks for, completed from the run it resumes or the model
    it starts from; exits with a usage error where they disagree."""
    values = vars(args).copy()
    resuming = check_run_dir(parser, args, given)
    if resuming:
        values.update(resumed_options(parser, args, given))
    elif args.init_from:
        values.update(init_model_options(parser, args, given))
    if values["lr"] is None:
        values["lr"] = LEARNING_RATES[values["objective"]]
    # A progress bar redraws itself with carriage returns, which a log file keeps as one line
    # per redraw; without a terminal the line per epoch that training prints is the progress.
    values["no_progress"] = values["no_progress"] or not sys.stderr.isatty()
    try:
        return TrainRun(**values, resuming=resuming)
    except ValueError as error:
        parser.error(str(error))


def resumed_options(
    parser: argparse.ArgumentParser, args: argparse.Namespace, given: set[str]
) -> dict:
    """The options a resumed run takes from its checkpoint (KEPT_OPTIONS, the objective's) where
    the command line does not give them; an objective option it gives must equal the run's."""
    kept = saved_options(args.out / "last")
    for dest in (dest for dest in OBJECTIVE_OPTIONS if dest in kept and dest in given):
        if getattr(args, dest) != kept[dest]:
            option = "--" + dest.replace("_", "-")
            parser.error(f"{option} {getattr(args, dest)} differs from the run's {kept[dest]}")
    recorded = (*KEPT_OPTIONS, *OBJECTIVE_OPTIONS)
    return {dest: kept[dest] for dest in recorded if dest in kept and dest not in given}


def init_model_options(
    parser: argparse.ArgumentParser, args: argparse.Namespace, given: set[str]
) -> dict:
    """With --init-from, the model is that directory's: the model options are its, and one the
    command line gives must equal it, but for --fine-tune-blocks: which of the encoder's blocks
    train is this run's choice (the tutorial's recipe tunes a converged decoder's encoder), not
    the model's shape."""
    config = json.loads((args.init_from / CONFIG_FILE).read_text())
    values = model_option_values(config)
    for dest, value in values.items():
        if dest != "fine_tune_blocks" and dest in given and getattr(args, dest) != value:
            option = "--" + dest.replace("_", "-")
            parser.error(f"{option} {getattr(args, dest)} differs from {args.init_from}'s {value}")
    if "fine_tune_blocks" in given:
        del values["fine_tune_blocks"]
    return values


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
    defaults = {dest: parser.get_default(dest) for dest in set(recorded) - given}
    return argparse.Namespace(**{**vars(args), **defaults}), given


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
    parser = argparse.ArgumentParser(
        prog="captioner-train",
        description="`captioner-train`: teacher-forced training of the attention decoder "
        "on caption data.",
        formatter_class=HelpWithDefaults,
    )
    add_data_arguments(parser.add_argument_group("data"))
    add_model_arguments(parser.add_argument_group("model"))
    add_optimisation_arguments(parser.add_argument_group("optimisation"))
    add_scst_arguments(parser.add_argument_group("self-critical training"))
    return parser


def add_data_arguments(data: argparse._ArgumentGroup) -> None:
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
        "features are otherwise cached on disk, which at COCO scale takes a large disk)",
    )
    add_workers_argument(data, help="processes loading photos (default: the CPU count, at most 4)")


def add_model_option(group: argparse._ArgumentGroup, option: str, **kwargs) -> None:
    """A model option, whose default is that of the config field it sets."""
    group.add_argument(option, default=config_default(option[2:].replace("-", "_")), **kwargs)


def add_model_arguments(model: argparse._ArgumentGroup) -> None:
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
        help="name objects by copying nouns from the encoder's ImageNet classifier: "
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


def add_optimisation_arguments(opt: argparse._ArgumentGroup) -> None:
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
    opt.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (there are none when stderr is not a terminal)",
    )


def add_scst_arguments(scst: argparse._ArgumentGroup) -> None:
    scst.add_argument(
        "--objective",
        choices=list(LEARNING_RATES),
        default="cross-entropy",
        help="scst: reinforce the CIDEr-D of sampled captions; needs --init-from (or --resume)",
    )
    scst.add_argument(
        "--init-from",
        type=resolve_model,
        metavar="DIR|NAME|hf:OWNER/NAME",
        help="start from this model's weights, vocabulary and model options (a cross-entropy "
        "run's best/, a shipped model's name, a Hub model); model options given must equal its",
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
