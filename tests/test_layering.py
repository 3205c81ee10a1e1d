"""The dependency direction: gui -> captioner and training -> captioner, never back, and the app
never reaches into training. The library must stay usable without Qt or the training extras."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> the top-level packages none of its modules may import
FORBIDDEN = {"captioner": {"gui", "training"}, "gui": {"training"}}


def forbidden_imports(package: str, forbidden: set[str]) -> list[str]:
    """'file:line imports module (`statement`)' for every import of a forbidden package in any
    module of `package`, imports inside functions included."""
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no modules found under {ROOT / package}"
    found = []
    for path in files:
        source = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source, filename=str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module]
            else:  # relative imports stay inside their own package
                continue
            for module in modules:
                if module.split(".")[0] in forbidden:
                    statement = ast.get_source_segment(source, node)
                    found.append(
                        f"{path.relative_to(ROOT)}:{node.lineno} imports {module} (`{statement}`)"
                    )
    return found


@pytest.mark.parametrize("package", FORBIDDEN)
def test_package_imports_only_downwards(package):
    found = forbidden_imports(package, FORBIDDEN[package])
    rule = f"{package} must not import {' or '.join(sorted(FORBIDDEN[package]))}"
    assert not found, rule + ":\n" + "\n".join(found)


# Runs in a fresh interpreter: reports each gui/training/PySide6 module as it is imported, with
# the line that imported it, so an import made at run time (importlib) is caught too.
TRIPWIRE = """
import importlib.abc, os, sys, traceback

MACHINERY = f"{os.sep}importlib{os.sep}"  # importlib.import_module's frames

class Tripwire(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {"gui", "training", "PySide6"}:
            stack = traceback.extract_stack()
            caller = [f for f in stack if f.filename[0] != "<" and MACHINERY not in f.filename][-1]
            print(f"{name}, imported by {caller.filename}:{caller.lineno} (`{caller.line}`)")
        return None  # let the real finders import it

sys.meta_path.insert(0, Tripwire())
import captioner.api
"""


def test_importing_the_api_loads_neither_the_app_nor_training_nor_qt():
    result = subprocess.run(
        [sys.executable, "-c", TRIPWIRE], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert not result.stdout, "import captioner.api loaded:\n" + result.stdout


def test_the_app_paints_its_window_before_importing_torch():
    """torch takes seconds to import; the window shows first and the worker imports it (the
    Backend setting once pulled it in through captioner.onnx_backend: window up 0.4 s -> 2.8 s)."""
    code = "import sys, gui.app, gui.main_window; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
