"""The docs site's sources: every environment variable is documented; notebooks are re-run when stale."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import docs_notebooks  # noqa: E402


def test_every_environment_variable_the_package_reads_is_documented():
    used = set()
    for path in (ROOT / "musicgen_nb").rglob("*.py"):
        used |= set(re.findall(r"MUSICGEN_NB_[A-Z_]+[A-Z]", path.read_text(encoding="utf-8")))
    page = (ROOT / "docs" / "reference" / "environment.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^`(MUSICGEN_NB_[A-Z_]+)`$", page, re.M))
    assert used - documented == set()


def test_missing_or_stale_executions_are_found(tmp_path):
    names = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert [p.name for p in docs_notebooks.stale(tmp_path)] == names
    for name in names:
        (tmp_path / name).write_text("{}")
    assert docs_notebooks.stale(tmp_path) == []
    old = (tmp_path / names[0]).stat().st_mtime - 10**6
    os.utime(tmp_path / names[0], (old, old))
    assert [p.name for p in docs_notebooks.stale(tmp_path)] == [names[0]]
