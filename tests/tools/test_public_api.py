"""tools/public_api.py: the public surface is completely annotated (the package ships py.typed)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import public_api  # noqa: E402


def test_every_public_callable_is_annotated():
    assert public_api.unannotated_public_callables() == []


def test_the_check_finds_a_missing_annotation():
    def public(x, y: int):  # no annotation on x, none on the return
        return x

    found = public_api.gaps("example.public", public)
    assert found == ["example.public(x)", "example.public(return)"], found
