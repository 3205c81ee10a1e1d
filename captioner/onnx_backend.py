"""ONNX graphs of a model: the encoder and the decoder's step, and running the encoder's.

On a CPU, ONNX Runtime runs the encoder faster than PyTorch's eager mode (one planned graph
of large convolutions), so `--backend onnx` encodes with it; the encoder graph is
exported once and cached in a folder named by a hash of the weights and configuration, so a
changed model never reads a stale graph. The decoder's step is a graph too (captioner-export
writes it, for running a model elsewhere), but beam search calls it once per word with small
tensors, and there ONNX Runtime measured slower than PyTorch (its per-call overhead, and
the copy path's ScatterElements): the search keeps PyTorch's step (docs/reports/benchmarks.md).

Beside the cached graph lies its digest (SHA-256 of its bytes and the key it was built for),
written after it: a graph whose digest is missing or differs (a crash, a full disk, a stray
edit) or that ONNX Runtime cannot open is built again and replaces it, and where the cache
folder cannot be written the graph is built in memory, with a warning. `--precision int8`
adds the graph quantized to 8 bits (captioner/quantize.py) beside it, with a digest of its own
whose key is the calibration's: a graph quantized with other ranges is built again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import importlib.util
import json
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from captioner import quantize
from captioner.decoder import Decoder, DecoderState, ImageMemory
from captioner.encoder import Encoder
from captioner.photos.atomic import write_atomically

OPSET = 18  # ScatterElements' "max" reduction (the copy path's log-sum-exp) needs 18
ENCODER_FILE, STEP_FILE, MANIFEST_FILE = "encoder.onnx", "decoder_step.onnx", "manifest.json"
DIGEST_FILE = "digest"  # of the cached encoder.onnx: "sha256 HEX key KEY"
INT8_FILE, INT8_DIGEST_FILE = "encoder.int8.onnx", "digest.int8"  # key: the calibration's
MEMORY_FIELDS = ImageMemory._fields


class OnnxUnavailableError(RuntimeError):
    """onnxruntime (to run) or onnx (to export) is not installed."""


class OnnxCacheWarning(UserWarning):
    """The encoder graph's cache cannot be written: the graph is built on every start."""


def graph_key(encoder: Encoder, classifier: ClassHead | None = None) -> str:
    """A hash of everything the encoder's graph is built from: its configuration, every
    weight, the classifier whose class log-probabilities it also gives, and the exporter."""
    digest = hashlib.sha256(f"opset {OPSET} torch {torch.__version__}".encode())
    digest.update(json.dumps(dataclasses.asdict(encoder.config), sort_keys=True).encode())
    tensors = dict(encoder.state_dict())
    if classifier is not None:
        tensors |= {f"classifier.{name}": v for name, v in classifier.state_dict().items()}
    for name, tensor in sorted(tensors.items()):
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(_numpy(tensor).tobytes())
    return digest.hexdigest()[:20]


class ClassHead(nn.Module):
    """A copy model's ImageNet classifier on every grid cell (CopyHead.class_log_probs): run in
    the encoder's graph, so each photo's class log-probabilities come with its features."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().float().cpu().clone())
        self.register_buffer("bias", bias.detach().float().cpu().clone())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, grid_h, grid_w, encoder_dim) -> (batch, grid_h, grid_w, classes)."""
        return F.linear(features, self.weight, self.bias).log_softmax(-1)


def class_head(decoder: Decoder) -> ClassHead | None:
    """The classifier a copy model's decoder reads, or None for a decoder without a copy head."""
    head = decoder.copy_head
    return ClassHead(head.noun_head_weight, head.noun_head_bias) if head is not None else None


class _EncoderWithClasses(nn.Module):
    def __init__(self, encoder: Encoder, classifier: ClassHead) -> None:
        super().__init__()
        self.encoder, self.classifier = encoder, classifier

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.encoder(pixels)
        return features, self.classifier(features)


def default_cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "captioner" / "onnx"


def export_graphs(encoder: Encoder, decoder: Decoder, directory: str | os.PathLike) -> Path:
    """Write the encoder graph, the decoder step graph and a manifest into `directory`."""
    directory = Path(directory)
    pixels = _example_pixels(encoder)
    export_encoder_graph(encoder, directory / ENCODER_FILE, pixels)
    export_step_graph(decoder, _example_features(encoder, pixels), directory)
    return directory


def _example_pixels(encoder: Encoder) -> torch.Tensor:
    size = encoder.config.image_size
    return torch.randn(2, 3, size, size)


def _example_features(encoder: Encoder, pixels: torch.Tensor) -> torch.Tensor:
    with torch.no_grad(), _in_eval_mode(encoder):
        return encoder(pixels)  # (2, grid_h, grid_w, encoder_dim)


