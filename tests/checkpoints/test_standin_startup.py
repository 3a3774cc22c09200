"""The kernel-start sitecustomize: once per interpreter, silent without musicgen-nb."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from musicgen_nb.checkpoints import standin_startup, standins

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )


def test_two_startup_folders_run_once_and_chain_the_hidden_one_once(tmp_path):
    """xdist workers, or use_standins() then --musicgen-standin: two of ours on the path."""
    first, second = standin_startup.startup_dir(tmp_path), standin_startup.startup_dir(tmp_path)
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "sitecustomize.py").write_text("print('user sitecustomize')\n")
    code = "from musicgen_nb.checkpoints import hub_standins; print(hub_standins.installed())"
    paths = [str(first), str(second), str(tmp_path / "user"), str(ROOT)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths), MUSICGEN_NB_STANDIN="1")
    out = _python(code, env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "sitecustomize" not in out.stderr and "Recursion" not in out.stderr, out.stderr[-2000:]
    assert out.stdout.split("\n")[:2] == ["user sitecustomize", "True"]


def test_an_interpreter_without_musicgen_nb_starts_silently(tmp_path):
    folder = standin_startup.startup_dir(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(folder), MUSICGEN_NB_STANDIN="1")
    out = subprocess.run(  # -I-like: no site-packages where musicgen_nb could be installed
        [sys.executable, "-S", "-c", "import sitecustomize; print('ok')"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0 and out.stdout.strip() == "ok"
    assert out.stderr == ""


def test_startup_on_path_and_the_shared_folder(tmp_path):
    folder = standin_startup.startup_dir(tmp_path)
    assert standin_startup.startup_on_path(os.pathsep.join(["", str(tmp_path), str(folder)]))
    assert not standin_startup.startup_on_path(
        str(tmp_path)
    ) and not standin_startup.startup_on_path(None)
    shared = standin_startup.shared_startup_dir(tmp_path / "cache")
    assert shared == tmp_path / "cache" / "standin-startup"
    assert (shared / "sitecustomize.py").read_text() == standin_startup.SITECUSTOMIZE


def test_use_standins_adds_no_second_folder(tmp_path, monkeypatch):
    folder = standin_startup.startup_dir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(folder))
    monkeypatch.setenv("MUSICGEN_NB_CACHE", str(tmp_path / "cache"))
    with standins.use_standins():
        assert os.environ["PYTHONPATH"] == str(folder)
    assert not (tmp_path / "cache").exists()
