"""The PyTorch tutorial's Show-Attend-Tell checkpoints as captioner model directories.

sgrvinod/a-PyTorch-Tutorial-to-Image-Captioning saves `BEST_checkpoint_<data>.pth.tar`: a dict
whose "encoder" and "decoder" are whole pickled modules of its models.py (read here as data,
captioner/files/safe_unpickle.py), and a `WORDMAP_<data>.json` of word -> id. Its modules map onto
captioner's one to one:

* Encoder: torchvision's ResNet minus pooling and head (`resnet`, children 0-7), then
  `adaptive_pool` to 14 x 14 -> captioner's torchvision encoder at stride 32, grid 14, on
  256 x 256 photos normalised with ImageNet's mean and std, as its caption.py does.
* DecoderWithAttention: additive attention with ReLU, a sigmoid gate per feature channel
  (`f_beta`), an nn.LSTMCell over [word embedding, gated context] -> captioner's Decoder with
  attention_activation "relu" and context_gate "channel".
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import re
import zipfile
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import torch

from captioner.decoder import Decoder, DecoderConfig
from captioner.encoder import EncoderConfig, Preprocessing
from captioner.files.checkpoint import CheckpointError, check_config
from captioner.files.safe_unpickle import PickledObject, UnsafePickleError, read_checkpoint
from captioner.vocab import SPECIAL_TOKENS, Vocabulary

SOURCE = "sgrvinod/a-PyTorch-Tutorial-to-Image-Captioning"
IMAGE_SIZE = 256  # caption.py resizes every photo to 256 x 256
TUTORIAL_PREPROCESSING = Preprocessing(resize_filter="bilinear", draft_decoding=False)
DEFAULT_GRID = 14  # its Encoder's encoded_image_size
# A torchvision ResNet by the number of bottleneck blocks in its third stage (resnet.6).
RESNETS_BY_STAGE3_BLOCKS = {6: "resnet50", 23: "resnet101", 36: "resnet152"}
RESNET_FEATURES = 2048  # channels of their last stage
# captioner's backbone is Sequential(stem, layer1..layer4) with stem = Sequential(conv1, bn1,
# relu, maxpool); the tutorial's `resnet` is the same children unnested, numbered 0-7.
_BACKBONE_INDEX = {"0": "0.0", "1": "0.1", "4": "1", "5": "2", "6": "3", "7": "4"}
# The tutorial fine-tunes resnet children 5-7 (train.py's fine_tune_encoder): captioner's
# last three blocks. Marking them trainable also makes Captioner.save keep the weights.
FINE_TUNED_BLOCKS = 3
# The tutorial's COCO word map is 0.2 MB; a file far larger is no word map.
WORD_MAP_MAX_BYTES = 64 * 2**20
MAX_ID_DIGITS = 9  # no vocabulary has a billion words
# Entries of the checkpoint beside its modules (train.py's epoch, epochs_since_improvement,
# bleu-4) are kept in config.json's imported_from when they are plain: a short name, a finite
# number JSON readers hold exactly, a short line of text.
_DETAIL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\- ]{0,63}")
_DETAIL_INT_LIMIT = 2**53
_DETAIL_TEXT_LIMIT = 200
_OWN_FIELDS = ("source", "checkpoint", "dropped")  # imported_from's fields, never a detail's


class TutorialImportError(ValueError):
    """A checkpoint or word map that is not the tutorial's, or does not fit together."""


@dataclasses.dataclass
class TutorialCheckpoint:
    encoder: dict[str, torch.Tensor]  # the tutorial Encoder's state_dict names: "resnet.0.weight"
    decoder: dict[str, torch.Tensor]  # DecoderWithAttention's: "attention.encoder_att.weight"
    grid_size: int
    details: dict[str, Any]  # epoch, bleu-4, ... as train.py saved them
    dropped: list[str] = dataclasses.field(default_factory=list)  # details that were not plain


