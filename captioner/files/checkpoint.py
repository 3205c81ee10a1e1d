"""A model is a directory: config.json, vocab.json and model.safetensors. Nothing is unpickled."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save
from torch.overrides import TorchFunctionMode

from captioner.decoder import (
    ATTENTION_ACTIVATIONS,
    CONTEXT_GATES,
    GATE_BLOCKS,
    START_STATES,
    Decoder,
    DecoderConfig,
)
from captioner.encoder import Preprocessing
from captioner.photos.atomic import write_dir_atomically
from captioner.registry import CONFIG_FILE, MODEL_FILES, VOCAB_FILE, WEIGHTS_FILE, CheckpointError
from captioner.vocab import SPECIAL_TOKENS, Vocabulary

FORMAT_VERSION = 1
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar")

# Integer fields of config.json and the values a model may sensibly have: far beyond any
# captioning model, far below sizes whose allocation would exhaust a machine's memory.
_DIMENSION = (1, 65_536)
_INTEGER_RANGES = {
    "decoder": {
        "vocab_size": (1, 1_000_000),
        "encoder_dim": _DIMENSION,
        "embed_dim": _DIMENSION,
        "decoder_dim": _DIMENSION,
        "attention_dim": _DIMENSION,
        "copy_nouns": (0, 100_000),
        "copy_classes": (1, 100_000),
    },
    "encoder": {
        "image_size": (32, 4096),  # at least one grid cell at stride 32
        "feature_stride": (1, 64),
        "grid_size": (1, 256),  # or null
        "fine_tune_blocks": (0, 1000),
    },
}
_CHOICES = {
    "cell": tuple(GATE_BLOCKS),
    "start_state": START_STATES,
    "attention_activation": ATTENTION_ACTIVATIONS,
    "context_gate": CONTEXT_GATES,
}
_FLAGS = ("coordinates", "normalize_features", "word_attention", "semantic_features")
_REQUIRED = {"decoder": ("vocab_size", "encoder_dim"), "encoder": ()}
# The decoder tensor that carries each size in config.json: (tensor, axis).
_SIZE_CARRIERS = {
    "vocab_size": ("output.weight", 0),
    "decoder_dim": ("hidden_proj.weight", 1),
    "embed_dim": ("embedding.weight", 1),
    "attention_dim": ("encoder_att.weight", 0),
    "encoder_dim": ("encoder_att.weight", 1),
    "copy_nouns": ("class_to_noun", 1),
    "copy_classes": ("class_to_noun", 0),
}


def save_model_dir(
    path: str | os.PathLike, config: dict, vocab: Vocabulary, tensors: dict[str, torch.Tensor]
) -> Path:
    """Write the three files into `path`, atomically: a crash leaves the old directory intact."""
    return write_dir_atomically(path, lambda tmp: write_model_files(tmp, config, vocab, tensors))


def write_model_files(
    directory: Path, config: dict, vocab: Vocabulary, tensors: dict[str, torch.Tensor]
) -> None:
    """The three files, written straight into `directory` (see `write_dir_atomically`)."""
    config = {"format_version": FORMAT_VERSION, **config}
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    vocab.save(directory / VOCAB_FILE)
    # save() rather than save_file(), which creates the file readable by its owner only.
    weights = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    (directory / WEIGHTS_FILE).write_bytes(weights)


def load_model_dir(path: str | os.PathLike) -> tuple[dict, Vocabulary, dict[str, torch.Tensor]]:
    """Read config, vocabulary and weights; refuse pickle files with an explanation."""
    path = Path(path)
    if path.is_file():
        if path.suffix in PICKLE_SUFFIXES or _looks_pickled(path):
            raise CheckpointError(_pickle_refusal(path))
        raise CheckpointError(
            f"{path}: a model is a directory holding {CONFIG_FILE}, "
            f"{VOCAB_FILE} and {WEIGHTS_FILE}, not a single file"
        )
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such model directory")
    missing = [name for name in MODEL_FILES if not (path / name).is_file()]
    if missing:
        pickles = [p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES]
        if pickles:
            raise CheckpointError(_pickle_refusal(pickles[0]))
        raise CheckpointError(
            f"{path}: not a captioner model directory (missing {', '.join(missing)})"
        )
    try:
        config = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, a 5000-digit number
        raise CheckpointError(f"{path / CONFIG_FILE}: invalid JSON ({err})") from err
    except OSError as err:
        raise CheckpointError(f"{path / CONFIG_FILE}: cannot be read ({err.strerror})") from err
    except RecursionError as err:  # arrays in arrays, thousands deep, exhaust the parser's stack
        raise CheckpointError(f"{path / CONFIG_FILE}: JSON nested too deeply to read") from err
    if not isinstance(config, dict):
        raise CheckpointError(
            f"{path / CONFIG_FILE}: expected a JSON object, found {type(config).__name__}"
        )
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path / CONFIG_FILE}: format_version {version!r} is not supported "
            f"(this captioner reads version {FORMAT_VERSION})"
        )
    where = path / CONFIG_FILE
    check_config(config, where)
    vocab = _load_vocab(path / VOCAB_FILE)
    try:
        # Shapes come from the file's header: nothing is allocated until they are known to fit.
        shapes = weight_shapes(path / WEIGHTS_FILE)
        check_weights_fit_config(config, len(vocab), shapes, where, path / WEIGHTS_FILE)
        tensors = load_file(path / WEIGHTS_FILE)
        check_finite(tensors, path / WEIGHTS_FILE)
        check_noun_ids(tensors, len(vocab), path / WEIGHTS_FILE)
    except CheckpointError:
        raise
    except (
        ValueError,
        OSError,
    ) as err:  # safetensors raises its own errors as ValueError/OSError kin
        raise CheckpointError(f"{path}: {err}") from err
    except Exception as err:  # safetensors_rust.SafetensorError does not derive from the above
        raise CheckpointError(
            f"{path / WEIGHTS_FILE}: not a valid safetensors file ({err})"
        ) from err
    return config, vocab, tensors


def _load_vocab(path: Path) -> Vocabulary:
    try:
        return Vocabulary.load(path)
    except (ValueError, TypeError, OSError) as err:  # TypeError: words that are not strings
        message = str(err)
        # Vocabulary.load names the file in its own errors; JSON's and Python's do not.
        raise CheckpointError(message if str(path) in message else f"{path}: {message}") from err
    except RecursionError as err:  # arrays in arrays, thousands deep
        raise CheckpointError(f"{path}: JSON nested too deeply to read") from err


def weight_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape, read from the safetensors header without loading any tensor."""
    with safe_open(path, framework="pt") as weights:
        names = weights.keys()
        return {name: tuple(weights.get_slice(name).get_shape()) for name in names}