def export_encoder_graph(
    encoder: Encoder, path: Path, pixels: torch.Tensor, classifier: ClassHead | None = None
) -> None:
    """(batch, 3, size, size) pixels -> (batch, grid_h, grid_w, encoder_dim) features, and
    with a classifier also its (batch, grid_h, grid_w, classes) class_log_probs."""
    _require("onnx", "to export ONNX graphs")
    module, outputs = encoder, {"features": {0: "batch"}}
    if classifier is not None:
        module = _EncoderWithClasses(encoder, classifier).eval()
        outputs["class_log_probs"] = {0: "batch"}
    with torch.no_grad(), _in_eval_mode(encoder):
        _export(module, (pixels,), path, inputs={"pixels": {0: "batch"}}, outputs=outputs)


def export_step_graph(decoder: Decoder, features: torch.Tensor, directory: Path) -> None:
    """Decoder.step as a graph, and the manifest naming its inputs and outputs; `features`
    (a few images' encoder output) only show the exporter the shapes."""
    _require("onnx", "to export ONNX graphs")
    with torch.no_grad(), _in_eval_mode(decoder):
        # The exporter puts the module it is given back in the mode it found it in, so _Step
        # is put in eval mode: in training mode it would switch the decoder's dropout on.
        step = _Step(decoder).eval()
        example = step.example_inputs(decoder.prepare(features))
        _export(
            step,
            tuple(example.values()),
            directory / STEP_FILE,
            inputs={name: step.dynamic_axes(name) for name in example},
            outputs={name: {0: "rows"} for name in step.output_names},
        )
    manifest = {"step_outputs": step.output_names, "gates": step.gate_names, "opset": OPSET}
    # Last and atomic: its presence says the folder is complete, to every process that looks.
    write_atomically(directory / MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode())


def _export(module: nn.Module, args: tuple, path: Path, inputs: dict, outputs: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")  # two exporting processes
    # The exporter's notes (constant folding, in-place ops it rewrote) are for its developers;
    # the graphs are checked against PyTorch by the tests.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        torch.onnx.export(
            module,
            args,
            str(partial),
            dynamo=False,  # the TorchScript exporter: no onnxscript dependency, loops unrolled fine
            opset_version=OPSET,
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_axes={**inputs, **outputs},
        )
    partial.replace(path)


class _Step(nn.Module):
    """Decoder.step with plain tensor inputs and outputs, as an exported graph needs."""

    def __init__(self, decoder: Decoder) -> None:
        super().__init__()
        self.decoder = decoder
        self.lstm = decoder.config.cell == "lstm"
        self.gate_names: list[str] = []
        self.output_names: list[str] = []
        self.memory_fields: list[str] = []

    def example_inputs(self, memory: ImageMemory) -> dict[str, torch.Tensor]:
        """Inputs for two images with two beams each; fixes which memory fields the graph reads."""
        rows = 2 * memory.features.shape[0]
        state = self.decoder.initial_state(memory).repeat_rows(2)
        self.memory_fields = [f for f in MEMORY_FIELDS if getattr(memory, f) is not None]
        inputs = {"words": torch.full((rows,), 4, dtype=torch.long), "h": state.h}
        if self.lstm:
            inputs["c"] = state.c
        inputs |= {field: getattr(memory, field) for field in self.memory_fields}
        out = self.decoder.step(inputs["words"], state, memory)
        self.gate_names = list(out.gates)
        # An output named like an input would rename the input.
        self.output_names = ["logits", "next_h", *(["next_c"] if self.lstm else []), "alpha"]
        self.output_names.append("beta")
        self.output_names += [f"gate_{name}" for name in self.gate_names]
        if out.copy_gate is not None:
            self.output_names.append("copy_gate")
        return inputs

    def dynamic_axes(self, name: str) -> dict[int, str]:
        if name in ("words", "h", "c"):
            return {0: "rows"}
        return {} if name in ("copy_words", "copy_slots") else {0: "batch"}

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        words, h, *rest = tensors
        c = rest.pop(0) if self.lstm else None
        given = dict(zip(self.memory_fields, rest, strict=True))
        memory = ImageMemory(**{field: given.get(field) for field in MEMORY_FIELDS})
        out = self.decoder.step(words, DecoderState(h, c), memory)
        results = [out.logits, out.state.h, *([out.state.c] if self.lstm else [])]
        results += [out.alpha, out.beta, *out.gates.values()]
        return tuple(results + ([out.copy_gate] if out.copy_gate is not None else []))


