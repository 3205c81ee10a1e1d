"""Read a `torch.save` checkpoint of whole pickled modules as data, running none of their code.

A pickle is a program: each global it names is imported and may be called, so a checkpoint
can run `os.system` as it loads. This module reads the file itself and hands it to nothing
else: `torch.load` and `torch.jit.load` are never called, so no bytes of a file, however they
are arranged, can reach an unrestricted unpickler or TorchScript. (torch.load decides "zip or
not" and "TorchScript or not" with readers of its own; asking Python's zipfile first and then
calling torch.load let an archive that one reader rejects and the other accepts run.) It reads

* the zip archive of PyTorch 1.6 and later with Python's zipfile: `<archive>/data.pkl`, and
  each storage from its own member `<archive>/data/<key>`, stored (uncompressed) and exactly
  as long as the pickle declares; a TorchScript archive (code/, constants.pkl) is refused;
* the single-stream format that PyTorch 0.4 (the tutorial's) wrote: three header pickles, the
  pickle, the list of storage keys, then each storage's element count and bytes, every one
  declared storage filled in full from the file or the read fails;

and refuses the tar format of the earliest PyTorch releases, which no tutorial checkpoint
uses, without reading any of its members.

Each pickle is first scanned (pickletools.genops) for nesting deeper than MAX_NESTING, which
would crash the interpreter while it hashes or frees the objects, and then loaded by a
restricted Unpickler (pickle's pure-Python one, so that every opcode that calls, builds or
fills an object passes through code here). It resolves only

* the functions that rebuild tensors and parameters (what `torch.load(weights_only=True)`
  also allows) and plain containers (dict, OrderedDict, defaultdict, set, frozenset), each
  replaced by a checked version here that takes only the arguments torch.save writes;
* the classes of a model's modules and its optimizer, each replaced by a `PickledObject`: a
  stand-in that keeps the class's dotted name and the state the pickle gives it, and runs
  nothing of the class itself.

Any other global is refused with `UnsafePickleError` before it is imported, and state is set
only on stand-ins and state dicts. A tensor must cover its storage densely (no stride 0, no
overlap, nothing past the storage's end) and no two tensors of the result may share a storage,
so the tensors read hold at most the bytes the file holds. Every failure, whatever raised it,
is an `UnsafePickleError` or a `MalformedCheckpointError` (both pickle.UnpicklingError) with a
one-line reason.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import pickletools
import stat
import tarfile
import zipfile
from collections.abc import Callable
from functools import lru_cache
from typing import IO, Any

import torch

MAX_NESTING = 1000  # containers within containers; a model's checkpoint needs a few dozen
MAX_DIMS = 64  # torch's own limit on a tensor's dimensions
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
LEGACY_PROTOCOL = 1001  # torch.serialization.PROTOCOL_VERSION


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list, or would set the state of an object
    that is no stand-in: loading it could run or change code."""


class MalformedCheckpointError(pickle.UnpicklingError):
    """The file is not a checkpoint this module reads, or its pickle, storages or tensors do
    not fit together."""


class PickledObject:
    """An instance of an allow-listed class, as data: `class_name` ("models.Encoder") and the
    `state` its pickle set (for a torch module, its __dict__: _parameters, _buffers,
    _modules, ...). Built with arguments, it keeps them in `args`."""

    class_name = ""

    def __init__(self, *args: Any) -> None:
        self.args = args
        self.state: Any = None

    def __repr__(self) -> str:
        return f"<pickled {self.class_name}>"

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """What nn.Module.state_dict() would give: every parameter and persistent buffer of
        this module and its submodules, by dotted name. Raises ValueError for a module that is
        no module, a submodule that appears twice (shared, which would double the names at each
        level) or that contains itself."""
        tensors: dict[str, torch.Tensor] = {}
        seen: dict[int, str] = {}  # id of each module visited -> its dotted name
        pending: list[tuple[str, PickledObject]] = [(prefix, self)]
        while pending:
            name, module = pending.pop()
            where = name.rstrip(".") or "the module"
            if id(module) in seen:
                first = seen[id(module)]
                if not first or name.startswith(first):
                    raise ValueError(f"contains itself: {where} is {first.rstrip('.') or 'it'}")
                raise ValueError(
                    f"has the submodule {first.rstrip('.')} again at {where}: shared submodules "
                    "are not read"
                )
            seen[id(module)] = name
            state = module.state if isinstance(module.state, dict) else {}
            if "_modules" not in state:
                raise ValueError(f"{where}: {module.class_name} is not a module")
            skipped = state.get("_non_persistent_buffers_set") or set()
            if not isinstance(skipped, set | frozenset):
                raise ValueError(f"{where}: _non_persistent_buffers_set is no set")
            for group in ("_parameters", "_buffers"):
                for key, tensor in _named(state.get(group) or {}, f"{where}'s {group}"):
                    if tensor is None or key in skipped:
                        continue
                    if not isinstance(tensor, torch.Tensor):
                        raise ValueError(f"{where}'s {key} is a {type(tensor).__name__}, no tensor")
                    tensors[f"{name}{key}"] = tensor
            for key, child in reversed(_named(state["_modules"], f"{where}'s _modules")):
                if isinstance(child, PickledObject):
                    pending.append((f"{name}{key}.", child))
                elif child is not None:
                    raise ValueError(f"{where}'s submodule {key} is a {type(child).__name__}")
        return tensors


