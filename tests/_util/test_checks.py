"""Tests for musicgen_nb._util.checks: every message names the argument, the value and what is allowed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from musicgen_nb._util.checks import (
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_path,
    check_positive,
    check_sr,
)


def test_check_int():
    assert check_int(np.int64(3), "n", minimum=1) == 3
    with pytest.raises(TypeError, match="n must be an int >= 1, got True"):
        check_int(True, "n", minimum=1)
    with pytest.raises(ValueError, match="n must be an int >= 1, got 0"):
        check_int(0, "n", minimum=1)


def test_check_int_default_minimum_is_zero():
    assert check_int(0, "item") == 0 and type(check_int(np.int32(5), "item")) is int
    with pytest.raises(ValueError, match="item must be an int >= 0, got -1"):
        check_int(-1, "item")
    with pytest.raises(TypeError, match="item must be an int >= 0, got 1.0"):
        check_int(1.0, "item")


def test_check_positive_numbers():
    assert check_positive(2, "duration") == 2.0 and isinstance(check_positive(2, "duration"), float)
    assert check_positive(np.float32(0.5), "duration") == 0.5
    assert check_positive(10**400, "duration", integer=True) == 10**400  # too big for a float
    for bad in (0, -1.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=rf"duration must be a positive number, got {bad!r}"):
            check_positive(bad, "duration")
    for bad in (True, "1", None):
        with pytest.raises(TypeError, match=rf"duration must be a positive number, got {bad!r}"):
            check_positive(bad, "duration")


def test_check_positive_integers_and_none():
    assert check_positive(4, "batch_size", integer=True) == 4
    with pytest.raises(TypeError, match="batch_size must be a positive integer, got 2.0"):
        check_positive(2.0, "batch_size", integer=True)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        check_positive(0, "batch_size", integer=True)
    assert check_positive(None, "max_seconds", allow_none=True) is None
    with pytest.raises(ValueError, match="max_seconds must be a positive number or None, got 0"):
        check_positive(0, "max_seconds", allow_none=True)
    with pytest.raises(TypeError, match="max_seconds must be a positive number, got None"):
        check_positive(None, "max_seconds")


def test_check_number():
    assert check_number(1, "temperature", allowed="> 0") == 1.0
    with pytest.raises(TypeError, match=r"temperature must be a number \(> 0\), got str 'hot'"):
        check_number("hot", "temperature", allowed="> 0")
    with pytest.raises(TypeError, match=r"temperature must be a number \(> 0\), got bool True"):
        check_number(True, "temperature", allowed="> 0")
    with pytest.raises(ValueError, match=r"temperature must be a finite number \(> 0\), got nan"):
        check_number(float("nan"), "temperature", allowed="> 0")
    with pytest.raises(
        ValueError, match=r"top_p must be a finite number \(0..1\), got an int of 401"
    ):
        check_number(10**400, "top_p", allowed="0..1")


def test_check_bool():
    assert check_bool(np.bool_(True), "progress") is True
    for bad in (0, "no", None):
        with pytest.raises(TypeError, match=rf"progress must be True or False, got \w+ {bad!r}"):
            check_bool(bad, "progress")


def test_check_sr():
    assert check_sr(44100.0) == 44100 and check_sr(np.int64(32000), "melody_sr") == 32000
    for bad in (0, -1, 44100.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="melody_sr must be a positive integer sample rate"):
            check_sr(bad, "melody_sr")
    for bad in ("16k", True, None):
        with pytest.raises(
            TypeError, match=rf"sr must be a positive integer sample rate in Hz, got {bad!r}"
        ):
            check_sr(bad)


def test_check_choice():
    assert check_choice("flac", "fmt", ("wav", "flac")) == "flac"
    with pytest.raises(ValueError, match=r"fmt must be one of \['wav', 'flac'\], got 'mp3'"):
        check_choice("mp3", "fmt", ("wav", "flac"))
    with pytest.raises(ValueError, match=r"fmt must be one of \['wav'\], got None"):
        check_choice(None, "fmt", iter(["wav"]))


def test_check_path(tmp_path):
    assert check_path(tmp_path / "a.wav", "path") == tmp_path / "a.wav"
    assert check_path(str(tmp_path / "b"), "path") == Path(tmp_path / "b")
    with pytest.raises(TypeError, match="path must be a file path .str or os.PathLike., got bytes"):
        check_path(os.fsencode(tmp_path / "b"), "path")
    with pytest.raises(TypeError, match="out must be a file path .str or os.PathLike., got int 3"):
        check_path(3, "out")
    with pytest.raises(ValueError, match="out is an empty string; give a file path"):
        check_path("", "out")
