"""A grid's spec file: its grid and run settings, and errors that name the file and the line."""

from __future__ import annotations

import re

import pytest

import musicgen_nb as mg
from musicgen_nb.grids.spec import RUN_KEYS, read_spec


def test_read_spec_gives_the_grid_and_the_run_settings(tmp_path):
    p = tmp_path / "spec.yaml"
    p.write_text("model: tiny\nbatch_size: 2\nbackend: ray\nworkers: 1\nprompts: [jazz, rock]\n"
                 "seed: [1, 2]\nduration: 0.5\n")  # fmt: skip
    g, run = read_spec(p)
    assert g.equals(mg.grid(["jazz", "rock"], seed=[1, 2], duration=0.5))
    assert run == dict(model="tiny", batch_size=2, backend="ray", workers=1)
    assert set(run) <= set(RUN_KEYS)
    p.write_text("model: tiny\nrows:\n  - {prompt: jazz, seed: 1}\n  - {prompt: null, seed: 2}\n")
    g, _ = read_spec(p)
    assert g["prompt"].tolist() == ["jazz", None]


@pytest.mark.parametrize(
    "text, line, match",
    [
        ("model: tiny\nprompts: [a]\nguidance: [1, 2]\n", 3, "unknown grid parameter 'guidance'"),
        ("model: tiny\nprompts: [a]\nduration: [1, -2]\n", 3, "grid: duration must be"),
        ("model: tiny\nprompts: [a\n", 3, "not valid YAML"),
        ("model: tiny\nrows:\n  - {prompt: a, seed: 1}\n  - {prompt: b, seed: -1}\n", 4,
         r"rows\[1\]: seed must be an int >= 0"),
        ("model: tiny\nrows: [{prompt: a, seed: 1}]\nprompts: [b]\n", 3, "give either rows or grid axes"),
        ("- a\n- b\n", 1, "the spec must be a mapping with 'model'"),
        ("prompts: [a]\n", 1, "the spec must be a mapping with 'model'"),
        ("model: tiny\nprompts: [a]\ntemperature: .nan\n", 3, "grid: temperature is NaN"),
        ("model: tiny\nprompts: [a]\nbatch_size: 0\n", 3, "batch_size must be an int >= 1, got 0"),
        ("model: tiny\nprompts: [a]\nmetrics: 5\n", 3, "metrics must be a list of metric names"),
        ("model: tiny\nprompts: [a]\nmetrics: [fad]\n", 3, "metrics must be a list of metric names"),
        ("model: tiny\nfmt: mp3\nprompts: [a]\n", 2, "fmt must be one of"),
        ("model: tiny\nprompts: [a]\nbackend: slurm\n", 3, "backend must be one of"),
        ("model: tiny\nprompts: [a]\nworkers: 2\n", 3, "workers= is for backend='ray'"),
        ("prompts: [a]\nmodel: null\n", 2, "model must be a checkpoint name"),
        ("model: tiny\nseed: 1\nprompts: 5\n", 3, "grid: prompt must be a string or None"),
    ],
)  # fmt: skip
def test_a_bad_spec_names_the_file_and_the_line(tmp_path, text, line, match):
    p = tmp_path / "spec.yaml"
    p.write_text(text)
    with pytest.raises((ValueError, TypeError), match=rf"^{re.escape(str(p))}:{line}: .*{match}"):
        read_spec(p)


def test_a_spec_that_cannot_be_read_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"missing\.yaml: cannot read the spec"):
        read_spec(tmp_path / "missing.yaml")
    p = tmp_path / "latin1.yaml"
    p.write_bytes("model: tiny\nprompts: [caf\xe9]\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.yaml: the spec is not UTF-8 text"):
        read_spec(p)


def test_the_cli_prints_the_file_and_line_in_one_line(tmp_path, capsys):
    from musicgen_nb.cli import main

    p = tmp_path / "spec.yaml"
    p.write_text("model: tiny\nprompts: [a]\nseed: [1, x]\n")
    assert main(["grid", str(p), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"musicgen-nb: error: {p}:3: ") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_settings_given_elsewhere_are_checked_with_the_files(tmp_path):
    p = tmp_path / "spec.yaml"
    p.write_text("model: tiny\nworkers: 2\nprompts: [a]\n")
    _, run = read_spec(p, {"backend": "ray", "address": None})  # the CLI's --backend ray
    assert run == dict(model="tiny", workers=2, backend="ray")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(p))}:2: workers= is for backend='ray'"):
        read_spec(p, {"backend": "local"})
