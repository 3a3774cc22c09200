"""The house rules of docs/architecture.md, checked on the code itself.

- The import contracts (pyproject.toml, ``[tool.importlinter]``) hold, and they fail on a
  deliberate violation of each kind: an upward import, an import between independent
  siblings, and a widget library imported by the core.
- No private name crosses a module boundary.
- Modules stay under 400 lines and functions under 60, except the few named here with why.
- Tests mirror the package: one test file per module, folder by folder.
- The core runs headless: generating and streaming load no widget or plotting library.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "musicgen_nb"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
#: Functions allowed past MAX_FUNCTION_LINES, with the reason. Keep this list short.
LONG_FUNCTIONS: dict[str, str] = {}
#: Modules allowed past MAX_MODULE_LINES, with the reason.
LONG_MODULES: dict[str, str] = {}
#: Test files that test no single module (the rules themselves, or every module at once).
CROSS_CUTTING_TESTS = {"test_architecture.py", "test_docstrings.py"}


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def dotted(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


# --------------------------------------------------------------------------- contracts
def lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def test_the_import_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture(scope="module")
def copy_of_the_package(tmp_path_factory):
    root = tmp_path_factory.mktemp("violation")
    shutil.copytree(PACKAGE, root / "musicgen_nb", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", root)
    return root


VIOLATIONS = {
    # an upward import: the core reaching up into the players
    "upward": ("generation/result.py", "from ..players import player", "Layers"),
    # independent siblings: tokens must not import trace
    "siblings": ("tokens.py", "from . import trace", "Layers"),
    # a widget library in the core
    "headless": ("engine/sampling.py", "import ipywidgets", "The core (models and below)"),
}


@pytest.mark.parametrize("kind", sorted(VIOLATIONS))
def test_the_contracts_fail_on_a_deliberate_violation(kind, copy_of_the_package):
    root = copy_of_the_package
    relative, line, contract = VIOLATIONS[kind]
    target = root / "musicgen_nb" / relative
    original = target.read_text()
    target.write_text(original + f"\n\ndef _violation():\n    {line}\n")
    try:
        result = lint_imports(root)
    finally:
        target.write_text(original)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout and contract in result.stdout, result.stdout


# --------------------------------------------------------------------------- private names
def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - (node.level - (1 if is_package else 0))]
    return ".".join(base + ([node.module] if node.module else []))


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def private_imports() -> list[str]:
    """``importer: from module import _name`` for every private name taken from another module."""
    found = []
    for path in modules():
        name = dotted(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = _resolve(name, node, path.name == "__init__.py")
            if not source.startswith("musicgen_nb") or source == name:
                continue
            for alias in node.names:
                if is_module(f"{source}.{alias.name}"):
                    continue  # a private module of ours (``_util``, ``_kernels``) is imported whole
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{name}: from {source} import {alias.name}")
    return found


def test_no_private_name_crosses_a_module_boundary():
    assert private_imports() == []


# --------------------------------------------------------------------------- sizes
def docstring_lines(node) -> int:
    """Lines of a function's docstring: the numpydoc of a function is not its length."""
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        if isinstance(body[0].value.value, str):
            return body[0].end_lineno - body[0].lineno + 1
    return 0


def long_functions() -> dict[str, int]:
    """Functions (and methods) longer than MAX_FUNCTION_LINES, docstrings not counted."""
    out = {}
    for path in modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        stack = [(tree, dotted(path))]
        while stack:
            node, prefix = stack.pop()
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    qual = f"{prefix}.{child.name}"
                    lines = child.end_lineno - child.lineno + 1 - docstring_lines(child)
                    if not isinstance(child, ast.ClassDef) and lines > MAX_FUNCTION_LINES:
                        out[qual] = lines
                    stack.append((child, qual))
    return out


def test_functions_are_short_or_say_why():
    too_long = {q: n for q, n in long_functions().items() if q not in LONG_FUNCTIONS}
    assert too_long == {}


def test_modules_are_short_or_say_why():
    sizes = {dotted(p): len(p.read_text(encoding="utf-8").splitlines()) for p in modules()}
    too_long = {m: n for m, n in sizes.items() if n > MAX_MODULE_LINES and m not in LONG_MODULES}
    assert too_long == {}


def test_the_exceptions_still_exist():
    """An exception for a function or module that is gone (or now short) is dropped."""
    sizes = {dotted(p): len(p.read_text(encoding="utf-8").splitlines()) for p in modules()}
    assert {m for m in LONG_MODULES if sizes.get(m, 0) <= MAX_MODULE_LINES} == set()
    assert set(LONG_FUNCTIONS) - set(long_functions()) == set()


# --------------------------------------------------------------------------- test layout
def expected_test_file(path: Path) -> Path:
    """``musicgen_nb/audio/io.py`` -> ``tests/audio/test_io.py``; ``viz/_util.py`` -> ``tests/viz/test_util.py``."""
    relative = path.relative_to(PACKAGE)
    return ROOT / "tests" / relative.parent / f"test_{relative.stem.lstrip('_')}.py"


def test_every_module_has_its_test_file():
    missing = [
        str(expected_test_file(p).relative_to(ROOT))
        for p in modules()
        if p.name != "__init__.py" and not expected_test_file(p).exists()
    ]
    assert missing == []


def test_every_test_file_mirrors_a_module():
    mirrored = {expected_test_file(p) for p in modules() if p.name != "__init__.py"}
    # A package's __init__ (its re-exported API, e.g. generation.generate) may have its own file.
    mirrored |= {
        ROOT / "tests" / p.parent.relative_to(PACKAGE) / f"test_{p.parent.name}.py"
        for p in modules()
        if p.name == "__init__.py" and p.parent != PACKAGE
    }
    strays = [
        str(t.relative_to(ROOT))
        for t in (ROOT / "tests").rglob("test_*.py")
        if t.parent.name not in ("e2e", "tools")
        and t.name not in CROSS_CUTTING_TESTS
        and t not in mirrored
    ]
    assert strays == []


# --------------------------------------------------------------------------- headless core
def test_the_core_runs_headless():
    """Generating and streaming load no widget, notebook or plotting library at run time."""
    code = (
        "import sys, musicgen_nb as mg\n"
        "s = mg.load('tiny')\n"
        "s.generate('jazz', duration=0.5, seed=0, progress=True)\n"
        "for _ in s.stream('jazz', duration=0.5, seed=0):\n"
        "    pass\n"
        "ui = {'ipywidgets', 'anywidget', 'traitlets', 'IPython', 'plotly'}\n"
        "print(sorted(ui & {m.split('.')[0] for m in sys.modules}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT / "tests", capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout
