"""The encoder's int8 graph: the float ONNX graph statically quantized (QDQ, per-channel weights).

`--precision int8` runs the encoder's graph (captioner/onnx_backend.py) with 8-bit weights and
activations. Static quantization needs each activation's range, measured on photos: the
*calibration*. Its ranges ship in captioner/data/int8_calibration.json, measured by
`scripts/measure_int8.py --calibrate` on generated composites (training/scenes), never on the
development photos; they were measured for one encoder (EfficientNet-Lite0 at stride 32, frozen,
with a copy model's class head: the default model's) and are refused for another, which then
runs in float with a PrecisionWarning. The int8 graph is built from the float graph and the
ranges once (a few seconds) and cached beside the float graph, under a key of both.

Layers kept in float (KEEP_FLOAT): the first convolution (it reads the pixels) and a copy
model's class head. Of the choices scripts/measure_int8.py compares, that kept the float caption
on the most development photos (43 and 46 of 48 in two runs; every layer in int8: 40, 43);
docs/reports/benchmarks.md#the-int8-encoder has the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import itertools
import json
import logging
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

CALIBRATION_FILE = Path(__file__).parent / "data" / "int8_calibration.json"
# What `auto` picks on a CPU: int8 only where it kept the float captions on >= 97% of the 48
# development photos and the named-subject count. Measured by scripts/measure_int8.py
# (docs/reports/benchmarks.md#the-int8-encoder): 43 and 46 of 48 in two runs while the model's
# hedging changed (90%, 96%), 41 of 48 (85%) after the size-word rule: float.
AUTO_INT8 = False
# Layer choices scripts/measure_int8.py compares; the first is what --precision int8 builds.
KEEP_FLOAT = {
    "first conv + class head": ("first_conv", "class_head"),
    "class head": ("class_head",),
    "first and last conv + class head": ("first_conv", "last_conv", "class_head"),
    "nothing (all int8)": (),
}
# How the graph is quantized: part of the cached graph's key.
QUANTIZER = "onnxruntime quant_pre_process, quantize_static QDQ U8S8 per-channel MinMax v2"


class CalibrationError(ValueError):
    """No calibration can be had for this encoder: no photos, or ranges made for another one."""


class PrecisionWarning(UserWarning):
    """int8 was asked for but the encoder runs in float (the reason is the message)."""


class Int8BuildNote(UserWarning):
    """The int8 graph is not cached yet and is being built (a few seconds, once)."""


@dataclasses.dataclass(frozen=True)
class Calibration:
    """The measured range of every activation of one encoder's float graph."""

    encoder_key: str  # onnx_backend.graph_key of the encoder (and class head) it was measured on
    source: str  # what photos, how many
    ranges: dict  # onnxruntime's TensorsData.to_dict(): {"data": {tensor: {...}}, ...}

    @property
    def digest(self) -> str:
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(dataclasses.asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path = CALIBRATION_FILE) -> Calibration:
        try:
            entries = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(entries["encoder_key"], entries["source"], entries["ranges"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise CalibrationError(f"{path}: not a calibration file ({error})") from error


def calibrate(
    float_graph: bytes, batches: Iterable[np.ndarray], encoder_key: str, source: str
) -> Calibration:
    """The ranges of the graph's activations over `batches` of (batch, 3, size, size) pixels."""
    from onnxruntime.quantization import CalibrationDataReader

    batches = iter(batches)
    first = next(batches, None)
    if first is None or len(first) == 0:
        raise CalibrationError("no calibration photos: the int8 graph needs a few hundred")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches, self.count = itertools.chain([first], batches), 0

        def get_next(self) -> dict | None:
            batch = next(self.batches, None)
            if batch is None:
                return None
            self.count += len(batch)
            return {"pixels": np.ascontiguousarray(batch, dtype=np.float32)}

    reader = Reader()
    with tempfile.TemporaryDirectory(prefix="captioner-calibrate-") as folder:
        ranges = Path(folder, "ranges.json")
        _quantize(float_graph, Path(folder), (), reader=reader, ranges=ranges)
        data = json.loads(ranges.read_text())
    return Calibration(encoder_key, f"{source} ({reader.count} photos)", data)


def quantize(
    float_graph: bytes, calibration: Calibration, keep_float: tuple[str, ...] | None = None
) -> bytes:
    """The int8 graph of `float_graph` with the calibration's ranges; `keep_float` names the
    layers left in float (default: KEEP_FLOAT's first entry). Raises CalibrationError when the
    ranges do not cover the graph's activations (a graph of another encoder)."""
    import onnx

    keep_float = next(iter(KEEP_FLOAT.values())) if keep_float is None else keep_float
    model = onnx.load_from_string(float_graph)
    needed = {o for node in model.graph.node if node.op_type == "Conv" for o in node.output}
    missing = needed - set(calibration.ranges.get("data", {}))
    if missing:
        raise CalibrationError(
            f"the int8 calibration was measured for another encoder ({len(missing)} of the "
            f"graph's {len(needed)} convolutions have no range)"
        )
    with tempfile.TemporaryDirectory(prefix="captioner-quantize-") as folder:
        ranges = Path(folder, "ranges.json")
        ranges.write_text(json.dumps(calibration.ranges))
        return _quantize(float_graph, Path(folder), keep_float, ranges=ranges)


def _quantize(
    float_graph: bytes,
    folder: Path,
    keep_float: tuple[str, ...],
    ranges: Path,
    reader=None,
) -> bytes:
    import onnx
    import onnxruntime
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        raise CalibrationError(
            f"onnxruntime {onnxruntime.__version__} cannot quantize with stored ranges: "
            "pip install --upgrade onnxruntime"
        )

    exported, source, target = folder / "exported.onnx", folder / "float.onnx", folder / "int8.onnx"
    exported.write_bytes(float_graph)
    with _quiet():
        # Folds the exporter's shape arithmetic (the "same" padding of every convolution,
        # computed from the input's size) into the convolutions: else each stays a float Pad
        # between two int8 convolutions, and the int8 graph measured no faster than float.
        quant_pre_process(str(exported), str(source))
        model = onnx.load(str(source))
        quantize_static(
            str(source),
            str(target),
            calibration_data_reader=reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            # Unsigned activations (ReLU6's are >= 0) with signed weights: onnxruntime's fast
            # path on x86 (S8S8 measured slower than float here).
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=_float_nodes(model, keep_float),
            calibration_cache_path=ranges,
        )
    return target.read_bytes()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Without onnxruntime's advice to pre-process the graph first (the exporter folded its
    batch norms already): it logs on the root logger, which it would also set up."""
    root, silent, level = logging.getLogger(), logging.NullHandler(), logging.getLogger().level
    root.addHandler(silent)
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
        root.removeHandler(silent)


def _float_nodes(model, keep_float: tuple[str, ...]) -> list[str]:
    """The names of the nodes of the layers kept in float."""
    convs = [node.name for node in model.graph.node if node.op_type == "Conv"]
    names = []
    if "first_conv" in keep_float:
        names.append(convs[0])
    if "last_conv" in keep_float:
        names.append(convs[-1])
    if "class_head" in keep_float:
        names += [node.name for node in model.graph.node if node.name.startswith("/classifier/")]
    return names
