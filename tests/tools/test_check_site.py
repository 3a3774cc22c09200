"""tools/check_site.py and the strictness of the docs build (docs/conf.py, `make docs`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import check_site  # noqa: E402


def test_a_good_site_has_no_problems(tmp_path):
    (tmp_path / "a.html").write_text('<h1 id="top">A</h1><a href="b.html#x">b</a>')
    (tmp_path / "b.html").write_text(
        '<p id="x"></p><a href="a.html#top">a</a><a href="https://example.org">web link</a>'
        '<script src="_static/local.js"></script>'
    )
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "local.js").write_text("")
    assert check_site.problems(tmp_path) == []


def test_broken_links_anchors_and_remote_scripts_are_found(tmp_path):
    (tmp_path / "a.html").write_text(
        '<a href="missing.html">m</a><a href="a.html#nope">n</a>'
        '<script src="https://cdn.example.org/x.js"></script>'
        '<link rel="stylesheet" href="//cdn.example.org/x.css">'
    )
    found = check_site.problems(tmp_path)
    assert found == [
        "a.html: link to missing.html: no such file",
        "a.html: link to a.html#nope: no such anchor",
        "a.html: <script> loads https://cdn.example.org/x.js from the web",
        "a.html: <link> loads //cdn.example.org/x.css from the web",
    ], found
    assert check_site.main([str(tmp_path)]) == 1


def _build(src: Path, out: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """The strict build of `make docs`, with the site's conf.py, on the pages in ``src``."""
    pytest.importorskip("sphinx")
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-n", "-q",
         "-c", str(ROOT / "docs"), "-D", "mg_render_notebooks=0", str(src), str(out)],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env=env,
    )  # fmt: skip


def test_a_broken_cross_reference_fails_the_docs_build(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "_static").mkdir()
    (src / "index.md").write_text(
        "# Test\n\n{py:func}`musicgen_nb.models.load` resolves; "
        "{py:func}`musicgen_nb.load` resolves to it;\n"
        "{py:func}`musicgen_nb.models.nosuch` does not.\n\n"
        "```{eval-rst}\n.. autofunction:: musicgen_nb.models.load\n```\n"
    )
    proc = _build(src, tmp_path / "out")
    assert proc.returncode != 0
    warnings = [line for line in proc.stderr.splitlines() if "index.md" in line]
    assert len(warnings) == 1, proc.stderr  # the alias musicgen_nb.load resolved
    assert "WARNING: py:func reference target not found: musicgen_nb.models.nosuch" in warnings[0]


def test_a_public_name_without_a_docstring_fails_the_docs_build(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (tmp_path / "undocumented.py").write_text("def f(x: int) -> int:\n    return x\n")
    (src / "index.md").write_text(
        "# Test\n\n```{eval-rst}\n.. autofunction:: undocumented.f\n```\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    proc = _build(src, tmp_path / "out", env=env)
    assert proc.returncode != 0
    assert "GL08: The object does not have a docstring" in proc.stderr, proc.stderr
