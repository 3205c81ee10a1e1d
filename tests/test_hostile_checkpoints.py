"""Hostile checkpoints for captioner-import (#21): each test builds the file itself.

Hand-made pickles are assembled from the few opcodes torch.save writes (`dumps`), so that a
test can name any global, call it with any arguments and set any state, as an attacker can.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import pickletools
import struct
import subprocess
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from captioner.cli.importing import main
from captioner.files.safe_unpickle import (
    MAX_NESTING,
    SAFE_CALLABLES,
    MalformedCheckpointError,
    UnsafePickleError,
    read_checkpoint,
)

WORD_MAP = {"<pad>": 0, "a": 1, "<unk>": 2, "<start>": 3, "<end>": 4}


# --- a small pickle assembler ------------------------------------------------------------------


@dataclass
class G:
    """A global, by its dotted name."""

    name: str


@dataclass
class Call:
    """REDUCE: function(*args)."""

    function: Any
    args: tuple


@dataclass
class New:
    """NEWOBJ: cls.__new__(cls, *args)."""

    cls: Any
    args: tuple = ()


@dataclass
class Build:
    """BUILD: set `state` on `obj`."""

    obj: Any
    state: Any


@dataclass
class Pid:
    """BINPERSID: a reference to data outside the pickle (a storage)."""

    value: Any


@dataclass
class Put:
    """The value, kept in memo slot `slot`."""

    slot: int
    value: Any


@dataclass
class Get:
    slot: int


@dataclass
class Raw:
    """Opcodes as they are."""

    data: bytes


def call(name: str, *args: Any) -> Call:
    return Call(G(name), args)


def emit(value: Any) -> bytes:
    if isinstance(value, Raw):
        return value.data
    if value is None:
        return pickle.NONE
    if value is True or value is False:
        return pickle.NEWTRUE if value else pickle.NEWFALSE
    if isinstance(value, int):
        if 0 <= value < 2**31:
            return pickle.BININT + struct.pack("<i", value)
        data = pickle.encode_long(value)
        return pickle.LONG1 + bytes([len(data)]) + data
    if isinstance(value, float):
        return pickle.BINFLOAT + struct.pack(">d", value)
    if isinstance(value, str):
        data = value.encode()
        return pickle.BINUNICODE + struct.pack("<I", len(data)) + data
    if isinstance(value, tuple):
        return pickle.MARK + b"".join(map(emit, value)) + pickle.TUPLE
    if isinstance(value, list):
        items = b"".join(map(emit, value))
        return pickle.EMPTY_LIST + (pickle.MARK + items + pickle.APPENDS if value else b"")
    if isinstance(value, dict):
        items = b"".join(emit(k) + emit(v) for k, v in value.items())
        return pickle.EMPTY_DICT + (pickle.MARK + items + pickle.SETITEMS if value else b"")
    if isinstance(value, G):
        module, _, name = value.name.rpartition(".")
        return pickle.GLOBAL + f"{module}\n{name}\n".encode()
    if isinstance(value, Call):
        return emit(value.function) + emit(value.args) + pickle.REDUCE
    if isinstance(value, New):
        return emit(value.cls) + emit(value.args) + pickle.NEWOBJ
    if isinstance(value, Build):
        return emit(value.obj) + emit(value.state) + pickle.BUILD
    if isinstance(value, Pid):
        return emit(value.value) + pickle.BINPERSID
    if isinstance(value, Put):
        return emit(value.value) + pickle.BINPUT + bytes([value.slot])
    if isinstance(value, Get):
        return pickle.BINGET + bytes([value.slot])
    raise TypeError(value)


def dumps(value: Any) -> bytes:
    return pickle.PROTO + b"\x02" + emit(value) + pickle.STOP


def storage(key: str = "0", numel: int = 4, kind: str = "FloatStorage") -> Pid:
    return Pid(("storage", G(f"torch.{kind}"), key, "cpu", numel))


def tensor(source: Any = None, offset: int = 0, size: tuple = (4,), stride: tuple = (1,)) -> Call:
    hooks = call("collections.OrderedDict")
    source = storage() if source is None else source
    return call("torch._utils._rebuild_tensor_v2", source, offset, size, stride, False, hooks)


def zip_checkpoint(path: Path, data: bytes, storages: dict[str, bytes] | None = None) -> Path:
    """A zip archive laid out as torch.save writes one."""
    if storages is None:
        storages = {"0": bytes(16)}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")
        for key, stored in storages.items():
            archive.writestr(f"archive/data/{key}", stored)
    return path


def legacy_parts(path: Path) -> tuple[bytes, bytes, bytes]:
    """A legacy torch.save file as (headers and pickle, storage key list, storages)."""
    data = path.read_bytes()
    stream = io.BytesIO(data)
    for _ in range(4):  # magic number, protocol version, sys_info, the pickle
        for opcode, _, _ in pickletools.genops(stream):
            if opcode.name == "STOP":
                break
    pickled = stream.tell()
    pickle.load(stream)
    return data[:pickled], data[pickled : stream.tell()], data[stream.tell() :]


def assert_one_line_error(error: BaseException) -> None:
    assert isinstance(error, UnsafePickleError | MalformedCheckpointError)
    assert isinstance(error, pickle.UnpicklingError)
    message = str(error)
    assert message and "\n" not in message and len(message) < 300, message


def refused(path: Path, match: str) -> pickle.UnpicklingError:
    with pytest.raises(pickle.UnpicklingError, match=match) as caught:
        read_checkpoint(path)
    assert_one_line_error(caught.value)
    return caught.value


def assert_import_refused(path: Path, tmp_path: Path, capsys, match: str) -> None:
    """captioner-import exits 1 with one line on stderr and writes nothing."""
    word_map = tmp_path / "WORDMAP.json"
    word_map.write_text(json.dumps(WORD_MAP))
    out = tmp_path / "out"
    assert main(["tutorial", str(path), str(word_map), str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("captioner-import: ") and err.count("\n") == 1, err
    assert match in err, err
    assert not out.exists()


# --- 1: TorchScript never runs -----------------------------------------------------------------


class Trap(nn.Module):
    """A scripted module whose __setstate__, run by torch.jit.load, creates a file."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker
        self.buffer = torch.zeros(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.marker = state[0]
        self.training = state[1]
        self.buffer = torch.from_file(state[0], True, 8)  # shared=True creates the file


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit is deprecated
@pytest.mark.parametrize("tail", [b"", b"PK\x05\x06\0\0\0\0"], ids=["plain", "end-record-after"])
def test_a_torchscript_archive_never_runs(tail, tmp_path, capsys):
    marker = tmp_path / "ran"
    path = tmp_path / "BEST_checkpoint.pth.tar"
    torch.jit.save(torch.jit.script(Trap(str(marker))), path)
    torch.jit.load(path)  # the payload works: what torch.jit.load runs creates the marker
    assert marker.exists()
    marker.unlink()
    path.write_bytes(path.read_bytes() + tail)  # a truncated end record: is_zipfile() is False
    refused(path, "TorchScript|zip archive")
    assert_import_refused(path, tmp_path, capsys, str(path))
    assert not marker.exists()


# --- 3: tar checkpoints are not read -----------------------------------------------------------


def test_a_tar_checkpoint_with_a_fifo_member_is_refused_without_reading_it(tmp_path, capsys):
    path = tmp_path / "old.pth.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("sys_info", pickle.dumps({})), ("pickle", pickle.dumps({}))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        fifo = tarfile.TarInfo("storages")  # torch.load extracts it, then waits on it for ever
        fifo.type = tarfile.FIFOTYPE
        tar.addfile(fifo)
        tar.addfile(tarfile.TarInfo("tensors"), io.BytesIO())
    refused(path, "tar archive")
    assert_import_refused(path, tmp_path, capsys, "tar archive")


def test_a_fifo_named_as_the_checkpoint_is_refused_without_waiting(tmp_path):
    path = tmp_path / "fifo.pth.tar"
    os.mkfifo(path)
    refused(path, "not a regular file")


# --- 4: nesting --------------------------------------------------------------------------------

DEPTH = 10**6  # a 1 MB pickle


def nested_tuple_key() -> bytes:  # TUPLE1 needs no MARK
    key = pickle.EMPTY_TUPLE + pickle.TUPLE1 * DEPTH
    return pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + key + pickle.NONE + pickle.SETITEM + b"."


def nested_marked_tuples() -> bytes:
    tuples = pickle.MARK * DEPTH + pickle.EMPTY_TUPLE + pickle.TUPLE * DEPTH
    return pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + tuples + pickle.NONE + pickle.SETITEM + b"."


def nested_in_a_frozenset() -> bytes:
    deep = pickle.EMPTY_TUPLE + pickle.TUPLE1 * DEPTH
    frozen = emit(G("builtins.frozenset")) + pickle.EMPTY_LIST + deep + pickle.APPEND
    return pickle.PROTO + b"\x02" + frozen + pickle.TUPLE1 + pickle.REDUCE + pickle.STOP


@pytest.mark.parametrize("pickled", [nested_tuple_key, nested_marked_tuples, nested_in_a_frozenset])
def test_a_pickle_nested_a_million_deep_is_refused_before_it_is_loaded(pickled, tmp_path):
    path = zip_checkpoint(tmp_path / "deep.pth", pickled())
    refused(path, f"nests containers more than {MAX_NESTING} deep")


def test_nesting_in_the_legacy_format_is_bounded_too(tmp_path):
    path = tmp_path / "legacy.pth"
    torch.save({}, path, _use_new_zipfile_serialization=False)
    headers, keys, _ = legacy_parts(path)
    cut = len(headers) - len(dumps({}))  # the pickle after the three header pickles
    path.write_bytes(headers[:cut] + nested_tuple_key() + keys)
    refused(path, "nests containers")


def test_nesting_under_the_limit_is_read(tmp_path):
    depth = MAX_NESTING - 10
    lists = pickle.EMPTY_LIST * depth + pickle.APPEND * (depth - 1)  # each into the one below
    path = zip_checkpoint(tmp_path / "deep.pth", pickle.PROTO + b"\x02" + lists + pickle.STOP)
    found, value = 1, read_checkpoint(path)
    while value:
        found, value = found + 1, value[0]
    assert found == depth


# --- 5: module trees ---------------------------------------------------------------------------


def test_a_doubly_shared_module_tree_is_refused_at_once(tmp_path, capsys):
    module: nn.Module = nn.Linear(1, 1)
    for _ in range(24):  # 2**24 paths to the Linear, in a 7 KB file
        module = nn.Sequential(module, module)
    path = tmp_path / "shared.pth"
    torch.save({"encoder": module, "decoder": module}, path)
    assert path.stat().st_size < 20_000
    read = read_checkpoint(path)["encoder"]
    with pytest.raises(
        ValueError, match=r"has the submodule (0\.)+0 again at (0\.)+1: shared submodules"
    ):
        read.state_dict()
    assert_import_refused(path, tmp_path, capsys, "shared submodules are not read")


def test_a_module_that_contains_itself_is_refused(tmp_path):
    module = nn.Sequential(nn.Linear(1, 1))
    module.add_module("loop", nn.Sequential(module))
    path = tmp_path / "cycle.pth"
    torch.save(module, path)
    with pytest.raises(ValueError, match="contains itself: loop.0 is it"):
        read_checkpoint(path).state_dict()


def sequential(**state: Any) -> Build:
    plain = {"_parameters": {}, "_buffers": {}, "_modules": {}}
    return Build(New(G("torch.nn.modules.container.Sequential")), plain | state)


@pytest.mark.parametrize(
    "state, match",
    [
        ({"_modules": 5}, "the module's _modules is a int, not a dict"),
        ({"_modules": {0: None}}, "_modules has a name that is a int, not a string"),
        ({"_modules": {"x": 5}}, "submodule x is a int"),
        ({"_parameters": {"w": "x"}}, "w is a str, no tensor"),
        ({"_non_persistent_buffers_set": 5}, "is no set"),
    ],
)
def test_module_state_that_is_no_module_is_a_value_error(state, match, tmp_path):
    path = zip_checkpoint(tmp_path / "odd.pth", dumps(sequential(**state)))
    with pytest.raises(ValueError, match=match):
        read_checkpoint(path).state_dict()


# --- 6: tensors cover their storage once -------------------------------------------------------


def test_an_expanded_tensor_is_refused(tmp_path):
    path = tmp_path / "expanded.pth"
    weights = {f"w{i}": torch.ones(1).expand(4096, 4096) for i in range(3)}
    torch.save(weights, path)  # 3 x 64 MB of floats from 3 stored ones
    assert path.stat().st_size < 10_000
    refused(path, "does not cover its elements once each")


def test_an_overlapping_tensor_is_refused(tmp_path):
    path = tmp_path / "overlap.pth"
    torch.save({"w": torch.arange(4.0).as_strided((3, 2), (1, 1))}, path)
    refused(path, "does not cover its elements once each")


@pytest.mark.parametrize(
    "weight, match",
    [
        (tensor(size=(8,)), "runs past the end of its storage of 4"),
        (tensor(offset=1), "runs past the end"),
        (tensor(size=(2, 2), stride=(1, 1)), "does not cover"),
        (tensor(size=(2, 2), stride=(0, 1)), "does not cover"),
        (tensor(storage(numel=8)), "holds 16 bytes; the pickle declares 32"),
        (tensor(storage(key="1")), "has no archive/data/1"),
    ],
)
def test_a_tensor_outside_its_storage_is_refused(weight, match, tmp_path):
    refused(zip_checkpoint(tmp_path / "t.pth", dumps({"w": weight})), match)


def test_a_transposed_tensor_is_read(tmp_path):
    path = tmp_path / "transposed.pth"
    weight = torch.arange(6.0).reshape(2, 3).t()
    torch.save({"w": weight}, path)
    assert torch.equal(read_checkpoint(path)["w"], weight)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_two_weights_on_one_storage_are_refused(fmt, tmp_path):
    path = tmp_path / "shared.pth"
    base = torch.arange(8.0)
    torch.save({"a": base[:4], "b": base[4:]}, path, _use_new_zipfile_serialization=fmt == "zip")
    refused(path, "two tensors share one storage")


def test_a_parameter_and_its_data_both_in_the_result_are_refused(tmp_path):
    weight = Put(1, tensor())
    parameter = call("torch._utils._rebuild_parameter", weight, True, {})
    refused(zip_checkpoint(tmp_path / "p.pth", dumps([parameter, Get(1)])), "share one storage")


# --- 7: legacy storages are filled in full from the file ---------------------------------------


@pytest.fixture
def legacy_checkpoint(tmp_path) -> tuple[Path, tuple[bytes, bytes, bytes]]:
    path = tmp_path / "legacy.pth.tar"
    torch.save({"w": torch.arange(4.0)}, path, _use_new_zipfile_serialization=False)
    return path, legacy_parts(path)


def test_the_legacy_format_reads_the_storages(legacy_checkpoint):
    path, _ = legacy_checkpoint
    assert torch.equal(read_checkpoint(path)["w"], torch.arange(4.0))


@pytest.mark.parametrize(
    "remake, match",
    [
        (
            lambda head, keys, data: head + pickle.dumps([], protocol=2),
            "are not the 1 storages it declares",
        ),
        (lambda head, keys, data: head, "a damaged pickle"),
        (lambda head, keys, data: head + keys, "not the size its pickle declares"),
        (lambda head, keys, data: head + keys + data[:-4], "cut short"),
        (lambda head, keys, data: head + keys + struct.pack("<q", 5) + data[8:], "not the size"),
        (lambda head, keys, data: head + pickle.dumps(["1"], protocol=2) + data, "storage keys"),
        (lambda head, keys, data: head + pickle.dumps([0], protocol=2) + data, "storage keys"),
    ],
    ids=["no-keys", "nothing-after", "no-data", "truncated", "wrong-count", "other-key", "int-key"],
)
def test_a_legacy_checkpoint_whose_storages_are_not_all_in_the_file_is_refused(
    remake, match, legacy_checkpoint, tmp_path, capsys
):
    path, parts = legacy_checkpoint
    path.write_bytes(remake(*parts))
    refused(path, match)


def test_a_legacy_storage_larger_than_the_file_is_refused_before_it_is_allocated(tmp_path):
    path = tmp_path / "legacy.pth"
    torch.save({}, path, _use_new_zipfile_serialization=False)
    headers, keys, _ = legacy_parts(path)
    cut = len(headers) - len(dumps({}))
    huge = Pid(("storage", G("torch.FloatStorage"), "0", "cpu", 2**40, None))
    path.write_bytes(headers[:cut] + dumps({"w": tensor(huge, size=(2**40,))}) + keys)
    refused(path, "does not fit in what is left of the file")


# --- one-line errors ---------------------------------------------------------------------------


def legacy_file(tmp_path: Path, pickled: bytes) -> Path:
    """A legacy-format file of this pickle and no storages."""
    path = tmp_path / "legacy.pth"
    torch.save({}, path, _use_new_zipfile_serialization=False)
    headers, keys, _ = legacy_parts(path)
    path.write_bytes(headers[: len(headers) - len(dumps({}))] + pickled + keys)
    return path


HOSTILE = {
    "set-of-int": (call("builtins.set", 5), r"set\(\) of 5"),
    "ordered-dict-of-int": (call("collections.OrderedDict", 5), "OrderedDict"),
    "parameter-of-str": (call("torch.nn.parameter.Parameter", "x"), "not a tensor"),
    "device-5-5-5": (call("torch.device", 5, 5, 5), "torch.device called with 3"),
    "rebuild-junk": (call("torch._utils._rebuild_tensor_v2", 1, 2, 3), "_rebuild_tensor_v2"),
    "rebuild-no-storage": (tensor(source="x"), "storage is 'x', not a storage"),
    "rebuild-negative": (tensor(offset=-1), "storage offset is -1"),
    "rebuild-float-size": (tensor(size=(4.0,)), "size is 4.0"),
    "rebuild-bool-grad": (
        call("torch._utils._rebuild_tensor_v2", storage(), 0, (4,), (1,), 1, {}),
        "requires_grad is 1",
    ),
    "rebuild-hooks": (
        call("torch._utils._rebuild_tensor_v2", storage(), 0, (4,), (1,), False, {"h": 1}),
        "backward hooks",
    ),
    "pid-string": (tensor(Pid("0")), "a storage reference that is '0'"),
    "pid-int": (tensor(Pid(5)), "a storage reference that is 5"),
    "pid-short": (tensor(Pid(("storage", G("torch.FloatStorage")))), "a tuple of 2"),
    "pid-unknown-type": (tensor(storage(kind="FooStorage")), "refusing to load torch.FooStorage"),
    "pid-type-not-storage": (
        tensor(Pid(("storage", 5, "0", "cpu", 4))),
        "a storage of type 5",
    ),
    "pid-numel-negative": (tensor(storage(numel=-4)), "size is -4, not a count"),
    "parameter-shape": (
        Build(call("torch.nn.parameter.Parameter", tensor()), {"shape": (9,)}),
        "refusing to set the state of a Parameter",
    ),
    "parameter-class": (
        call(
            "torch._utils._rebuild_parameter_with_state",
            tensor(),
            False,
            {},
            {"__class__": G("torch.nn.modules.linear.Linear")},
        ),
        "parameter with state of its own",
    ),
    "build-device": (Build(call("torch.device", "cpu"), {"type": "cuda"}), "a device"),
    "build-stand-in-class": (
        Build(G("models.Encoder"), {"state_dict": G("builtins.set")}),
        "refusing to set the state of a type",
    ),
    "build-stand-in-not-dict": (Build(New(G("models.Encoder")), 5), "state of a models.Encoder"),
    "build-state-dict-dunder": (
        Build(call("collections.OrderedDict"), {"__class__": G("builtins.set")}),
        "on a state dict",
    ),
    "newobj-of-set": (New(G("builtins.set"), ()), "refusing to build an object of a function"),
    "call-a-dict": (Call({}, ()), "refusing to call a dict"),
    "call-a-storage-type": (Call(G("torch.FloatStorage"), ()), "refusing to call a _StorageType"),
    "setitem-on-a-tensor": (
        Raw(emit(tensor()) + emit(0) + emit(5) + pickle.SETITEM),
        "items added to a Tensor",
    ),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_pickle_is_a_one_line_error(name, tmp_path):
    value, match = HOSTILE[name]
    refused(zip_checkpoint(tmp_path / "hostile.pth", dumps(value)), match)


@pytest.mark.parametrize(
    "pid, match",
    [
        (("module",), "a module reference that is a tuple of 1"),
        (("module", G("builtins.set"), None, None), "a module reference"),
        (("module", 5, None, None), "a module reference"),
        (("storage", G("torch.FloatStorage"), "0", "cpu", 4, ("0", 0, 4)), "storage view"),
    ],
)
def test_a_hostile_legacy_reference_is_a_one_line_error(pid, match, tmp_path):
    refused(legacy_file(tmp_path, dumps(Pid(pid))), match)


@pytest.mark.parametrize(
    "data, match",
    [
        (b"PK\x05\x06" + bytes(18), "without one data.pkl"),
        (b"PK\x03\x04" + bytes(40), "damaged zip archive"),
        (b"", "neither a zip archive nor"),
        (b"\x80\x02K\x05.", "neither a zip archive nor"),
        (b"hello world\n", "neither a zip archive nor"),
    ],
    ids=["end-record", "local-header", "empty", "int", "text"],
)
def test_a_file_that_is_no_checkpoint_is_a_one_line_error(data, match, tmp_path):
    path = tmp_path / "x.pth"
    path.write_bytes(data)
    refused(path, match)


def overlapping_zip(path: Path, payload: bytes, levels: int) -> Path:
    """A stored zip whose members data/0 .. data/<levels - 1> nest: each one's local header
    lies in the data of the one before, so each member holds the whole payload again."""
    members = [f"archive/data/{i}" for i in range(levels)]

    def local(name: str, data: bytes) -> bytes:
        crc, size = zipfile.crc32(data), len(data)
        head = struct.pack(
            "<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, size, size, len(name), 0
        )
        return head + name.encode()

    body, data = payload, []
    for name in reversed(members):  # innermost first: each wraps the ones after it
        data.append(body)
        body = local(name, body) + body
    data.reverse()
    pickled = dumps(
        {
            f"w{i}": tensor(storage(str(i), len(d), "ByteStorage"), size=(len(d),))
            for i, d in enumerate(data)
        }
    )
    entries = [("archive/data.pkl", pickled, 0)]
    blob = local("archive/data.pkl", pickled) + pickled
    entries.append((members[0], data[0], len(blob)))
    offset = len(blob)
    for name, member_data in zip(members, data, strict=True):
        if name != members[0]:
            entries.append((name, member_data, offset))
        offset += len(local(name, member_data))
    blob += body
    directory = b""
    for name, member_data, at in entries:
        crc, size = zipfile.crc32(member_data), len(member_data)
        directory += (
            struct.pack(
                "<4s6H3L5H2L",
                b"PK\x01\x02",
                20,
                20,
                0,
                0,
                0,
                0,
                crc,
                size,
                size,
                len(name),
                0,
                0,
                0,
                0,
                0,
                at,
            )
            + name.encode()
        )
    end = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(directory), len(blob), 0
    )
    path.write_bytes(blob + directory + end)
    return path


def test_overlapping_zip_members_cannot_hold_more_than_the_file(tmp_path):
    path = overlapping_zip(tmp_path / "overlap.pth", bytes(range(256)) * 64, 4)
    assert len(zipfile.ZipFile(path).read("archive/data/3")) == 256 * 64  # they do overlap
    refused(path, "larger than the file")
    single = overlapping_zip(tmp_path / "one.pth", bytes(range(256)), 1)
    assert torch.equal(read_checkpoint(single)["w0"], torch.arange(256, dtype=torch.uint8))


def test_a_compressed_member_is_refused(tmp_path):
    path = tmp_path / "deflated.pth"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", dumps({"w": tensor()}))
        archive.writestr("archive/data/0", bytes(16))
    refused(path, "compressed")


# --- property: random opcode streams over the allowed names ------------------------------------

NAMES = [
    *SAFE_CALLABLES,
    "torch.FloatStorage",
    "torch.cuda.LongStorage",
    "torch.nn.modules.linear.Linear",
    "models.Encoder",
    "torch.optim.adam.Adam",
    "os.system",
    "posix.system",
    "subprocess.Popen",
    "builtins.eval",
    "builtins.getattr",
    "torch.jit.load",
    "torch.load",
]
FIXED_OPS = [
    pickle.MARK,
    pickle.TUPLE,
    pickle.TUPLE1,
    pickle.TUPLE2,
    pickle.TUPLE3,
    pickle.EMPTY_TUPLE,
    pickle.EMPTY_DICT,
    pickle.EMPTY_LIST,
    pickle.EMPTY_SET,
    pickle.FROZENSET,
    pickle.SETITEM,
    pickle.SETITEMS,
    pickle.APPEND,
    pickle.APPENDS,
    pickle.ADDITEMS,
    pickle.REDUCE,
    pickle.BUILD,
    pickle.NEWOBJ,
    pickle.BINPERSID,
    pickle.NONE,
    pickle.NEWTRUE,
    pickle.NEWFALSE,
    pickle.POP,
    pickle.DUP,
    pickle.MEMOIZE,
    pickle.STOP,
]


def opcode_streams(marker: str) -> st.SearchStrategy[bytes]:
    strings = ["storage", "0", "cpu", "_modules", "w", "module", f"touch {marker}", marker]
    op = st.one_of(
        st.sampled_from(FIXED_OPS),
        st.sampled_from(NAMES).map(lambda name: emit(G(name))),
        st.integers(-(2**40), 2**40).map(emit),
        st.sampled_from(strings).map(
            lambda s: pickle.SHORT_BINUNICODE + bytes([len(s)]) + s.encode()
        ),
        st.integers(0, 3).map(lambda n: pickle.BINPUT + bytes([n])),
        st.integers(0, 3).map(lambda n: pickle.BINGET + bytes([n])),
        # whole pieces as torch.save writes them, so that the stream gets past the start
        st.builds(
            lambda offset, size, stride: emit(tensor(offset=offset, size=size, stride=stride)),
            st.integers(-1, 5),
            st.tuples(st.integers(0, 5)) | st.tuples(st.integers(0, 3), st.integers(0, 3)),
            st.tuples(st.integers(-1, 3)) | st.tuples(st.integers(0, 3), st.integers(0, 3)),
        ),
        st.just(emit(New(G("models.Encoder")))),
        st.just(emit({"_modules": {}, "_parameters": {}, "_buffers": {}})),
    )
    return st.lists(op, max_size=40).map(lambda ops: b"\x80\x02" + b"".join(ops) + pickle.STOP)


@pytest.fixture(scope="module")
def fuzz_dir():
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


def test_random_opcode_streams_run_no_code_and_fail_only_with_the_readers_errors(
    fuzz_dir, monkeypatch
):
    marker = fuzz_dir / "ran"
    calls: list = []

    def forbidden(*args, **kwargs):
        calls.append(args)
        raise AssertionError(f"called with {args}")

    monkeypatch.setattr(os, "system", forbidden)
    monkeypatch.setattr(subprocess, "Popen", forbidden)
    monkeypatch.setattr(torch.jit, "load", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    path = fuzz_dir / "fuzz.pth"

    @settings(
        max_examples=400,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(stream=opcode_streams(str(marker)), legacy=st.booleans())
    def read(stream: bytes, legacy: bool) -> None:
        if legacy:
            path.write_bytes(legacy_head + stream + legacy_keys)
        else:
            zip_checkpoint(path, stream)
        try:
            read_checkpoint(path)
        except pickle.UnpicklingError as error:
            assert_one_line_error(error)
        assert not calls and not marker.exists()

    torch.save({}, path, _use_new_zipfile_serialization=False)
    headers, legacy_keys, _ = legacy_parts(path)
    legacy_head = headers[: len(headers) - len(dumps({}))]
    read()
