"""The PyTorch tutorial's Show-Attend-Tell checkpoints as captioner model directories.

sgrvinod/a-PyTorch-Tutorial-to-Image-Captioning saves `BEST_checkpoint_<data>.pth.tar`: a dict
whose "encoder" and "decoder" are whole pickled modules of its models.py (read here as data,
captioner/safe_unpickle.py), and a `WORDMAP_<data>.json` of word -> id. Its modules map onto
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
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from captioner.decoder import Decoder, DecoderConfig
from captioner.encoder import EncoderConfig
from captioner.safe_unpickle import PickledObject, UnsafePickleError, read_checkpoint
from captioner.vocab import SPECIAL_TOKENS, Vocabulary

SOURCE = "sgrvinod/a-PyTorch-Tutorial-to-Image-Captioning"
IMAGE_SIZE = 256  # caption.py resizes every photo to 256 x 256
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


class TutorialImportError(ValueError):
    """A checkpoint or word map that is not the tutorial's, or does not fit together."""


@dataclasses.dataclass
class TutorialCheckpoint:
    encoder: dict[str, torch.Tensor]  # the tutorial Encoder's state_dict names: "resnet.0.weight"
    decoder: dict[str, torch.Tensor]  # DecoderWithAttention's: "attention.encoder_att.weight"
    grid_size: int
    details: dict[str, Any]  # epoch, bleu-4, ... as train.py saved them


def read_tutorial_checkpoint(path: str | Path) -> TutorialCheckpoint:
    """train.py's checkpoint (whole pickled modules), or the plain-state_dict form
    {"encoder": Encoder.state_dict(), "decoder": DecoderWithAttention.state_dict()}."""
    path = Path(path)
    if not path.is_file():
        raise TutorialImportError(f"{path}: no such checkpoint file")
    try:
        saved = read_checkpoint(path)
    except UnsafePickleError as error:
        raise UnsafePickleError(f"{path}: {error}") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as error:
        raise TutorialImportError(f"{path}: not a readable torch.save file ({error})") from error
    if not isinstance(saved, Mapping) or not {"encoder", "decoder"} <= saved.keys():
        found = sorted(map(str, saved)) if isinstance(saved, Mapping) else type(saved).__name__
        raise TutorialImportError(
            f"{path}: expected the tutorial's checkpoint, a dict with 'encoder' and 'decoder' "
            f"(whole modules as train.py saves them, or their state_dicts); found {found}"
        )
    encoder = saved["encoder"]
    grid = DEFAULT_GRID
    if isinstance(encoder, PickledObject) and isinstance(encoder.state, Mapping):
        grid = encoder.state.get("enc_image_size", DEFAULT_GRID)
        if not isinstance(grid, int) or not 1 <= grid <= 256:
            raise TutorialImportError(f"{path}: the encoder's enc_image_size {grid!r} is no grid")
    details = {k: v for k, v in saved.items() if isinstance(v, int | float | str)}
    return TutorialCheckpoint(
        _module_tensors(encoder, path, "encoder"),
        _module_tensors(saved["decoder"], path, "decoder"),
        grid,
        details,
    )


def _module_tensors(module: Any, path: Path, part: str) -> dict[str, torch.Tensor]:
    """The state_dict of a pickled module or the state_dict itself, without the "module."
    that nn.DataParallel puts before every name."""
    if isinstance(module, PickledObject):
        try:
            module = module.state_dict()
        except ValueError as error:
            raise TutorialImportError(f"{path}: the {part} {error}") from error
    if isinstance(module, Mapping) and all(isinstance(v, torch.Tensor) for v in module.values()):
        if module and all(name.startswith("module.") for name in module):
            return {name.removeprefix("module."): tensor for name, tensor in module.items()}
        return dict(module)
    raise TutorialImportError(
        f"{path}: the checkpoint's {part} is a {type(module).__name__}, neither a pickled "
        "module nor a state_dict of tensors"
    )


def vocabulary_from_word_map(word_map: Any, rows: int) -> tuple[Vocabulary, list[int]]:
    """captioner's vocabulary of the word map, and for each of its ids the tutorial's id (the
    row of the embedding and output layer to take). The tutorial numbers <pad> 0, then the
    words, then <unk>, <start>, <end>; captioner puts its four special tokens first."""
    if not isinstance(word_map, Mapping):
        raise TutorialImportError("the word map must be a JSON object of word -> id")
    missing = [token for token in SPECIAL_TOKENS if token not in word_map]
    if missing:
        raise TutorialImportError(
            f"the word map has no {', '.join(missing)}: the tutorial's WORDMAP_*.json names "
            f"all of {', '.join(SPECIAL_TOKENS)}"
        )
    ids = list(word_map.values())
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise TutorialImportError("the word map's ids must be integers")
    if sorted(ids) != list(range(rows)):
        raise TutorialImportError(
            f"the word map has {len(word_map)} words with ids {min(ids)}..{max(ids)}, but the "
            f"decoder's embedding has {rows} rows: ids 0..{rows - 1}, each once, must match it "
            "(is it the WORDMAP file of this checkpoint's training data?)"
        )
    words = sorted((w for w in word_map if w not in SPECIAL_TOKENS), key=word_map.__getitem__)
    vocab = Vocabulary(words)
    return vocab, [word_map[word] for word in vocab.itos]


def decoder_tensors(
    tutorial: Mapping[str, torch.Tensor], word_map: Any
) -> tuple[DecoderConfig, Vocabulary, dict[str, torch.Tensor]]:
    """DecoderWithAttention's state_dict -> captioner's decoder config, vocabulary, weights."""
    for name in ("embedding.weight", "init_h.weight", "attention.encoder_att.weight"):
        if name not in tutorial or tutorial[name].ndim != 2:
            raise TutorialImportError(
                f"the decoder has no 2-d {name}: not the tutorial's DecoderWithAttention"
            )
    vocab_size, embed_dim = tutorial["embedding.weight"].shape
    decoder_dim, encoder_dim = tutorial["init_h.weight"].shape
    attention_dim = tutorial["attention.encoder_att.weight"].shape[0]
    v, m, d, e, a = vocab_size, embed_dim, decoder_dim, encoder_dim, attention_dim
    _check_shapes(
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
    _check_shapes("encoder", tutorial, {f"resnet.{k}": tuple(v.shape) for k, v in expected.items()})
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


def _check_shapes(
    part: str, found: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]]
) -> None:
    for name, shape in expected.items():
        if name not in found:
            raise TutorialImportError(f"the {part} has no {name}: not the tutorial's {part}")
        if tuple(found[name].shape) != tuple(shape):
            raise TutorialImportError(
                f"the {part}'s {name} has shape {list(found[name].shape)}, but the tutorial's "
                f"layout needs {list(shape)} there"
            )


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
    config = {
        "name": Path(checkpoint).name.removesuffix(".tar").removesuffix(".pth"),
        "encoder": dataclasses.asdict(encoder_config),
        "decoder": dataclasses.asdict(decoder_config),
        "imported_from": {"source": SOURCE, "checkpoint": Path(checkpoint).name, **saved.details},
    }
    tensors = {f"encoder.{k}": v for k, v in encoder.items()}
    tensors |= {f"decoder.{k}": v for k, v in decoder.items()}
    return config, vocab, tensors
