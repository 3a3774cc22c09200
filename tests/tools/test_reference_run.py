"""tools/reference_run.py: the plan and its refusals (the run itself needs a GPU and the hub)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("reference_run", ROOT / "tools" / "reference_run.py")
reference_run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reference_run)


def test_every_notebook_in_course_order():
    names = [p.name for p in reference_run.notebooks()]
    assert names == sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert [p.name[:2] for p in reference_run.notebooks(["03", "07"])] == ["03", "07"]
    with pytest.raises(ValueError, match=r"--only \['99'\] match no notebook"):
        reference_run.notebooks(["99"])


def test_environment_is_real_checkpoints_full_length_with_solutions(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICGEN_NB_STANDIN", "1")
    monkeypatch.setenv("MUSICGEN_NB_QUICK", "1")
    env = reference_run.environment(tmp_path)
    assert "MUSICGEN_NB_STANDIN" not in env and "MUSICGEN_NB_QUICK" not in env
    assert env["MUSICGEN_NB_SOLUTIONS"] == "1" and env["TMPDIR"] == str(tmp_path / "files")


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "ref"
    assert reference_run.main(["--out", str(out), "--dry-run", "--only", "00"]) == 0
    assert "00_quickstart.ipynb ->" in capsys.readouterr().out
    assert not out.exists()


def test_refuses_a_folder_with_an_earlier_run(tmp_path):
    (tmp_path / "00_quickstart.ipynb").write_text("{}")
    with pytest.raises(SystemExit):
        reference_run.main(["--out", str(tmp_path), "--dry-run"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00_quickstart.ipynb"]


def test_refuses_to_start_without_cuda(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit):
        reference_run.main(["--out", str(tmp_path / "ref")])
    assert "CUDA is not available" in capsys.readouterr().err
    assert not (tmp_path / "ref").exists()