def check_config(config: dict, where: Path | str = CONFIG_FILE) -> None:
    """Raise CheckpointError naming the first field of config.json with a wrong type or value."""
    if not isinstance(config.get("name", ""), str | None):
        raise CheckpointError(f"{where}: name must be a string")
    for section, ranges in _INTEGER_RANGES.items():
        fields = config.get(section)
        if not isinstance(fields, dict):
            raise CheckpointError(f"{where}: {section} must be a JSON object of settings")
        for key in _REQUIRED[section]:
            if key not in fields:
                raise CheckpointError(f"{where}: {section}.{key} is missing")
        for key, (low, high) in ranges.items():
            value = fields.get(key)
            if key not in fields or (key == "grid_size" and value is None):
                continue  # absent keys take their defaults; a null grid_size means no pooling
            if not isinstance(value, int) or isinstance(value, bool):
                raise CheckpointError(f"{where}: {section}.{key} must be an integer, not {value!r}")
            if not low <= value <= high:
                raise CheckpointError(
                    f"{where}: {section}.{key} {value} is out of range ({low}..{high})"
                )
    decoder, encoder = config["decoder"], config["encoder"]
    dropout = decoder.get("dropout", 0.0)
    if not isinstance(dropout, int | float) or isinstance(dropout, bool):
        raise CheckpointError(f"{where}: decoder.dropout must be a number, not {dropout!r}")
    if not (math.isfinite(dropout) and 0 <= dropout < 1):
        raise CheckpointError(f"{where}: decoder.dropout {dropout} is out of range (0 to below 1)")
    for key, choices in _CHOICES.items():
        if key in decoder and decoder[key] not in choices:
            raise CheckpointError(
                f"{where}: decoder.{key} {decoder[key]!r} is not one of {', '.join(choices)}"
            )
    for key in _FLAGS:
        if not isinstance(decoder.get(key, False), bool):
            raise CheckpointError(f"{where}: decoder.{key} must be true or false")
    for key in ("name", "weights"):
        if not isinstance(encoder.get(key), str | None):
            raise CheckpointError(f"{where}: encoder.{key} must be a string")
    preprocessing = config.get("preprocessing", {})
    if not isinstance(preprocessing, dict):
        raise CheckpointError(f"{where}: preprocessing must be a JSON object of settings")
    try:
        Preprocessing.from_dict(preprocessing)
    except ValueError as error:
        raise CheckpointError(f"{where}: preprocessing.{error}") from None