def read_tutorial_checkpoint(path: str | Path) -> TutorialCheckpoint:
    """train.py's checkpoint (whole pickled modules), or the plain-state_dict form
    {"encoder": Encoder.state_dict(), "decoder": DecoderWithAttention.state_dict()}."""
    path = Path(path)
    if not path.is_file():
        raise TutorialImportError(f"{path}: {_no_file(path)}, not the checkpoint file")
    try:
        saved = read_checkpoint(path)
    except UnsafePickleError as error:
        raise UnsafePickleError(f"{path}: {error}") from None
    except (
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        RuntimeError,
        EOFError,
        ValueError,
        OSError,
    ) as error:
        raise TutorialImportError(f"{path}: not a readable torch.save file ({error})") from error
    if not isinstance(saved, Mapping) or not {"encoder", "decoder"} <= saved.keys():
        raise TutorialImportError(
            f"{path}: expected the tutorial's checkpoint, a dict with 'encoder' and 'decoder' "
            "(whole modules as train.py saves them, or their state_dicts); found "
            + (_names(saved) if isinstance(saved, Mapping) else f"a {type(saved).__name__}")
        )
    encoder = saved["encoder"]
    grid = DEFAULT_GRID
    if isinstance(encoder, PickledObject) and isinstance(encoder.state, Mapping):
        grid = encoder.state.get("enc_image_size", DEFAULT_GRID)
        if not isinstance(grid, int) or isinstance(grid, bool) or not 1 <= grid <= 256:
            raise TutorialImportError(
                f"{path}: the encoder's enc_image_size {_short(grid)} is no grid (1..256)"
            )
    details, dropped = _plain_details(saved)
    return TutorialCheckpoint(
        _module_tensors(encoder, path, "encoder"),
        _module_tensors(saved["decoder"], path, "decoder"),
        grid,
        details,
        dropped,
    )


def _plain_details(saved: Mapping) -> tuple[dict[str, Any], list[str]]:
    """The checkpoint's numbers and strings that config.json can hold as they are, and the
    names of those it cannot (a huge integer, inf, a long text, a name that is no string)."""
    details, dropped = {}, []
    for name, value in saved.items():
        if not isinstance(value, int | float | str):
            continue  # the modules, the optimizers: not details
        plain_name = isinstance(name, str) and _DETAIL_NAME.fullmatch(name)
        if isinstance(value, str):
            plain = len(value) <= _DETAIL_TEXT_LIMIT and value.isprintable()
        elif isinstance(value, float):
            plain = math.isfinite(value)
        else:
            plain = abs(value) <= _DETAIL_INT_LIMIT
        if plain_name and plain and name not in _OWN_FIELDS:
            details[name] = value
        else:
            dropped.append(_short(name))
    return details, dropped


def _short(value: Any, limit: int = 40) -> str:
    """A string's repr, cut to `limit` characters; of anything else, only its type (the repr
    of a 5,000-digit int is an error, of a long list a page)."""
    if not isinstance(value, str):
        return f"<{type(value).__name__}>"
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 4]}...{text[-1]}"


def _names(mapping: Mapping, most: int = 10) -> str:
    names = [_short(name) for name in mapping]
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return f"keys {', '.join(sorted(names)[:most])}{more}" if names else "an empty dict"


def _module_tensors(module: Any, path: Path, part: str) -> dict[str, torch.Tensor]:
    """The state_dict of a pickled module or the state_dict itself, without the "module."
    that nn.DataParallel puts before every name."""
    if isinstance(module, PickledObject):
        try:
            module = module.state_dict()
        except ValueError as error:
            raise TutorialImportError(f"{path}: the {part} {error}") from error
    if not isinstance(module, Mapping):
        raise TutorialImportError(
            f"{path}: the checkpoint's {part} is a {type(module).__name__}, neither a pickled "
            "module nor a state_dict of tensors"
        )
    for name, value in module.items():
        if not isinstance(name, str):
            raise TutorialImportError(
                f"{path}: the {part}'s state_dict names a weight with {_short(name)}, not a string"
            )
        if not isinstance(value, torch.Tensor):
            raise TutorialImportError(
                f"{path}: the {part}'s {_short(name)} is a {type(value).__name__}, not a tensor"
            )
        if value.layout != torch.strided:
            raise TutorialImportError(
                f"{path}: the {part}'s {_short(name)} is a {value.layout} tensor, not a dense one"
            )
    if module and all(name.startswith("module.") for name in module):
        return {name.removeprefix("module."): tensor for name, tensor in module.items()}
    return dict(module)


