"""Tests for musicgen_nb.lessons: int8 on a CPU unless exact, and a measured step time."""

import pytest
import torch

import musicgen_nb as mg
from musicgen_nb import lessons


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU choice")
def test_load_picks_int8_on_cpu_and_prints_a_measured_step(capsys):
    s = mg.teaching.load("tiny")
    line = capsys.readouterr().out.strip()
    assert s.precision == "int8"
    assert (
        line.startswith("tiny: int8 on cpu, ")
        and "ms a decode step (measured just now: 8 steps" in line
    )
    ms = float(line.split(", ")[1].split(" ms")[0])
    assert 0 < ms < 60_000


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU choice")
def test_exact_keeps_fp32_and_an_explicit_precision_wins(capsys):
    assert lessons.load("tiny", exact=True).precision == "fp32"
    assert "(kept for exact comparisons)" in capsys.readouterr().out
    assert lessons.load("tiny", precision="fp32").precision == "fp32"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU choice")
def test_a_standin_is_named_as_such(capsys, monkeypatch):
    monkeypatch.setenv("MUSICGEN_NB_STANDIN", "1")
    s = lessons.load("facebook/musicgen-small")
    line = capsys.readouterr().out.strip().splitlines()[-1]  # after the once-per-process notice
    assert s.is_standin
    assert line.startswith(
        f"facebook/musicgen-small (offline stand-in {s.standin}, random weights): int8 on cpu, "
    )


def test_step_ms_times_real_steps():
    s = mg.load("tiny")
    assert lessons.step_ms(s, steps=4) > 0


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="exact must be True or False, got 'yes'"):
        lessons.load("tiny", exact="yes")
    with pytest.raises(ValueError, match=r"steps must be an int in \[2, 200\], got 1"):
        lessons.step_ms(mg.load("tiny"), steps=1)