def _named(mapping: Any, what: str) -> list[tuple[str, Any]]:
    """The items of a module's dict of parameters, buffers or submodules, each named by a
    string."""
    if not isinstance(mapping, dict):
        raise ValueError(f"{what} is a {type(mapping).__name__}, not a dict")
    items = list(mapping.items())
    for key, _ in items:
        if not isinstance(key, str):
            raise ValueError(f"{what} has a name that is a {type(key).__name__}, not a string")
    return items


@lru_cache(maxsize=1024)
def _stand_in(class_name: str) -> type[PickledObject]:
    """One PickledObject subclass per class name, so objects of a class share their type."""
    return type(class_name.rpartition(".")[2], (PickledObject,), {"class_name": class_name})


class _StorageType:
    """What `torch.FloatStorage` and its siblings stand for in a storage reference: a dtype."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


_STORAGE_TYPES = {
    name: _StorageType(dtype)
    for dtype, name in torch.storage._dtype_to_storage_type_map().items()
    if not name.startswith("Q")  # quantized: no plain tensor of them
} | {"UntypedStorage": _StorageType(torch.uint8)}


class _Storage:
    """A storage the pickle declares: `numel` elements of `dtype`, whose bytes come from the
    file (at once in the zip format, after the pickle in the legacy one)."""

    def __init__(self, dtype: torch.dtype, numel: int, buffer: bytearray | None = None) -> None:
        self.dtype, self.numel = dtype, numel
        self.buffer = bytearray(numel * dtype.itemsize) if buffer is None else buffer
        data = torch.frombuffer(self.buffer, dtype=torch.uint8) if self.buffer else torch.empty(0)
        self.untyped = data.untyped_storage()  # shares self.buffer's memory

    def fill(self, file: IO[bytes]) -> bool:
        """Read the bytes from `file`; whether it held them all."""
        view, got = memoryview(self.buffer), 0
        while got < len(view):
            count = file.readinto(view[got:])
            if not count:
                return False
            got += count
        return True


# --- the callables a pickle may name: each takes only what torch.save writes -------------------


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> torch.Tensor:
    if not isinstance(storage, _Storage):
        raise MalformedCheckpointError(f"a tensor's storage is {_short(storage)}, not a storage")
    offset = _count(storage_offset, "a tensor's storage offset")
    size, stride = _dims(size, "size"), _dims(stride, "stride")
    if len(size) != len(stride):
        raise MalformedCheckpointError(f"a tensor of size {size} has stride {stride}")
    numel = math.prod(size)
    if numel:
        # Dense: ordered by stride, each dimension steps over exactly the ones before it. A
        # stride of 0 (torch.expand) or an overlap would let a few stored bytes make a tensor
        # of any size.
        expected = 1
        for step, length in sorted(
            (st, sz) for sz, st in zip(size, stride, strict=True) if sz != 1
        ):
            if step != expected:
                raise MalformedCheckpointError(
                    f"a tensor of size {size} with stride {stride} does not cover its elements "
                    "once each (repeated or overlapping elements are not read)"
                )
            expected *= length
    if offset + numel > storage.numel:
        raise MalformedCheckpointError(
            f"a tensor of {numel} elements from offset {offset} runs past the end of its "
            f"storage of {storage.numel}"
        )
    return torch.empty(0, dtype=storage.dtype).set_(storage.untyped, offset, size, stride)


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any,
    backward_hooks: Any,
    metadata: Any = None,
) -> torch.Tensor:
    _no_hooks(backward_hooks)
    if metadata:
        raise MalformedCheckpointError("a tensor with metadata (conjugate, negative) is not read")
    tensor = _rebuild_tensor(storage, storage_offset, size, stride)
    tensor.requires_grad = _flag(requires_grad)
    return tensor


def _rebuild_parameter(data: Any, requires_grad: Any, backward_hooks: Any) -> torch.Tensor:
    _no_hooks(backward_hooks)
    return _parameter(data, requires_grad)


def _rebuild_parameter_with_state(
    data: Any, requires_grad: Any, backward_hooks: Any, state: Any
) -> torch.Tensor:
    # The state is set with setattr: it could replace the parameter's data, shape or class.
    if state and not (isinstance(state, tuple) and not any(state)):
        raise UnsafePickleError("refusing a parameter with state of its own (attributes set on it)")
    return _rebuild_parameter(data, requires_grad, backward_hooks)


def _parameter(data: Any = None, requires_grad: Any = True) -> torch.Tensor:
    if data is not None and not isinstance(data, torch.Tensor):
        raise MalformedCheckpointError(f"a parameter's data is {_short(data)}, not a tensor")
    return torch.nn.Parameter(data, _flag(requires_grad))


def _device(type: Any, index: Any = None) -> torch.device:
    if not isinstance(type, str) or not (index is None or _is_int(index)):
        raise MalformedCheckpointError(f"torch.device({_short(type)}, {_short(index)})")
    return torch.device(type) if index is None else torch.device(type, index)


def _ordered_dict(items: Any = ()) -> collections.OrderedDict:
    return collections.OrderedDict(_container(items, "OrderedDict"))


def _dict(items: Any = ()) -> dict:
    return dict(_container(items, "dict"))


def _plain_dict(default_factory: Any = None) -> dict:
    """A pickled defaultdict (an optimizer's per-parameter state) as a plain dict: its factory,
    whatever the pickle names, is never kept, so no later lookup can call it."""
    return {}


def _set(items: Any = ()) -> set:
    return set(_container(items, "set"))


def _frozenset(items: Any = ()) -> frozenset:
    return frozenset(_container(items, "frozenset"))


# Called while loading, by the names a pickle gives them.
SAFE_CALLABLES: dict[str, Callable[..., Any]] = {
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter_with_state,
    "torch.nn.parameter.Parameter": _parameter,
    "torch.device": _device,  # nn.DataParallel's output device
    "collections.OrderedDict": _ordered_dict,
    "collections.defaultdict": _plain_dict,
    "builtins.dict": _dict,  # that defaultdict's factory
    "builtins.set": _set,
    "builtins.frozenset": _frozenset,
}
_CALLABLE_NAMES = {id(function): name for name, function in SAFE_CALLABLES.items()}
# Classes read as PickledObject stand-ins. A stand-in runs no code of the class, so naming a
# whole family is safe: torch's and torchvision's modules (nn.DataParallel included), torch's
# optimizers, and the tutorial's own classes (its models.py).
STAND_IN_PREFIXES = (
    "torch.nn.modules.",
    "torch.nn.parallel.",
    "torchvision.models.",
    "torch.optim.",
)
STAND_IN_CLASSES = frozenset({"models.Encoder", "models.DecoderWithAttention", "models.Attention"})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _count(value: Any, what: str) -> int:
    if not _is_int(value) or not 0 <= value < 2**62:
        raise MalformedCheckpointError(f"{what} is {_short(value)}, not a count")
    return value


def _dims(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple) or len(value) > MAX_DIMS:
        raise MalformedCheckpointError(f"a tensor's {what} is {_short(value)}")
    return tuple(_count(n, f"a tensor's {what}") for n in value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise MalformedCheckpointError(f"requires_grad is {_short(value)}, not True or False")
    return value


def _no_hooks(hooks: Any) -> None:
    if hooks is not None and not (isinstance(hooks, dict) and not hooks):
        raise UnsafePickleError("refusing a tensor with backward hooks")


def _container(items: Any, what: str) -> Any:
    # Only plain containers: iterating a tensor would make a Python object of each element.
    if not isinstance(items, list | tuple | set | frozenset | dict):
        raise MalformedCheckpointError(f"{what}() of {_short(items)}")
    return items


def _short(value: Any) -> str:
    """A value for a one-line message: short literals as they are, anything else by type."""
    if (
        value is None
        or isinstance(value, bool | float)
        or (_is_int(value) and value.bit_length() < 64)
    ):
        return repr(value)
    if isinstance(value, str | bytes):
        text = repr(value)
        return text if len(text) <= 40 else f"{text[:36]}...{text[-1]}"
    if isinstance(value, tuple | list | dict | set | frozenset):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def _reason(error: BaseException) -> str:
    """An exception's message as one short line (torch's C++ errors run to many)."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= 200 else f"{text[:197]}..."


