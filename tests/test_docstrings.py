"""Every docstring example in the package runs and prints what it shows.

``make test`` collects ``tests/`` only, so nothing ran the examples: two of them had gone
wrong unnoticed (the int8 and int4 reference linears). One test per module, with the
standard library's doctest, in the module's own namespace.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import musicgen_nb

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(musicgen_nb.__path__, "musicgen_nb.")
    if "__main__" not in m.name
)


def test_the_package_has_examples():
    finder = doctest.DocTestFinder()
    counted = sum(
        len(t.examples) for name in MODULES for t in finder.find(importlib.import_module(name))
    )
    assert counted > 100, counted


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed"


# --- Every public callable has an example -------------------------------------------------
# The public surface is tools/public_api.py's (every name of musicgen_nb.__all__ and of the
# public subpackages' __all__, and the public methods and properties of the public classes).
# A function or class needs an example in its own docstring. A method or property needs one in
# its own docstring, or is exercised by its class's example (``.name``, ``len(``, a loop).
# KNOWN_GAPS lists the methods still without one (files of other branches at the time): it may
# only shrink, so a new public method without an example fails, and so does a stale entry.
KNOWN_GAPS: set[str] = set()


def _public_api():
    import sys
    from pathlib import Path

    tools = str(Path(__file__).resolve().parents[1] / "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    import public_api

    return public_api


def _examples(doc: str) -> str:
    return "\n".join(line for line in doc.splitlines() if line.strip().startswith((">>>", "...")))


def _exercised(name: str, class_examples: str) -> bool:
    import re

    if re.search(r"\." + re.escape(name) + r"\b", class_examples):
        return True
    loop = re.search(r"\bfor [\w, ()]+ in (?!range\()", class_examples)  # over the object
    return {
        "__len__": "len(" in class_examples,
        "__iter__": loop is not None or "list(" in class_examples,
        "__next__": "next(" in class_examples or loop is not None,
        # a subscript of a name (r[0]), not of an attribute of it (g.codes[0])
        "__getitem__": re.search(r"(?<![.\w])\w+\[", class_examples) is not None,
        "__call__": False,
    }.get(name, False)


def callables_without_examples() -> set[str]:
    import inspect

    api = _public_api()
    missing = set()
    for obj in api.public_objects():
        qual = f"{obj.__module__}.{obj.__qualname__}"
        if ">>>" not in (inspect.getdoc(obj) or ""):
            missing.add(qual)
        if not inspect.isclass(obj):
            continue
        class_examples = _examples(inspect.getdoc(obj) or "")
        for member, fn, _ in api.members(obj):
            name = member.rsplit(".", 1)[1]
            if name == "__init__" or ">>>" in (fn.__doc__ or ""):
                continue
            if not _exercised(name, class_examples):
                missing.add(member)
    return missing


def test_every_public_callable_has_an_example():
    missing = callables_without_examples()
    assert missing - KNOWN_GAPS == set(), "add an Examples section to: " + ", ".join(
        sorted(missing - KNOWN_GAPS)
    )
    assert KNOWN_GAPS - missing == set(), "these have examples now; drop them from KNOWN_GAPS"


def test_the_example_check_finds_a_missing_example():
    assert not _exercised("merge", ">>> ft = train(s, data)\n>>> ft.history_frame()")
    assert _exercised("merge", ">>> ft.merge().generate('x')")
    assert _exercised("__len__", ">>> len(r)")
    assert _exercised("__iter__", ">>> [c.final for c in st]")
    assert not _exercised("__iter__", ">>> [2 * i for i in range(3)]")
    assert _exercised("__getitem__", ">>> r[0]") and not _exercised("__getitem__", ">>> g.codes[0]")
