"""display_audio: one player per clip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musicgen_nb.audiocraft import display_audio


def test_one_player_per_clip(capsys):
    display_audio(torch.zeros(3, 2, 800), 8000)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all("2 ch" in line for line in lines)
    display_audio(np.zeros((1, 800), np.float32), 8000)
    assert capsys.readouterr().out.count("Player(") == 1


def test_bad_shape():
    with pytest.raises(ValueError, match=r"samples must be \[B, C, T\]"):
        display_audio(torch.zeros(800), 8000)
