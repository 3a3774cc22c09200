"""A chunk's timeline: duration, end and repr, with or without its audio."""

from __future__ import annotations

import numpy as np
import pytest

from musicgen_nb.streaming import Chunk


def test_duration_end_and_repr():
    c = Chunk(np.zeros((2, 1, 16000), np.float32), 1.0, False, 3, 32000, arrived=2.5)
    assert c.samples == 16000 and c.duration == 0.5 and c.end == 1.5
    assert repr(c) == "Chunk(#3, 1.00-1.50 s, audio (2, 1, 16000), at 2.50 s)"
    kept = Chunk(**{**c.__dict__, "audio": c.audio[..., :0]})  # how st.chunks keeps it
    assert kept.samples == 16000 and kept.duration == pytest.approx(0.5)
    assert "final" in repr(Chunk(c.audio, 0.0, True, 0, 32000))