# --- the unpickler ---------------------------------------------------------------------------


class Unpickler(pickle._Unpickler):
    """pickle's pure-Python Unpickler that resolves only the allow-listed globals, calls only
    SAFE_CALLABLES and stand-in classes, and sets state only on stand-ins and state dicts
    (see the module's doc). `storage` resolves the pickle's storage references."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: IO[bytes], storage: Callable[[Any], Any] | None = None) -> None:
        super().__init__(file, encoding="utf-8")  # torch.load's encoding for Python 2 strings
        self._storage = storage

    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":  # Python 2's name, which protocol 2 pickles still use
            module = "builtins"
        qualified = f"{module}.{name}"
        if qualified in SAFE_CALLABLES:
            return SAFE_CALLABLES[qualified]
        if module in ("torch", "torch.cuda") and name in _STORAGE_TYPES:
            return _STORAGE_TYPES[name]
        if (
            (qualified in STAND_IN_CLASSES or module.startswith(STAND_IN_PREFIXES))
            and all(part.isidentifier() for part in qualified.split("."))
            and name[:1].isupper()
        ):
            return _stand_in(qualified)
        shown = qualified if len(qualified) <= 100 else f"{qualified[:97]}..."
        raise UnsafePickleError(
            f"refusing to load {shown}: the checkpoint's pickle names it, and a pickle "
            "that calls it could run code; only tensors, plain containers and model modules "
            "are read"
        )

    def persistent_load(self, pid: Any) -> Any:
        if self._storage is None:
            raise MalformedCheckpointError("a reference to data outside this pickle")
        return self._storage(pid)

    def _call(self, function: Any, args: Any) -> Any:
        if not isinstance(args, tuple):
            raise MalformedCheckpointError(f"a call with arguments {_short(args)}, not a tuple")
        if isinstance(function, type) and issubclass(function, PickledObject):
            return function(*args)
        name = _CALLABLE_NAMES.get(id(function))
        if name is None or SAFE_CALLABLES[name] is not function:
            raise UnsafePickleError(
                f"refusing to call {_short(function)}: only the allow-listed functions and "
                "model classes are called"
            )
        try:
            return function(*args)
        except pickle.UnpicklingError:
            raise
        except Exception as error:
            raise MalformedCheckpointError(
                f"{name} called with {len(args)} arguments ({', '.join(map(_short, args[:8]))}): "
                f"{_reason(error)}"
            ) from None

    def _instantiate(self, klass: Any, args: list) -> None:  # INST and OBJ
        self.append(self._call(klass, tuple(args)))

    def _load_reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args)

    def _load_newobj(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._new(self.stack[-1], args)

    def _load_newobj_ex(self) -> None:
        kwargs, args = self.stack.pop(), self.stack.pop()
        if kwargs != {}:
            raise MalformedCheckpointError("an object built with keyword arguments")
        self.stack[-1] = self._new(self.stack[-1], args)

    def _new(self, cls: Any, args: Any) -> PickledObject:
        # cls.__new__ of anything but a stand-in would build an object without the checks.
        if not (isinstance(cls, type) and issubclass(cls, PickledObject)):
            raise UnsafePickleError(f"refusing to build an object of {_short(cls)}")
        return self._call(cls, args)

    def _load_build(self) -> None:
        state = self.stack.pop()
        target = self.stack[-1]
        if isinstance(target, PickledObject):
            if not isinstance(state, dict):
                raise MalformedCheckpointError(
                    f"the state of a {target.class_name} is {_short(state)}, not a dict"
                )
            target.state = state
        elif type(target) is collections.OrderedDict:  # a state dict's _metadata
            if not isinstance(state, dict) or not all(
                isinstance(key, str) and not key.startswith("__") for key in state
            ):
                raise UnsafePickleError(f"refusing to set {_short(state)} on a state dict")
            vars(target).update(state)
        else:
            raise UnsafePickleError(
                f"refusing to set the state of {_short(target)}: only model modules' is read"
            )

    def _target(self, kind: type) -> Any:
        target = self.stack[-1]
        if not isinstance(target, kind):
            raise MalformedCheckpointError(f"items added to {_short(target)}")
        return target

    def _load_append(self) -> None:
        value = self.stack.pop()
        self._target(list).append(value)

    def _load_appends(self) -> None:
        items = self.pop_mark()
        self._target(list).extend(items)

    def _load_setitem(self) -> None:
        value, key = self.stack.pop(), self.stack.pop()
        self._target(dict)[key] = value

    def _load_setitems(self) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise MalformedCheckpointError("SETITEMS of an odd number of items")
        target = self._target(dict)
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]

    def _load_additems(self) -> None:
        items = self.pop_mark()
        self._target(set).update(items)

    for _opcode, _method in (
        (pickle.REDUCE, _load_reduce),
        (pickle.NEWOBJ, _load_newobj),
        (pickle.NEWOBJ_EX, _load_newobj_ex),
        (pickle.BUILD, _load_build),
        (pickle.APPEND, _load_append),
        (pickle.APPENDS, _load_appends),
        (pickle.SETITEM, _load_setitem),
        (pickle.SETITEMS, _load_setitems),
        (pickle.ADDITEMS, _load_additems),
    ):
        dispatch[_opcode[0]] = _method
    del _opcode, _method


# Opcodes that change the object below them on the stack rather than building a new one.
_IN_PLACE = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}


def _check_nesting(file: IO[bytes]) -> None:
    """Refuse a pickle that nests containers deeper than MAX_NESTING, before any of it is
    loaded: hashing or freeing a tuple nested a million deep overflows the C stack. Follows
    the unpickler's stack, with each object's depth in place of the object."""
    stack: list[int] = []
    marks: list[int] = []
    memo: dict[Any, int] = {}
    for opcode, arg, _ in pickletools.genops(file):
        name = opcode.name
        if name == "MARK":
            marks.append(len(stack))
            continue
        if name == "STOP":
            return
        if name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            if not stack:
                raise MalformedCheckpointError(f"{name} on an empty stack")
            memo[len(memo) if name == "MEMOIZE" else arg] = stack[-1]
            continue
        if name in ("GET", "BINGET", "LONG_BINGET"):
            if arg not in memo:
                raise MalformedCheckpointError(f"{name} of an empty memo slot")
            stack.append(memo[arg])
            continue
        before = opcode.stack_before
        taken: list[int] = []
        if pickletools.markobject in before:
            if not marks:
                raise MalformedCheckpointError(f"{name} without a MARK")
            start = marks.pop()
            taken, stack[start:] = stack[start:], []
            below = before.index(pickletools.markobject)
        else:
            below = len(before)
        if len(stack) < below:
            raise MalformedCheckpointError(f"{name} on a stack too short for it")
        consumed = stack[len(stack) - below :] if below else []
        del stack[len(stack) - below :]
        if name == "DUP":
            stack.extend(consumed * 2)
            continue
        if name in _IN_PLACE:
            depth = max([consumed[0]] + [d + 1 for d in consumed[1:] + taken])
        else:
            depth = max(consumed + taken, default=0) + 1
        if depth > MAX_NESTING and opcode.stack_after:
            raise MalformedCheckpointError(
                f"the pickle nests containers more than {MAX_NESTING} deep; no checkpoint does"
            )
        stack.extend([depth] * len(opcode.stack_after))
    raise MalformedCheckpointError("the pickle has no STOP")


def _load_pickle(file: IO[bytes], storage: Callable[[Any], Any] | None = None) -> Any:
    start = file.tell()
    try:
        _check_nesting(file)
    except ValueError as error:  # genops: an unknown opcode, or the file ends inside one
        raise MalformedCheckpointError(f"a damaged pickle ({_reason(error)})") from None
    file.seek(start)
    return Unpickler(file, storage).load()


def _storage_reference(pid: Any, length: int) -> tuple[_StorageType, str, int]:
    """(storage type, key, element count) of a storage reference of `length` fields:
    ('storage', torch.FloatStorage, key, location, numel, ...)."""
    if not isinstance(pid, tuple) or len(pid) != length or pid[0] != "storage":
        raise MalformedCheckpointError(f"a storage reference that is {_short(pid)}")
    _, storage_type, key, location, numel = pid[:5]
    if not isinstance(storage_type, _StorageType):
        raise MalformedCheckpointError(f"a storage of type {_short(storage_type)}")
    if not isinstance(key, str) or not isinstance(location, str | bytes):
        raise MalformedCheckpointError(f"a storage named {_short(key)} at {_short(location)}")
    return storage_type, key, _count(numel, f"storage {key}'s size")


def _shared_storage_check(root: Any) -> None:
    """Refuse a result in which two tensors share a storage: safetensors cannot write them, and
    one storage must not count for the bytes of two tensors."""
    owners: dict[int, torch.Tensor] = {}
    seen: set[int] = set()
    pending = [root]
    while pending:
        obj = pending.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            storage = obj.untyped_storage().data_ptr()
            if obj.numel() and owners.setdefault(storage, obj) is not obj:
                raise MalformedCheckpointError("two tensors share one storage")
        elif isinstance(obj, dict):
            pending.extend(obj.keys())
            pending.extend(obj.values())
            if type(obj) is collections.OrderedDict:
                pending.extend(vars(obj).values())
        elif isinstance(obj, list | tuple | set | frozenset):
            pending.extend(obj)
        elif isinstance(obj, PickledObject):
            pending.extend((obj.state, obj.args))


def _read_zip(file: IO[bytes], size: int) -> Any:
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, ValueError, EOFError) as error:
        raise MalformedCheckpointError(f"a damaged zip archive ({_reason(error)})") from None
    names = archive.namelist()
    inner = [name.partition("/")[2] for name in names]
    if any(name == "constants.pkl" or name.startswith("code/") for name in inner):
        # torch.load would hand it to torch.jit.load, which runs it.
        raise UnsafePickleError(
            "a TorchScript archive (torch.jit.save), not a torch.save checkpoint; refusing to "
            "load it"
        )
    pickles = [name for name in names if name.count("/") == 1 and name.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise MalformedCheckpointError(
            "a zip archive without one data.pkl: not a torch.save checkpoint"
        )
    prefix = pickles[0].removesuffix("data.pkl")

    unread = size  # members may overlap: together they must not hold more than the file

    def member(name: str, length: int | None = None) -> bytearray:
        nonlocal unread
        try:
            info = archive.getinfo(name)
        except KeyError:
            raise MalformedCheckpointError(f"the archive has no {name}") from None
        # torch.save stores members uncompressed; a compressed one could unpack to any size.
        if info.compress_type != zipfile.ZIP_STORED or info.file_size > unread:
            raise MalformedCheckpointError(
                f"{name} is compressed, or with the members read before it larger than the file"
            )
        unread -= info.file_size
        if length is not None and info.file_size != length:
            raise MalformedCheckpointError(
                f"{name} holds {info.file_size} bytes; the pickle declares {length}"
            )
        data = bytearray(info.file_size)
        with archive.open(info) as stream:
            if stream.readinto(data) != len(data) or stream.read(1):
                raise MalformedCheckpointError(f"{name} is cut short")
        return data

    if f"{prefix}byteorder" in names and member(f"{prefix}byteorder") != b"little":
        raise MalformedCheckpointError("a checkpoint of a big-endian machine is not read")
    storages: dict[str, _Storage] = {}

    def storage(pid: Any) -> _Storage:
        storage_type, key, numel = _storage_reference(pid, 5)
        if key not in storages:
            length = numel * storage_type.dtype.itemsize
            buffer = member(f"{prefix}data/{key}", length)
            storages[key] = _Storage(storage_type.dtype, numel, buffer)
        found = storages[key]
        if (found.dtype, found.numel) != (storage_type.dtype, numel):
            raise MalformedCheckpointError(f"storage {key} is declared twice, differently")
        return found

    return _load_pickle(io.BytesIO(member(pickles[0])), storage)


def _read_legacy(file: IO[bytes], size: int) -> Any:
    try:
        magic = _load_pickle(file)
    except pickle.UnpicklingError:
        magic = None
    if not _is_int(magic) or magic != LEGACY_MAGIC:
        raise MalformedCheckpointError(
            "not a torch.save checkpoint: neither a zip archive nor PyTorch's older format"
        )
    if _load_pickle(file) != LEGACY_PROTOCOL:
        raise MalformedCheckpointError("a torch.save file of an unknown protocol version")
    sys_info = _load_pickle(file)
    if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
        raise MalformedCheckpointError("a checkpoint of a big-endian machine is not read")
    storages: dict[str, _Storage] = {}

    def persistent(pid: Any) -> Any:
        if isinstance(pid, tuple) and pid[:1] == ("module",):
            # ('module', class, source file, source): torch compares the source; not needed.
            if len(pid) != 4 or not (
                isinstance(pid[1], type) and issubclass(pid[1], PickledObject)
            ):
                raise MalformedCheckpointError(f"a module reference that is {_short(pid)}")
            return pid[1]
        storage_type, key, numel = _storage_reference(pid, 6)
        if pid[5] is not None:
            raise MalformedCheckpointError("a storage view (PyTorch before 1.0) is not read")
        if key not in storages:
            declared = sum(len(s.buffer) for s in storages.values())
            if declared + numel * storage_type.dtype.itemsize > size - file.tell():
                raise MalformedCheckpointError(
                    f"storage {key} of {numel} elements does not fit in what is left of the file"
                )
            storages[key] = _Storage(storage_type.dtype, numel)
        found = storages[key]
        if (found.dtype, found.numel) != (storage_type.dtype, numel):
            raise MalformedCheckpointError(f"storage {key} is declared twice, differently")
        return found

    result = _load_pickle(file, persistent)
    keys = _load_pickle(file)
    if (
        not isinstance(keys, list)
        or not all(isinstance(key, str) for key in keys)
        or sorted(keys) != sorted(storages)
    ):
        raise MalformedCheckpointError(
            f"the storage keys after the pickle ({_short(keys)}) are not the {len(storages)} "
            "storages it declares"
        )
    for key in keys:
        found = storages[key]
        count = file.read(8)
        if len(count) != 8 or int.from_bytes(count, "little", signed=True) != found.numel:
            raise MalformedCheckpointError(f"storage {key} is not the size its pickle declares")
        if not found.fill(file):
            raise MalformedCheckpointError(f"storage {key} is cut short: the file ends in it")
    return result


def read_checkpoint(path: str | os.PathLike) -> Any:
    """The object a `torch.save` file holds, with tensors on the CPU and every allow-listed
    class a PickledObject. Raises UnsafePickleError or MalformedCheckpointError for anything
    else."""
    try:
        # Opened without blocking: opening a FIFO would wait for a writer.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with open(descriptor, "rb") as file:
            info = os.fstat(descriptor)
            if not stat.S_ISREG(info.st_mode):
                raise MalformedCheckpointError("not a regular file")
            os.set_blocking(descriptor, True)
            result = _read(file, info.st_size)
        _shared_storage_check(result)
        return result
    except pickle.UnpicklingError as error:
        if isinstance(error, UnsafePickleError | MalformedCheckpointError):
            raise
        raise MalformedCheckpointError(_reason(error)) from None
    except Exception as error:  # whatever the file made the unpickler or torch raise
        raise MalformedCheckpointError(f"{type(error).__name__}: {_reason(error)}") from None


def _read(file: IO[bytes], size: int) -> Any:
    if file.read(2) == b"PK":
        file.seek(0)
        return _read_zip(file, size)
    file.seek(0)
    if tarfile.is_tarfile(file):
        # Reading it would extract members, which may be FIFOs or devices, to read them.
        raise MalformedCheckpointError(
            "a tar archive: the checkpoint format of the earliest PyTorch releases is not read"
        )
    file.seek(0)
    return _read_legacy(file, size)
