"""tools/pins_kept.py: an install that would change a pinned package is caught."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import pins_kept  # noqa: E402


def _report(*items):
    """pip's installation report (``pip install --report``, format version 1)."""
    return {
        "version": "1",
        "install": [{"metadata": {"name": n, "version": v}, "requested": False} for n, v in items],
    }


def test_reads_the_colab_pins():
    pins = pins_kept.read_pins((ROOT / ".ci" / "colab-constraints.txt").read_text())
    assert pins == {
        "ipython": "7.34.0", "ipykernel": "6.17.1", "ipywidgets": "7.7.1",
        "widgetsnbextension": "3.6.1", "pandas": "2.2.2",
    }  # fmt: skip


def test_a_changed_pin_fails_and_new_packages_pass(tmp_path, capsys):
    pins = tmp_path / "pins.txt"
    pins.write_text("IPython==7.34.0  # Colab\nwidgetsnbextension == 3.6.1\n")
    ok, bad = tmp_path / "ok.json", tmp_path / "bad.json"
    ok.write_text(json.dumps(_report(("anywidget", "0.9.18"), ("musicgen-nb", "0.1.0"))))
    bad.write_text(json.dumps(_report(("anywidget", "0.9.18"), ("ipython", "9.1.0"))))
    assert pins_kept.main([str(pins), str(ok)]) == 0
    assert (
        "pins kept (2: ipython, widgetsnbextension); 2 packages in the report"
        in capsys.readouterr().out
    )
    assert pins_kept.main([str(pins), str(bad)]) == 1
    assert "ipython: pinned 7.34.0, pip would install 9.1.0" in capsys.readouterr().out


def test_a_constraints_line_that_is_not_a_pin_is_refused():
    with pytest.raises(ValueError, match="'ipython>=7' is not of the form name==version"):
        pins_kept.read_pins("ipython>=7\n")
