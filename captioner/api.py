"""The Python API: `Captioner.load()` then `caption()`, or `encode()` once and `decode()` often."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.weak import WeakIdKeyDictionary

from captioner.backends import resolve_backend, resolve_precision
from captioner.beam import Hypothesis, beam_search
from captioner.consensus import consensus_ranking, sample_captions
from captioner.decoder import Decoder, DecoderConfig, ImageMemory
from captioner.device import resolve_device
from captioner.encoder import Encoder, EncoderConfig, Preprocessing
from captioner.files.checkpoint import check_shapes, load_model_dir, save_model_dir
from captioner.library.records import TaughtRecord
from captioner.noun_tree import (
    DEFAULT_CONFIDENCE,
    ROOT,
    Hedge,
    NounTree,
    NounTreeError,
    model_tree,
)
from captioner.onnx_backend import class_head, onnx_encoder
from captioner.options import DecodeOptions
from captioner.people import cell_probs as person_cells
from captioner.people import load_detector, pixels_to_images, with_people
from captioner.photos.images import ImageError, ImageSource, load_image
from captioner.pipeline import caption_batches, photo_batches
from captioner.pointing import word_maps
from captioner.registry import CONFIG_FILE, WEIGHTS_FILE, CheckpointError, resolve_model
from captioner.results import CaptionResult
from captioner.rules import BANNED_IDS, COUNT_WORDS, SIZE_WORDS, SMALL_WORDS
from captioner.taught import (
    TaughtExample,
    box_weights,
    build_taught,
    check_word,
    example_vectors,
    from_record,
    taught_digest,
)
from captioner.vocab import SPECIAL_TOKENS, Vocabulary, fix_articles


class Captioner:
    """An encoder, a decoder and their vocabulary, on one device."""

    def __init__(
        self,
        encoder: Encoder,
        decoder: Decoder,
        vocab: Vocabulary,
        *,
        name: str = "untitled",
        device: str | torch.device = "cpu",
        backend: str = "torch",
        precision: str = "float",
    ) -> None:
        if decoder.config.vocab_size != len(vocab):
            raise ValueError(
                f"decoder has {decoder.config.vocab_size} words, vocabulary {len(vocab)}"
            )
        self.device = resolve_device(device)
        self.encoder = encoder.to(self.device).eval()
        self.decoder = decoder.to(self.device).eval()
        self.vocab = vocab
        self.name = name
        self.backend = resolve_backend(backend, self.device)
        self.precision = resolve_precision(precision, self.backend, self.device)
        # What encode runs: the encoder itself, or its graph in ONNX Runtime, which also gives
        # a copy model's class log-probabilities (kept for decode, by the features they go with).
        self._onnx = (
            onnx_encoder(
                self.encoder, classifier=class_head(self.decoder), precision=self.precision
            )
            if self.backend == "onnx"
            else None
        )
        self._class_log_probs = WeakIdKeyDictionary()
        # Taught words (teach, forget): their examples, and the vocabulary the model's captions
        # are read with, which has the words the model did not know (ids from vocab_size on).
        self._taught: dict[str, list[TaughtExample]] = {}
        self._taught_vocab: Vocabulary | None = None
        # Hedging (noun_tree.py): the model's noun tree, if it has one, and the confidence.
        self._noun_tree: NounTree | None = None
        self._hedging: float | None = None
        self._hedge_root: str | None = ROOT
        # The person detector's cells (people.py) by the features they go with, while on.
        self._people: WeakIdKeyDictionary | None = None
        self.decoder.size_word_ids = tuple(vocab.stoi[w] for w in SIZE_WORDS if w in vocab.stoi)
        self.decoder.small_word_ids = tuple(vocab.stoi[w] for w in SMALL_WORDS if w in vocab.stoi)
        self.decoder.count_word_ids = tuple(vocab.stoi[w] for w in COUNT_WORDS if w in vocab.stoi)

    @classmethod
    def load(
        cls,
        model: str | os.PathLike | None = None,
        *,
        device: str = "auto",
        backend: str = "auto",
        precision: str = "float",
    ) -> Captioner:
        """A model directory, the name of a model shipped in the package ("default",
        "shapes"; see `registry.shipped_models()`), or a Hugging Face Hub model, "hf:OWNER/NAME" or
        "hf:OWNER/NAME@REVISION" (downloaded once into huggingface_hub's cache; HubError when
        it cannot be had); None is "default". A path that exists is always read as a
        directory, so a folder named "shapes" in the current directory is never taken for the
        shipped model; `registry.shipped_model("shapes")` names the shipped one.

        backend: "auto" runs ONNX Runtime on a CPU when it is installed, else PyTorch;
        "torch" or "onnx" (CPU only) choose.
        precision: "float", "int8" (the onnx backend's encoder quantized, built once and cached;
        float with a PrecisionWarning where it cannot run) or "auto" (int8 where it measured
        as good as float: captioner.quantize.AUTO_INT8); `precision` says which runs."""
        path = resolve_model(model)
        # load_model_dir checks config.json against the weights before they are read, so the
        # decoder built here is the size of the weights file, never what a typo asks for.
        config, vocab, tensors = load_model_dir(path)
        encoder_state = {k[8:]: v for k, v in tensors.items() if k.startswith("encoder.")}
        decoder_state = {k[8:]: v for k, v in tensors.items() if k.startswith("decoder.")}
        try:
            # A model's encoder weights come from its directory, a local file config.json
            # names, or a package; never from a download the user did not ask for.
            encoder = Encoder(
                EncoderConfig.from_dict(config["encoder"]),
                pretrained=not encoder_state,
                download=False,
                preprocessing=Preprocessing.from_dict(config.get("preprocessing", {})),
            )
        except (OSError, ValueError) as err:  # the weights file config.json names, or no file
            raise CheckpointError(f"{Path(path) / CONFIG_FILE}: {err}") from err
        weights = Path(path) / WEIGHTS_FILE
        if encoder_state:
            expected = {k: tuple(v.shape) for k, v in encoder.state_dict().items()}
            check_shapes(weights, "encoder", expected, {k: v.shape for k, v in tensors.items()})
            encoder.load_state_dict(encoder_state)
        decoder_config = DecoderConfig.from_dict(config["decoder"])
        if decoder_config.encoder_dim != encoder.encoder_dim:
            raise CheckpointError(
                f"{Path(path) / CONFIG_FILE}: decoder.encoder_dim {decoder_config.encoder_dim} "
                f"does not match the encoder ({encoder.config.name} gives {encoder.encoder_dim} "
                f"features at stride {encoder.config.feature_stride})"
            )
        decoder = Decoder(decoder_config)
        decoder.load_state_dict(decoder_state)
        name = config.get("name") or Path(path).resolve().name
        tree = None
        if decoder.config.copy_nouns:  # checked before anything slower is built
            try:
                tree = model_tree(path, [vocab.itos[i] for i in decoder.noun_singular_ids])
            except NounTreeError as err:
                raise CheckpointError(str(err)) from err
        captioner = cls(
            encoder, decoder, vocab, name=name, device=device, backend=backend, precision=precision
        )
        if decoder.config.copy_nouns:
            captioner._noun_tree = tree
            if tree is not None:
                captioner.set_hedging(DEFAULT_CONFIDENCE)
            if "person" in captioner._copy_nouns() and importlib.util.find_spec("cv2"):
                try:
                    captioner.set_people(True)
                except OSError as error:  # the captions go on without "person"
                    warnings.warn(f"people are not named: {error}", RuntimeWarning, stacklevel=2)
        return captioner

    @functools.cached_property
    def identity(self) -> str:
        """A SHA-256 (hex) of the model's config and weights, as `save` would write them: the
        same for every load of one model directory, different for a retrained model under
        the same name. The caption library keys the model's captions by it. Computed once,
        on first use (a few milliseconds for the shipped models' weights)."""
        config, vocab, tensors = self.model_files()
        digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
        digest.update(json.dumps(vocab.itos).encode())
        for name in sorted(tensors):
            tensor = tensors[name].detach().to("cpu").contiguous()
            digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    @property
    def captions_identity(self) -> str:
        """What the caption library keys this captioner's captions by: the model's `identity`,
        followed by whatever else changes what it says: the taught words it uses, an int8
        encoder, hedging and the person detector. Two captioners with equal captions_identity
        and options give the same captions, so a caption stored by one is current for the other."""
        parts = [self.identity]
        taught = taught_digest(self.taught_words())
        if taught:
            parts.append(f"taught:{taught}")
        if self.precision == "int8":
            parts.append("int8")
        if self.hedging is not None:
            parts.append(f"hedge:{self.hedging}:{self._hedge_root}")
        if self.people:
            parts.append("people")
        return "+".join(parts)

    @functools.cached_property
    def encoder_identity(self) -> str:
        """A SHA-256 (hex) of what makes the encoder's features: its config, and its weights
        when they are the model's own (fine-tuned). Taught words' examples are features, so
        they apply to every model with this encoder identity and to no other."""
        digest = hashlib.sha256(json.dumps(dataclasses.asdict(self.encoder.config)).encode())
        if self.encoder.trainable:
            for name, tensor in sorted(self.encoder.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
        return digest.hexdigest()

    @property
    def can_learn_words(self) -> bool:
        """Whether taught words can be said: only a copy model copies nouns from the image."""
        return self.decoder.copy_head is not None

    def teach(
        self,
        word: str,
        photos: ImageSource | Sequence[ImageSource],
        boxes: Sequence[Sequence[float] | None] | None = None,
    ) -> list[TaughtExample]:
        """Teach `word` (a noun of one or two words) from photos that show it; the next
        caption can say it. Returns the examples added (what the caption library stores):
        a photo already taught for the word (same file and box, or the same features) adds
        none. boxes: per photo (left, top, right, bottom) as fractions of its size, or None;
        without a box the example is the cells the model attends to when it names the photo's
        main thing (the word the copy gate is highest at), which is what the person corrects.

        ValueError: a word that is no noun, a model without a copy path, a bad box;
        ImageError: a photo that cannot be read (it no longer exists)."""
        word = check_word(word)
        if not self.can_learn_words:
            raise ValueError(
                f"the model {self.name!r} has no copy path: it cannot say taught words "
                "(load a copy model, such as 'default')"
            )
        sources = [photos] if _is_single(photos) else list(photos)
        boxes = list(boxes) if boxes is not None else [None] * len(sources)
        if len(boxes) != len(sources):
            raise ValueError(f"{len(sources)} photos but {len(boxes)} boxes")
        features = self.encode(sources)  # (photos, gh, gw, encoder_dim)
        grid = tuple(features.shape[1:3])
        unboxed = [i for i, box in enumerate(boxes) if box is None]
        results = self.decode(features[unboxed]) if unboxed else []
        attended = dict(zip(unboxed, results, strict=True))
        known = self._taught.get(word, [])
        added = []
        for i, (source, box) in enumerate(zip(sources, boxes, strict=True)):
            if box is not None:
                box = tuple(float(v) for v in box)
                weights = box_weights(grid, box)  # (gh, gw)
            else:
                weights = _named_cells(attended[i])  # (gh, gw)
            vector, background = example_vectors(features[i].cpu(), weights)
            path = os.fspath(source) if isinstance(source, str | os.PathLike) else None
            example = TaughtExample(word, vector, background, path, box)
            if not any(_same_example(example, other) for other in known + added):
                added.append(example)
        if added:
            self._set_taught({**self._taught, word: known + added})
        return added

    def add_examples(self, examples: Sequence[TaughtExample]) -> None:
        """Use examples taught before (from the caption library) as `teach` would."""
        if not examples:
            return
        taught = {word: list(known) for word, known in self._taught.items()}
        for example in examples:
            taught.setdefault(check_word(example.word), []).append(example)
        self._set_taught(taught)

    def use_taught(self, records: Sequence[TaughtRecord]) -> str | None:
        """Use the caption library's taught words (Library.taught()) in place of those taught
        so far. Examples from another encoder are kept in the library but not used, since
        their features mean nothing to this one; returns a sentence saying so (or that this
        model cannot say taught words), or None when every word applies."""
        mine = [r for r in records if r.encoder == self.encoder_identity]
        if records and not self.can_learn_words:
            return (
                f"{len({r.word for r in records})} taught words not used: the model "
                f"{self.name!r} has no copy path, so it cannot say them"
            )
        self._set_taught({})
        self.add_examples([from_record(r) for r in mine])
        others = sorted({r.word for r in records} - {r.word for r in mine})
        if not others:
            return None
        return (
            f"taught words not used with this model: {', '.join(others)} (taught with "
            f"another encoder than {self.encoder.config.name}'s; kept in the library)"
        )

    def forget(self, word: str, source: str | os.PathLike | None = None) -> bool:
        """Forget a taught word, or only its examples from the photo `source`; False if there
        was nothing to forget."""
        word = " ".join(word.split()).lower()
        if word not in self._taught:
            return False
        kept = []
        if source is not None:
            kept = [e for e in self._taught[word] if e.source != os.fspath(source)]
            if len(kept) == len(self._taught[word]):
                return False
        taught = {w: examples for w, examples in self._taught.items() if w != word}
        if kept:
            taught[word] = kept
        self._set_taught(taught)
        return True

    def taught_words(self) -> dict[str, list[TaughtExample]]:
        """Every taught word and its examples, in the order they were taught."""
        return {word: list(examples) for word, examples in self._taught.items()}

    def _set_taught(self, taught: dict[str, list[TaughtExample]]) -> None:
        """Rebuild what the copy head reads (milliseconds, even for 200 words: no training)."""
        if not taught:
            self._taught, self._taught_vocab = {}, None
            self.decoder.set_taught(None)
            return
        backgrounds = {}
        for word, examples in taught.items():
            around = [e.background for e in examples if e.background is not None]
            if around:
                backgrounds[word] = torch.stack(around)  # (examples with one, encoder_dim)
        decoder = self.decoder
        nouns, new_words = build_taught(
            {word: torch.stack([e.vector for e in examples]) for word, examples in taught.items()},
            backgrounds,
            self.vocab.stoi,
            decoder.config.vocab_size,
            decoder.embedding.weight.detach()[decoder.noun_singular_ids],
        )
        words = Vocabulary(self.vocab.itos[len(SPECIAL_TOKENS) :] + new_words)
        self._taught, self._taught_vocab = taught, words
        decoder.set_taught(nouns)
        self.set_hedging(self._hedging, root=self._hedge_root)  # a taught word may be one

    def save(self, path: str | os.PathLike, extra_config: dict | None = None) -> Path:
        """Write config.json, vocab.json, model.safetensors (encoder weights only if fine-tuned)."""
        return save_model_dir(path, *self.model_files(extra_config))

    def model_files(self, extra_config: dict | None = None) -> tuple[dict, Vocabulary, dict]:
        """(config, vocabulary, tensors) as `save` writes them, for callers adding files."""
        tensors = {f"decoder.{k}": v for k, v in self.decoder.state_dict().items()}
        if self.encoder.trainable:
            tensors.update({f"encoder.{k}": v for k, v in self.encoder.state_dict().items()})
        config = {
            "name": self.name,
            "encoder": dataclasses.asdict(self.encoder.config),
            "decoder": self.decoder.config.to_dict(),
            **(extra_config or {}),
        }
        # Written only when not the default, so that the config.json (and the identity) of
        # every model saved before preprocessing was recorded stays as it was.
        if self.encoder.preprocessing != Preprocessing():
            config["preprocessing"] = dataclasses.asdict(self.encoder.preprocessing)
        return config, self.vocab, tensors

    def preprocess(self, source: ImageSource) -> torch.Tensor:
        """One photo -> the encoder's (3, size, size) input; raises ImageError."""
        image = load_image(source, min_size=self.encoder.decode_size)
        return self.encoder.preprocess(image)

    @torch.inference_mode()
    def encode(self, images: ImageSource | Sequence[ImageSource] | torch.Tensor) -> torch.Tensor:
        """Photos, or a preprocessed (batch, 3, H, W) tensor -> (batch, gh, gw, encoder_dim)."""
        if not isinstance(images, torch.Tensor):
            sources = [images] if _is_single(images) else list(images)
            images = torch.stack([self.preprocess(source) for source in sources])
        images = images.to(self.device)
        features = self._run_encoder(images)
        if self._people is not None:  # kept for decode, by the features they go with
            photos = pixels_to_images(images, self.encoder.mean, self.encoder.std)
            self._people[features] = person_cells(photos, tuple(features.shape[1:3]))
        return features

    def _run_encoder(self, images: torch.Tensor) -> torch.Tensor:
        """(batch, 3, H, W) on the device -> (batch, gh, gw, encoder_dim)."""
        if self._onnx is None:
            if self.device.type != "cpu":
                return self.encoder(images)
            # A CPU encodes fastest a few photos at a time, while their activations still fit
            # in cache; beam search is the other way round, so callers keep batches large and
            # only this call is split.
            chunk = max(4, torch.get_num_threads())
            return torch.cat([self.encoder(part) for part in images.split(chunk)])
        parts = [self._onnx.run(part) for part in images.split(max(4, torch.get_num_threads()))]
        features = torch.cat([part[0] for part in parts])
        if parts[0][1] is not None:
            self._class_log_probs[features] = torch.cat([part[1] for part in parts])
        return features

    @torch.inference_mode()
    def decode(
        self, features: torch.Tensor, options: DecodeOptions = DecodeOptions()
    ) -> list[CaptionResult]:
        """Beam search from encoder features; one result per image with every beam in `beams`.

        options.consensus_samples > 0 reorders each image's beams by their agreement with that
        many captions sampled from the model (captioner/consensus.py), the best-agreeing first.
        Raises ValueError for features holding inf or NaN, from which no caption can be scored.
        """
        vocab = self.vocab
        features = features.to(self.device)
        # A sum holds an inf or NaN of any of its terms (inf - inf is NaN): a finite sum clears
        # every value at a third of the time of isfinite over them. Only a sum that overflowed
        # is summed again in float64, where no sum of float32s overflows.
        sums = features.flatten(1).sum(1)  # (batch,)
        broken = ~torch.isfinite(sums)
        if bool(broken.any()):
            broken = ~torch.isfinite(features.flatten(1).sum(1, dtype=torch.float64))
        if bool(broken.any()):
            raise ValueError(
                f"the features of image {int(broken.nonzero()[0])} (of {len(features)}) hold inf "
                "or NaN: an encoder whose weights overflow, or a feature cache written from one"
            )
        special_ids = {
            "start_id": vocab.start_id,
            "end_id": vocab.end_id,
            "banned_ids": BANNED_IDS,
        }
        memory = self.decoder.prepare(features, self._class_log_probs.get(features))
        found = self._people.get(features) if self._people is not None else None
        if found is not None and bool(found.any()):  # people beside the ImageNet nouns
            person = self._copy_nouns().index("person")
            noun_probs, noun_mass = with_people(
                memory.noun_probs, memory.noun_mass, found.to(self.device), person
            )
            memory = memory._replace(noun_probs=noun_probs, noun_mass=noun_mass)
        hypotheses = beam_search(
            self.decoder,
            features,
            **special_ids,
            beam_size=options.beam_size,
            max_length=options.max_length,
            length_alpha=options.length_penalty,
            no_repeat_ngram_size=options.no_repeat_ngram_size,
            memory=memory,
            name_things=options.name_things,
        )
        # A beam still going at the length limit is cut there, not ended: on a photo unlike
        # its training images a model can run on ("there is is a person large large car ...",
        # log-prob -101 beside the caption's -4.6). Such a beam is no alternative to offer
        # while the photo has a caption that ended by itself.
        hypotheses = [
            [h for h in per_image if len(h.token_ids) < options.max_length] or per_image
            for per_image in hypotheses
        ]
        if options.consensus_samples > 0:
            # Each step holds (images x samples x grid cells x attention_dim) energies; on a CPU
            # they stay in cache a few images at a time. Samples do not depend on the batch, so
            # the split changes nothing.
            # The samples read the memory the search read: the encoder's class maps, people.
            chunk = 4 if self.device.type == "cpu" else len(features)
            samples = [
                drawn
                for start in range(0, len(features), chunk)
                for drawn in sample_captions(
                    self.decoder,
                    features[start : start + chunk],
                    **special_ids,
                    num_samples=options.consensus_samples,
                    max_length=options.max_length,
                    name_things=options.name_things,
                    memory=memory.image_range(start, start + chunk),
                )
            ]
            hypotheses = [
                [per_image[i] for i in consensus_ranking([h.token_ids for h in per_image], drawn)]
                for per_image, drawn in zip(hypotheses, samples, strict=True)
            ]
        grid_shape = tuple(features.shape[1:3])
        copy = _copy_arrays(memory)
        words = self._words  # built anew at each read while hedging: once for all the beams
        results = []
        for image, per_image in enumerate(hypotheses):
            read_from = (copy[0][image], *copy[1:]) if copy is not None else (None, None, None)
            beams = [self._to_result(h, words, grid_shape, read_from) for h in per_image]
            # Two word ids can read alike (the hedge's root "photo" beside the vocabulary's):
            # an alternative is another caption, so each text is offered once, at its best.
            by_text: dict[str, CaptionResult] = {}
            for beam in beams:
                by_text.setdefault(beam.text, beam)
            beams = list(by_text.values())
            best = dataclasses.replace(beams[0], beams=beams)
            results.append(best)
        return results

    def caption(
        self,
        images: ImageSource | Sequence[ImageSource],
        options: DecodeOptions | None = None,
        *,
        beam_size: int | None = None,
        max_length: int | None = None,
        length_penalty: float | None = None,
        no_repeat_ngram_size: int | None = None,
        consensus_samples: int | None = None,
        name_things: int | None = None,
        batch_size: int = 16,
    ) -> list[CaptionResult] | CaptionResult:
        """Caption photos given as paths or PIL images, with the engine (captioner/pipeline.py)
        in this process: worker processes would cost more to start than they save here.

        How to search: a DecodeOptions, or its fields as keywords (`beam_size=3`), not both;
        neither is DecodeOptions(). Keywords are checked as DecodeOptions checks them.

        One image: returns its result, and raises ImageError if it cannot be read (reading
        that fails unexpectedly included). A list: returns a result per item in order; an
        unreadable item gets `error` set and the others are still captioned.
        """
        # Scripts written for the older API pass keywords; a DecodeOptions is the newer way.
        # Mixing them would leave unclear which value wins, so it is refused.
        overrides = {
            name: value
            for name, value in {
                "beam_size": beam_size,
                "max_length": max_length,
                "length_penalty": length_penalty,
                "no_repeat_ngram_size": no_repeat_ngram_size,
                "consensus_samples": consensus_samples,
                "name_things": name_things,
            }.items()
            if value is not None
        }
        if options is not None and overrides:
            raise TypeError(
                "caption() takes a DecodeOptions or its fields as keywords, not both: got "
                f"options and {', '.join(overrides)}"
            )
        if options is None:
            options = DecodeOptions(**overrides)
        single = _is_single(images)
        batches = photo_batches(self, [images] if single else images, batch_size=batch_size)
        results = [result for batch in caption_batches(self, batches, options) for result in batch]
        if not single:
            return results
        if results[0].error is not None:
            raise ImageError(results[0].source, results[0].error)
        return results[0]

    @property
    def _words(self) -> Vocabulary:
        """The vocabulary captions are read with: `vocab` (which a script may replace), grown
        by the taught words while some are taught, and by the hypernyms while hedging."""
        words = self._taught_vocab if self._taught_vocab is not None else self.vocab
        if self.decoder.hedge is None:
            return words
        return Vocabulary(words.itos[len(SPECIAL_TOKENS) :] + self.decoder.hedge.new_words)

    @property
    def hedging(self) -> float | None:
        """The confidence the copy path hedges at (docs/guides/hedging.md), or None."""
        return self._hedging

    def set_hedging(self, confidence: float | None, *, root: str | None = ROOT) -> None:
        """Name the most specific thing the model is this sure of ("an animal" where its
        classes split between jaguar and leopard); None: the most probable noun, as before.
        A model loaded from a directory hedges at noun_tree.DEFAULT_CONFIDENCE when it has
        a noun tree; ValueError when it has none (a model without a copy path, or an
        imported one whose nouns the shipped tree does not hold). root: what the caption
        names when nothing below it reaches the confidence ("a photo"; None: the most
        probable noun then)."""
        if confidence is not None and self._noun_tree is None:
            raise ValueError(f"the model {self.name!r} has no noun tree: it cannot hedge")
        self._hedging, self._hedge_root = confidence, root
        if confidence is None:
            self.decoder.set_hedge(None)
            return
        # A hypernym the model can say already (a taught word) is left out of the tree.
        words = self._taught_vocab if self._taught_vocab is not None else self.vocab
        decoder = self.decoder
        mean = decoder.embedding.weight.detach()[decoder.noun_singular_ids].mean(0)
        hedge = Hedge.build(self._noun_tree, self._copy_nouns(), confidence, mean, words.itos, root)
        decoder.set_hedge(hedge.to(self.device))

    @property
    def people(self) -> bool:
        """Whether the person detector names people (people.py)."""
        return self._people is not None

    def set_people(self, enabled: bool) -> None:
        """Name people the detector finds "person" (people.py); a model loaded from a
        directory does when its copy path has that noun and OpenCV is installed. ValueError
        for a model whose copy path cannot say "person"; ImportError without OpenCV; OSError
        where the detector's cascade file cannot be read."""
        if not enabled:
            self._people = None
            return
        if not self.decoder.config.copy_nouns or "person" not in self._copy_nouns():
            raise ValueError(f"the model {self.name!r} has no copied noun 'person'")
        import cv2  # noqa: F401  (pip install opencv-python-headless)

        load_detector()
        self._people = WeakIdKeyDictionary()

    def _copy_nouns(self) -> list[str]:
        """The copy path's nouns (the table's), in its column order."""
        return [self.vocab.itos[i] for i in self.decoder.noun_singular_ids.tolist()]

    def _to_result(
        self,
        hypothesis: Hypothesis,
        words: Vocabulary,
        grid_shape: tuple[int, int],
        copy_memory: tuple,
    ) -> CaptionResult:
        """words: the vocabulary to read the ids with (`_words`); copy_memory: the image's
        (noun_probs, copy_words, copy_slots) as arrays, or Nones."""
        tokens = fix_articles(words.decode(hypothesis.token_ids))
        maps, kinds = word_maps(hypothesis.token_ids, hypothesis.alphas, *copy_memory)
        return CaptionResult(
            text=" ".join(tokens),
            tokens=tokens,
            score=hypothesis.score,
            log_prob=hypothesis.log_prob,
            alphas=hypothesis.alphas.reshape(len(tokens), *grid_shape),
            context_gate=hypothesis.context_gate,
            gates=hypothesis.gates,
            copy_gate=hypothesis.copy_gate,
            maps=maps.reshape(len(tokens), *grid_shape),
            map_kinds=kinds,
        )


def _copy_arrays(memory: ImageMemory) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """What captioner/pointing.py reads of a copy model's memory, as arrays: noun_probs
    (batch, num_pixels, copy_nouns), copy_words and copy_slots; None without a copy path."""
    if memory.noun_probs is None:
        return None
    fields = (memory.noun_probs, memory.copy_words, memory.copy_slots)
    return tuple(field.cpu().numpy() for field in fields)


def _named_cells(result: CaptionResult) -> torch.Tensor:
    """(grid_h, grid_w) attention of the caption's word with the highest copy gate: where
    the model looked when it named the photo's thing."""
    word = int(result.copy_gate.argmax()) if result.copy_gate is not None else 0
    return torch.as_tensor(result.alphas[word])


def _same_example(a: TaughtExample, b: TaughtExample) -> bool:
    """One photo taught twice: the same file and box, or the same features."""
    if a.source is not None and (a.source, a.box) == (b.source, b.box):
        return True
    return bool(torch.nn.functional.cosine_similarity(a.vector, b.vector, dim=0) > 0.9999)


def _is_single(images) -> bool:
    return isinstance(images, str | bytes | os.PathLike) or hasattr(images, "getpixel")