def read_word_map(path: str | Path) -> Any:
    """The parsed WORDMAP_*.json (vocabulary_from_word_map checks what it holds)."""
    path = Path(path)
    try:
        if not path.is_file():  # a FIFO or device would be read forever
            raise TutorialImportError(f"{path}: {_no_file(path)}, not the word map file")
        if path.stat().st_size > WORD_MAP_MAX_BYTES:
            raise TutorialImportError(
                f"{path}: {path.stat().st_size:,} bytes, too large for a word map "
                f"(at most {WORD_MAP_MAX_BYTES:,})"
            )
        return json.loads(path.read_bytes().decode("utf-8"), parse_int=_word_id)
    except TutorialImportError:
        raise
    except RecursionError:
        raise TutorialImportError(f"{path}: JSON nested too deeply to be a word map") from None
    except (OSError, ValueError) as error:  # UnicodeDecodeError, JSONDecodeError are ValueErrors
        raise TutorialImportError(f"{path}: cannot read the word map ({error})") from None


def _no_file(path: Path) -> str:
    if not path.exists():
        return "no such file"
    return "a directory" if path.is_dir() else "not a regular file"


def _word_id(digits: str) -> int:
    """json's parse_int: refuses a number too long to be an id before Python converts it
    (past 4,300 digits that conversion is an error of its own)."""
    if len(digits.lstrip("-")) > MAX_ID_DIGITS:
        raise ValueError(f"an id of {len(digits.lstrip('-')):,} digits, no word's id")
    return int(digits)


def vocabulary_from_word_map(word_map: Any, rows: int) -> tuple[Vocabulary, list[int]]:
    """captioner's vocabulary of the word map, and for each of its ids the tutorial's id (the
    row of the embedding and output layer to take). The tutorial numbers <pad> 0, then the
    words, then <unk>, <start>, <end>; captioner puts its four special tokens first."""
    if not isinstance(word_map, Mapping):
        raise TutorialImportError(
            f"the word map must be a JSON object of word -> id, not a {type(word_map).__name__}"
        )
    missing = [token for token in SPECIAL_TOKENS if token not in word_map]
    if missing:
        raise TutorialImportError(
            f"the word map has no {', '.join(missing)}: the tutorial's WORDMAP_*.json names "
            f"all of {', '.join(SPECIAL_TOKENS)}"
        )
    for word, i in word_map.items():
        # A word as vocab.json and the tokenizer know them: printable, no space at either end
        # or doubled (a phrase is words joined by one space).
        if not isinstance(word, str) or not word.isprintable() or word != " ".join(word.split()):
            raise TutorialImportError(f"the word map's {_short(word)} is not a word")
        if not isinstance(i, int) or isinstance(i, bool):
            raise TutorialImportError(
                f"the word map's ids must be integers; {_short(word)} has a {type(i).__name__}"
            )
    ids = sorted(word_map.values())
    if ids != list(range(rows)):
        outside = sum(not 0 <= i < rows for i in ids)
        raise TutorialImportError(
            f"the word map has {len(ids)} words ({outside} of their ids outside 0..{rows - 1}), "
            f"but the decoder's embedding has {rows} rows: ids 0..{rows - 1}, each once, must "
            "match it (is it the WORDMAP file of this checkpoint's training data?)"
        )
    words = sorted((w for w in word_map if w not in SPECIAL_TOKENS), key=word_map.__getitem__)
    vocab = Vocabulary(words)
    return vocab, [word_map[word] for word in vocab.itos]


