"""Read a `torch.save` checkpoint of whole pickled modules as data, running none of their code.

A pickle is a program: each global it names is imported and may be called, so a checkpoint
can run `os.system` as it loads. This unpickler resolves only

* the functions that rebuild tensors and parameters (what `torch.load(weights_only=True)`
  also allows) and plain containers (dict, OrderedDict, defaultdict, set), and
* the classes of a model's modules and its optimizer, each replaced by a `PickledObject`: a
  stand-in that keeps the class's dotted name and the state the pickle gives it, and runs
  nothing of the class itself.

Any other global is refused with `UnsafePickleError` before it is imported. `torch.load` drives
the unpickler (`read_checkpoint`), so both of its formats load: the zip archive (PyTorch 1.6
and later) and the older single-stream format the tutorial's PyTorch 0.4 wrote.
"""

from __future__ import annotations

import collections
import os
import pickle
import sys
import warnings
import zipfile
from functools import cache
from typing import Any

import torch


def _plain_dict(default_factory: Any = None) -> dict:
    """A pickled defaultdict (an optimizer's per-parameter state) as a plain dict: its factory,
    whatever the pickle names, is never kept, so no later lookup can call it."""
    return {}


# Called while loading: each rebuilds a tensor, a parameter or a container from plain data.
SAFE_CALLABLES = {
    "torch._utils._rebuild_tensor": torch._utils._rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
    "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": torch._utils._rebuild_parameter_with_state,
    "torch.nn.parameter.Parameter": torch.nn.Parameter,
    "torch.device": torch.device,  # nn.DataParallel's output device
    "collections.OrderedDict": collections.OrderedDict,
    "collections.defaultdict": _plain_dict,
    "builtins.dict": dict,  # that defaultdict's factory
    "builtins.set": set,
    "builtins.frozenset": frozenset,
}
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


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list: loading it could run code."""


class PickledObject:
    """An instance of an allow-listed class, as data: `class_name` ("models.Encoder") and the
    `state` its pickle set (for a torch module, its __dict__: _parameters, _buffers,
    _modules, ...). Built with arguments, it keeps them in `args`."""

    class_name = ""
    # torch's legacy format compares a module class's saved source with this class's, and
    # would write a .patch file into the working directory for a class that asks for one.
    dump_patches = False

    def __init__(self, *args: Any) -> None:
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<pickled {self.class_name}>"

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """What nn.Module.state_dict() would give: every parameter and persistent buffer of
        this module and its submodules, by dotted name."""
        state = self.state if isinstance(self.state, dict) else {}
        if "_modules" not in state:
            raise ValueError(f"{prefix or 'the checkpoint'}: {self.class_name} is not a module")
        skipped = state.get("_non_persistent_buffers_set") or set()
        tensors = {
            f"{prefix}{name}": tensor
            for group in ("_parameters", "_buffers")
            for name, tensor in (state.get(group) or {}).items()
            if tensor is not None and name not in skipped
        }
        for name, child in state["_modules"].items():
            if isinstance(child, PickledObject):
                tensors.update(child.state_dict(f"{prefix}{name}."))
        return tensors


@cache
def _stand_in(class_name: str) -> type[PickledObject]:
    """One PickledObject subclass per class name, so objects of a class share their type."""
    return type(class_name.rpartition(".")[2], (PickledObject,), {"class_name": class_name})


class Unpickler(pickle.Unpickler):
    """pickle.Unpickler that resolves only the allow-listed globals (see the module's doc)."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":  # Python 2's name, which protocol 2 pickles still use
            module = "builtins"
        qualified = f"{module}.{name}"
        if qualified in SAFE_CALLABLES:
            return SAFE_CALLABLES[qualified]
        if qualified in STAND_IN_CLASSES or (
            module.startswith(STAND_IN_PREFIXES) and name[:1].isupper()
        ):
            return _stand_in(qualified)
        raise UnsafePickleError(
            f"refusing to load {qualified}: the checkpoint's pickle names it, and a pickle "
            "that calls it could run code; only tensors, plain containers and model modules "
            "are read"
        )


def load(file, **kwargs: Any) -> Any:
    """pickle.load through the restricted Unpickler (torch.load reads the legacy format's
    header records with it)."""
    return Unpickler(file, **kwargs).load()


def read_checkpoint(path: str | os.PathLike) -> Any:
    """The object a `torch.save` file holds, with tensors on the CPU and every allow-listed
    class a PickledObject. Raises UnsafePickleError for anything else."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any(name.rpartition("/")[2] == "constants.pkl" for name in archive.namelist()):
                # torch.load would hand a TorchScript archive to torch.jit.load, which runs it.
                raise UnsafePickleError(
                    "a TorchScript archive (torch.jit.save), not a torch.save checkpoint; "
                    "refusing to load it"
                )
    with warnings.catch_warnings():
        # The legacy format compares each module class's saved source with its stand-in's:
        # that they differ, or that a stand-in has no source file, is expected.
        warnings.simplefilter("ignore", category=torch.serialization.SourceChangeWarning)
        warnings.filterwarnings("ignore", message="Couldn't retrieve source code")
        return torch.load(
            path, map_location="cpu", pickle_module=sys.modules[__name__], weights_only=False
        )