def check_weights_fit_config(
    config: dict,
    vocab_size: int,
    shapes: Mapping[str, tuple[int, ...]],
    where: Path | str = CONFIG_FILE,
    weights: Path | str = WEIGHTS_FILE,
) -> None:
    """Raise CheckpointError unless the decoder config.json describes is the one in `shapes`.

    `config` must have passed check_config. Each size is first compared with the tensor that
    carries it, for a message naming the field; then every tensor's shape is compared with
    those of a decoder built on the meta device, which allocates nothing. Once they all match,
    the decoder that loading builds holds what the weights file holds, never more than its
    size, whatever config.json asks for: safetensors refuses a file whose data does not cover
    every tensor its header lists.
    """
    fields = config["decoder"]
    if fields["vocab_size"] != vocab_size:
        raise CheckpointError(
            f"{where}: decoder.vocab_size {fields['vocab_size']} does not match "
            f"{VOCAB_FILE} ({vocab_size} words)"
        )
    decoder_config = DecoderConfig.from_dict(fields)
    carriers = dict(_SIZE_CARRIERS)
    if decoder_config.semantic_features:  # the attention reads class log-probabilities then
        carriers["encoder_dim"] = ("noun_head_weight", 1)
    for key, (tensor, axis) in carriers.items():
        shape = shapes.get(f"decoder.{tensor}")
        if shape is None or len(shape) <= axis:
            continue  # reported below, with the expected shape
        value = getattr(decoder_config, key)
        field = f"decoder.{key} {value}"
        if key == "encoder_dim" and tensor == "encoder_att.weight" and decoder_config.coordinates:
            value, field = value + 2, f"{field} (+ 2 coordinates)"  # each cell's (x, y)
        if shape[axis] != value:
            raise CheckpointError(
                f"{where}: {field} does not match the weights "
                f"(decoder.{tensor} {list(shape)}: {shape[axis]})"
            )
    with torch.device("meta"), _SkipInitialisers():
        expected = Decoder(decoder_config).state_dict()
    check_shapes(weights, "decoder", {k: tuple(v.shape) for k, v in expected.items()}, shapes)


class _SkipInitialisers(TorchFunctionMode):
    """Leaves out torch.nn.init's initialisers: a meta tensor has no values to fill, and
    normal_ on one imports torch._dynamo, which would slow every start."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


def check_finite(tensors: Mapping[str, torch.Tensor], weights: Path | str = WEIGHTS_FILE) -> None:
    """Raise CheckpointError naming the first floating-point tensor that holds inf or NaN:
    every caption's score would be NaN, and beam search would find none."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{weights}: {name} holds inf or NaN")


def check_noun_ids(
    tensors: Mapping[str, torch.Tensor], vocab_size: int, weights: Path | str = WEIGHTS_FILE
) -> None:
    """Raise CheckpointError unless a copy model's nouns are words of its vocabulary (not
    special tokens) and its class -> noun weights are finite and non-negative."""
    for name in ("decoder.noun_singular_ids", "decoder.noun_plural_ids"):
        ids = tensors.get(name)
        if ids is None:
            continue
        if ids.is_floating_point() or not ((ids >= len(SPECIAL_TOKENS)) & (ids < vocab_size)).all():
            raise CheckpointError(
                f"{weights}: {name} holds ids that are not words of {VOCAB_FILE} "
                f"({len(SPECIAL_TOKENS)}..{vocab_size - 1})"
            )
    class_to_noun = tensors.get("decoder.class_to_noun")
    if class_to_noun is not None and not (
        torch.isfinite(class_to_noun).all() and (class_to_noun >= 0).all()
    ):
        raise CheckpointError(f"{weights}: decoder.class_to_noun must be finite and non-negative")


def check_shapes(
    weights: Path | str,
    part: str,
    expected: Mapping[str, tuple[int, ...]],
    shapes: Mapping[str, tuple[int, ...]],
) -> None:
    """One CheckpointError line for the first `part` tensor ("decoder", "encoder") in the
    weights file that is missing, extra, or of another shape than `expected` (names without
    the part's prefix) says."""
    prefix = f"{part}."
    for name, shape in expected.items():
        found = shapes.get(prefix + name)
        if found is None:
            raise CheckpointError(
                f"{weights}: no tensor {prefix}{name}, which the {part} in {CONFIG_FILE} needs"
            )
        if tuple(found) != tuple(shape):
            raise CheckpointError(
                f"{weights}: {prefix}{name} has shape {list(found)}, "
                f"but the {part} in {CONFIG_FILE} needs {list(shape)}"
            )
    for name in shapes:
        if name.startswith(prefix) and name[len(prefix) :] not in expected:
            raise CheckpointError(f"{weights}: {name} is not part of the {part} in {CONFIG_FILE}")


def _looks_pickled(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(4)
    return head[:1] == b"\x80" or head == b"PK\x03\x04"  # pickle protocol 2+, or torch's zip


def _pickle_refusal(path: Path) -> str:
    return (
        f"{path}: refusing to load a pickle/PyTorch .pt checkpoint: unpickling can run "
        f"arbitrary code. captioner models are directories with {CONFIG_FILE}, {VOCAB_FILE} "
        f"and {WEIGHTS_FILE}; re-save the model with Captioner.save() or captioner-train."
    )