def decoder_tensors(
    tutorial: Mapping[str, torch.Tensor], word_map: Any
) -> tuple[DecoderConfig, Vocabulary, dict[str, torch.Tensor]]:
    """DecoderWithAttention's state_dict -> captioner's decoder config, vocabulary, weights."""
    for name in ("embedding.weight", "init_h.weight", "attention.encoder_att.weight"):
        if not isinstance(tutorial.get(name), torch.Tensor) or tutorial[name].ndim != 2:
            raise TutorialImportError(
                f"the decoder has no 2-d {name}: not the tutorial's DecoderWithAttention"
            )
    vocab_size, embed_dim = tutorial["embedding.weight"].shape
    decoder_dim, encoder_dim = tutorial["init_h.weight"].shape
    attention_dim = tutorial["attention.encoder_att.weight"].shape[0]
    v, m, d, e, a = vocab_size, embed_dim, decoder_dim, encoder_dim, attention_dim
    _check_tensors(
        "decoder",
        tutorial,
        {
            "attention.encoder_att.weight": (a, e),
            "attention.encoder_att.bias": (a,),
            "attention.decoder_att.weight": (a, d),
            "attention.decoder_att.bias": (a,),
            "attention.full_att.weight": (1, a),
            "attention.full_att.bias": (1,),
            "embedding.weight": (v, m),
            "decode_step.weight_ih": (4 * d, m + e),
            "decode_step.weight_hh": (4 * d, d),
            "decode_step.bias_ih": (4 * d,),
            "decode_step.bias_hh": (4 * d,),
            "init_h.weight": (d, e),
            "init_h.bias": (d,),
            "init_c.weight": (d, e),
            "init_c.bias": (d,),
            "f_beta.weight": (e, d),
            "f_beta.bias": (e,),
            "fc.weight": (v, d),
            "fc.bias": (v,),
        },
    )
    vocab, rows = vocabulary_from_word_map(word_map, vocab_size)
    rows = torch.tensor(rows)
    config = DecoderConfig(
        vocab_size=vocab_size,
        encoder_dim=encoder_dim,
        embed_dim=embed_dim,
        decoder_dim=decoder_dim,
        attention_dim=attention_dim,
        attention_activation="relu",
        context_gate="channel",
    )
    try:  # sizes that captioner loads, checked before a Decoder of them is built
        check_config({"decoder": dataclasses.asdict(config), "encoder": {}}, "the checkpoint")
    except CheckpointError as error:
        raise TutorialImportError(str(error)) from None
    t = tutorial
    tensors = {
        "embedding.weight": t["embedding.weight"][rows],
        "encoder_att.weight": t["attention.encoder_att.weight"],
        "encoder_att.bias": t["attention.encoder_att.bias"],
        "decoder_att.weight": t["attention.decoder_att.weight"],
        "decoder_att.bias": t["attention.decoder_att.bias"],
        # full_att's bias is dropped: it shifts every cell's score alike, which softmax ignores.
        "full_att.weight": t["attention.full_att.weight"],
        "context_gate.weight": t["f_beta.weight"],
        "context_gate.bias": t["f_beta.bias"],
        "init_h.weight": t["init_h.weight"],
        "init_h.bias": t["init_h.bias"],
        "init_c.weight": t["init_c.weight"],
        "init_c.bias": t["init_c.bias"],
        # nn.LSTMCell's gate blocks are (input, forget, cell, output), as captioner's; its
        # input is [embedding, gated context], as captioner's input_proj reads it.
        "input_proj.weight": t["decode_step.weight_ih"],
        "input_proj.bias": t["decode_step.bias_ih"],
        "hidden_proj.weight": t["decode_step.weight_hh"],
        "hidden_proj.bias": t["decode_step.bias_hh"],
        "output.weight": t["fc.weight"][rows],
        "output.bias": t["fc.bias"][rows],
    }
    Decoder(config).load_state_dict(tensors)  # strict: every tensor the decoder has, no other
    return config, vocab, tensors


def encoder_tensors(
    tutorial: Mapping[str, torch.Tensor], grid_size: int = DEFAULT_GRID
) -> tuple[EncoderConfig, dict[str, torch.Tensor]]:
    """The tutorial Encoder's state_dict -> captioner's encoder config and weights."""
    import torchvision  # a second to import: only when importing an encoder

    stage3 = {m.group(1) for k in tutorial if (m := re.match(r"resnet\.6\.(\d+)\.", k))}
    name = RESNETS_BY_STAGE3_BLOCKS.get(len(stage3))
    if name is None:
        raise TutorialImportError(
            f"the encoder's third ResNet stage (resnet.6) has {len(stage3)} blocks; a "
            "torchvision ResNet-50, -101 or -152 (6, 23 or 36 blocks) was expected"
        )
    network = torchvision.models.get_model(name, weights=None)
    expected = torch.nn.Sequential(*list(network.children())[:-2]).state_dict()
    _check_tensors(
        "encoder",
        tutorial,
        {f"resnet.{k}": tuple(v.shape) for k, v in expected.items()},
        counters={f"resnet.{k}" for k, v in expected.items() if not v.is_floating_point()},
    )
    extra = sorted(set(tutorial) - {f"resnet.{k}" for k in expected})
    if extra:
        raise TutorialImportError(f"the encoder has {extra[0]}, which {name} does not")
    tensors = {}
    for key, tensor in tutorial.items():
        child, rest = key.removeprefix("resnet.").split(".", 1)
        if child not in _BACKBONE_INDEX:
            raise TutorialImportError(f"the encoder's {key} is not a weight of {name}'s layers")
        tensors[f"backbone.{_BACKBONE_INDEX[child]}.{rest}"] = tensor
    config = EncoderConfig(
        name=name,
        image_size=IMAGE_SIZE,
        feature_stride=32,
        grid_size=grid_size,
        fine_tune_blocks=FINE_TUNED_BLOCKS,
    )
    return config, tensors


