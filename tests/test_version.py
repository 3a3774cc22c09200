"""musicgen_nb/_version.py: the one version string."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

import musicgen_nb
from musicgen_nb._version import __version__

ROOT = Path(__file__).resolve().parents[1]


def test_the_version_is_written_once():
    """pyproject.toml reads it from musicgen_nb/_version.py, and the package exports it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert musicgen_nb.__version__ == __version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_the_installed_metadata_agrees():
    from importlib.metadata import version

    assert version("musicgen-nb") == __version__
