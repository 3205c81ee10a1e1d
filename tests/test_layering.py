"""The dependency direction: gui -> captioner and training -> captioner, never back, and the app
never reaches into training; no two modules import each other, even through a chain or from
inside a function. The library must stay usable without Qt or the training extras, and its
light modules without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> the top-level packages none of its modules may import
FORBIDDEN = {"captioner": {"gui", "training"}, "gui": {"training"}}
PACKAGES = ("captioner", "gui", "training")
# Modules the app's UI thread and the commands' --help read before torch is imported.
TORCH_FREE = (
    "captioner.registry",
    "captioner.options",
    "captioner.backends",
    "captioner.files.hub",
    "captioner.photos.inputs",
    "captioner.photos.atomic",
    "captioner.cli.push",
    "captioner.library",
)


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


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path, modules: set[str]) -> set[str]:
    """The modules of `modules` that the file at `path` imports, anywhere in it (inside
    functions too), except under `if TYPE_CHECKING:`, which runs for type checkers only."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    type_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for statement in block.body
        for node in ast.walk(statement)
    }
    package = module_name(path, root)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the file's package, one level up per extra dot
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from package import module` imports the module; `from module import name`
            # the module itself.
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """module -> the modules of `packages` it imports, for every module under `root`."""
    paths = {
        module_name(path, root): path
        for package in packages
        for path in (root / package).rglob("*.py")
    }
    return {module: imported_modules(path, root, set(paths)) for module, path in paths.items()}


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every set of modules that import one another, directly or through others (Tarjan's
    strongly connected components), each as a sorted list; a module importing itself too."""
    index: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(module: str) -> None:
        index[module] = lowest[module] = len(index)
        stack.append(module)
        for imported in sorted(graph[module]):
            if imported not in index:
                visit(imported)
                lowest[module] = min(lowest[module], lowest[imported])
            elif imported in stack:
                lowest[module] = min(lowest[module], index[imported])
        if lowest[module] == index[module]:
            component = []
            while not component or component[-1] != module:
                component.append(stack.pop())
            if len(component) > 1 or module in graph[module]:
                circles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return circles


KNOWN_CIRCLES: list[list[str]] = []


def test_no_module_imports_itself_through_others():
    graph = import_graph(ROOT, PACKAGES)
    assert "captioner.api" in graph and graph["captioner.api"], "the import graph came out empty"
    circles = import_circles(graph)
    new = [circle for circle in circles if circle not in KNOWN_CIRCLES]
    assert not new, "modules that import one another:\n" + "\n".join(
        " <-> ".join(circle) for circle in new
    )
    gone = [circle for circle in KNOWN_CIRCLES if circle not in circles]
    assert not gone, f"no longer a circle, take it out of KNOWN_CIRCLES: {gone}"


def test_a_circle_through_an_import_inside_a_function_is_found(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import helper\n")
    (package / "b.py").write_text("def helper():\n    from . import a\n    return a\n")
    (package / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.d import D\n"
    )
    (package / "d.py").write_text("import pkg.c\n")
    assert import_circles(import_graph(tmp_path, ("pkg",))) == [["pkg.a", "pkg.b"]]


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


@pytest.mark.parametrize("module", TORCH_FREE)
def test_light_modules_load_without_torch(module):
    code = f"import sys, {module}; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False).returncode == 0