def _check_tensors(
    part: str,
    found: Mapping[str, torch.Tensor],
    expected: Mapping[str, tuple[int, ...]],
    counters: Collection[str] = (),
) -> None:
    """Every expected weight is a dense tensor of its shape, of floating point numbers but for
    the `counters` (BatchNorm's num_batches_tracked), which are integers."""
    for name, shape in expected.items():
        tensor = found.get(name)
        if tensor is None:
            raise TutorialImportError(f"the {part} has no {name}: not the tutorial's {part}")
        if not isinstance(tensor, torch.Tensor) or tensor.layout != torch.strided:
            raise TutorialImportError(f"the {part}'s {name} is not a dense tensor")
        if tuple(tensor.shape) != tuple(shape):
            raise TutorialImportError(
                f"the {part}'s {name} has shape {list(tensor.shape)}, but the tutorial's "
                f"layout needs {list(shape)} there"
            )
        if name in counters:
            fits = tensor.dtype in (torch.int64, torch.int32, torch.int16, torch.int8)
        else:
            fits = tensor.is_floating_point()
        if not fits:
            needs = "integers" if name in counters else "floating point numbers"
            raise TutorialImportError(
                f"the {part}'s {name} holds {tensor.dtype}, but the tutorial's layout needs "
                f"{needs} there"
            )


def _own_storage(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors, each after the first on a storage copied: safetensors refuses to write two
    over one storage, so a checkpoint's tied or aliased weights would fail only at the end."""
    storages: set[int] = set()
    owned = {}
    for name, tensor in tensors.items():
        storage = tensor.untyped_storage().data_ptr()
        owned[name] = tensor.clone() if storage in storages else tensor
        storages.add(storage)
    return owned


def tutorial_model_files(
    checkpoint: str | Path, word_map: Any
) -> tuple[dict, Vocabulary, dict[str, torch.Tensor]]:
    """(config, vocabulary, tensors) of a captioner model directory (checkpoint.save_model_dir)
    from the tutorial's checkpoint file and its word map (the parsed WORDMAP JSON)."""
    saved = read_tutorial_checkpoint(checkpoint)
    decoder_config, vocab, decoder = decoder_tensors(saved.decoder, word_map)
    encoder_config, encoder = encoder_tensors(saved.encoder, saved.grid_size)
    if decoder_config.encoder_dim != RESNET_FEATURES:
        raise TutorialImportError(
            f"the decoder reads {decoder_config.encoder_dim} features per cell, but a "
            f"{encoder_config.name} gives {RESNET_FEATURES}"
        )
    imported_from = {"source": SOURCE, "checkpoint": Path(checkpoint).name, **saved.details}
    if saved.dropped:  # the command tells of them too
        imported_from["dropped"] = saved.dropped
    config = {
        "name": Path(checkpoint).name.removesuffix(".tar").removesuffix(".pth"),
        "encoder": dataclasses.asdict(encoder_config),
        "decoder": dataclasses.asdict(decoder_config),
        # caption.py reads every pixel (scipy's imread) and resizes the full photo with plain
        # bilinear (scipy's imresize): the features the decoder was trained on.
        "preprocessing": dataclasses.asdict(TUTORIAL_PREPROCESSING),
        "imported_from": imported_from,
    }
    tensors = {f"encoder.{k}": v for k, v in encoder.items()}
    tensors |= {f"decoder.{k}": v for k, v in decoder.items()}
    return config, vocab, _own_storage(tensors)
