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
