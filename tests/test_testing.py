"""musicgen_nb.testing: the face that re-exports the stand-in API, and the nbval sanitize rules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import musicgen_nb as mg
from musicgen_nb import testing
from musicgen_nb.checkpoints import standins

ROOT = Path(__file__).resolve().parents[1]


def test_mg_testing_is_a_lazy_attribute():
    assert mg.testing is testing and "testing" in dir(mg)


def test_the_standin_api_is_the_one_of_checkpoints_standins():
    for name in testing.__all__:
        if name not in ("sanitize_file", "sanitize_rules"):
            assert getattr(testing, name) is getattr(standins, name), name
    assert mg.testing.standin_for("melody") == "standin-melody"


# ---------------------------------------------------------------------------- sanitize rules
def test_sanitize_rules_parse_as_nbval_reads_them():
    plugin = pytest.importorskip("nbval.plugin")
    text = testing.sanitize_rules()
    sections = [line for line in text.splitlines() if line.startswith("[")]
    rules = plugin.get_sanitize_patterns(text)
    assert len(rules) == len(sections) >= 5
    replaced = dict(rules)
    assert replaced[r"\d+(\.\d+)? (steps|it)/s"] == "RATE"


def test_cli_prints_the_rules(capsys):
    from musicgen_nb import cli

    assert cli.main(["nbval-sanitize"]) == 0
    assert capsys.readouterr().out == testing.sanitize_rules()


def test_cli_rules_redirected_to_a_file(tmp_path):
    out = tmp_path / "sanitize.cfg"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with out.open("w") as f:
        subprocess.run(
            [sys.executable, "-m", "musicgen_nb.cli", "nbval-sanitize"],
            stdout=f, env=env, check=True, timeout=120,
        )  # fmt: skip
    assert out.read_text() == testing.sanitize_file().read_text()


def _sanitize(text: str) -> str:
    import re

    plugin = pytest.importorskip("nbval.plugin")
    for regex, replace in plugin.get_sanitize_patterns(testing.sanitize_rules()):
        text = re.sub(regex, replace, text)
    return text


def test_tqdm_rule_replaces_bars_only():
    bar = " 40%|████      | 4/10 [00:01<00:02,  3.00it/s]"
    assert _sanitize(bar) == "PROGRESS"
    kept = ["a || b", "| name | value |", "|---|---|", "x = a | b", "0.5|| 1 |"]
    for line in kept:
        assert _sanitize(line) == line


def test_the_standin_notice_is_dropped_from_compared_output():
    notice = testing.notice(testing.Standin("facebook/musicgen-small", "standin", False))
    assert _sanitize(f"{notice}\n32000 50 4\n") == "32000 50 4\n"


def test_the_metric_standin_notice_is_dropped_too():
    text = "musicgen-nb: MUSICGEN_NB_STANDIN=1, so the metric model 'x' is replaced by ...\nok\n"
    assert _sanitize(text) == "ok\n"