class OnnxEncoder:
    """Runs the encoder graph: (batch, 3, size, size) pixels -> (batch, gh, gw, encoder_dim)
    features, and a copy model's (batch, gh, gw, classes) class log-probabilities (else None).
    `precision` says which graph: "float" or "int8" (captioner/quantize.py)."""

    def __init__(self, session, precision: str = "float") -> None:
        self.session = session
        self.precision = precision

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.run(pixels)[0]

    def run(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The features and the class log-probabilities (None from a graph without them)."""
        features, *classes = self.session.run(None, {"pixels": _numpy(pixels.float())})
        return torch.from_numpy(features), torch.from_numpy(classes[0]) if classes else None


def onnx_encoder(
    encoder: Encoder,
    cache_root: str | os.PathLike | None = None,
    classifier: ClassHead | None = None,
    precision: str = "float",
    calibration: quantize.Calibration | None = None,
) -> OnnxEncoder:
    """The encoder's ONNX Runtime runner, exporting its graph first if it is not cached, or
    not as it was written; with a copy model's classifier (class_head) the graph gives the
    class log-probabilities too.

    precision "int8" runs the graph quantized with `calibration` (default: the shipped one),
    built once and cached beside the float graph; where it cannot be had (ranges measured for
    another encoder, no calibration) the float graph runs, with a PrecisionWarning saying why.

    Models that share a frozen encoder (most do) share its graph."""
    ort = _require("onnxruntime", "for --backend onnx")
    key = graph_key(encoder, classifier)
    folder = Path(cache_root or default_cache_root()) / f"encoder-{key}"
    graph = _cached_graph(folder, key)
    if graph is not None:
        try:
            session = cpu_session(ort, graph)
        except Exception:  # onnxruntime's errors share no base class; the graph is rebuilt
            graph = None
    if graph is None:
        graph = _export_encoder_bytes(encoder, classifier)
        _cache_graph(folder, key, graph)
        session = cpu_session(ort, graph)
    if precision != "int8":
        return OnnxEncoder(session)
    try:
        return OnnxEncoder(_int8_session(ort, encoder, folder, graph, calibration), "int8")
    except quantize.CalibrationError as error:
        warnings.warn(f"{error}; the encoder runs in float", quantize.PrecisionWarning, 2)
        return OnnxEncoder(session)


def _int8_session(ort, encoder: Encoder, folder: Path, graph: bytes, calibration):
    """The int8 graph cached in `folder` for this calibration, else built (and cached)."""
    calibration = calibration or quantize.Calibration.load()
    encoder_key = graph_key(encoder)
    if calibration.encoder_key != encoder_key:
        raise quantize.CalibrationError(
            f"the int8 calibration ({calibration.source}) was measured for another encoder "
            f"than this model's {encoder.config.name} (stride {encoder.config.feature_stride}"
            f"{', fine-tuned' if encoder.config.fine_tune_blocks else ''})"
        )
    key = f"{calibration.digest}-{hashlib.sha256(quantize.QUANTIZER.encode()).hexdigest()[:8]}"
    cached = _cached_graph(folder, key, INT8_FILE, INT8_DIGEST_FILE)
    if cached is not None:
        with contextlib.suppress(Exception):  # unreadable: built again, never used
            return cpu_session(ort, cached)
    warnings.warn(
        f"building the encoder's int8 graph once (a few seconds; cached in {folder})",
        quantize.Int8BuildNote,
        2,
    )
    int8 = quantize.quantize(graph, calibration)
    _cache_graph(folder, key, int8, INT8_FILE, INT8_DIGEST_FILE)
    return cpu_session(ort, int8)


def _digest(graph: bytes, key: str) -> bytes:
    return f"sha256 {hashlib.sha256(graph).hexdigest()} key {key}\n".encode()


def _cached_graph(
    folder: Path, key: str, name: str = ENCODER_FILE, digest: str = DIGEST_FILE
) -> bytes | None:
    """The graph cached in `folder`, if its digest says it is the one written for `key`."""
    try:
        graph = (folder / name).read_bytes()
        expected = _digest(graph, key)
        with open(folder / digest, "rb") as file:
            recorded = file.read(len(expected) + 1)
    except OSError:  # missing, a directory, its folder a file, unreadable
        return None
    return graph if recorded == expected else None


def _export_encoder_bytes(encoder: Encoder, classifier: ClassHead | None = None) -> bytes:
    with tempfile.TemporaryDirectory(prefix="captioner-onnx-") as directory:
        path = Path(directory) / ENCODER_FILE
        export_encoder_graph(encoder, path, _example_pixels(encoder), classifier)
        return path.read_bytes()


def _cache_graph(
    folder: Path, key: str, graph: bytes, name: str = ENCODER_FILE, digest: str = DIGEST_FILE
) -> None:
    """Write the graph, then its digest, each atomically; warn if the folder cannot hold them."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(folder / name, graph)
        write_atomically(folder / digest, _digest(graph, key))
    except OSError as error:
        warnings.warn(
            f"{folder / name}: cannot cache the encoder's ONNX graph "
            f"({error.strerror or error}); it is exported again on every start",
            OnnxCacheWarning,
            stacklevel=3,
        )


def cpu_session(ort, graph: Path | bytes):
    """An ONNX Runtime session on the CPU for a graph file, or a graph's bytes."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3  # errors only: its shape-inference notes would fill stderr
    model = graph if isinstance(graph, bytes) else str(graph)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


@contextlib.contextmanager
def _in_eval_mode(module: nn.Module) -> Iterator[None]:
    """Export what inference runs (dropout off), and leave the module as it was."""
    training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(training)


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().contiguous().numpy()


def _require(module: str, purpose: str):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        raise OnnxUnavailableError(
            f"{module} is not installed ({purpose}): pip install {module}"
        ) from None
