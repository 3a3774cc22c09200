"""The metrics package surface: today's names, and chroma similarity from melody."""

from __future__ import annotations

import pytest
from _clips import clips

import musicgen_nb as mg
from musicgen_nb import metrics as M


def test_chroma_similarity_is_exposed():
    assert M.chroma_similarity is mg.melody.similarity
    a = mg.melody.chroma(clips(1)[0], 32000)
    assert M.chroma_similarity(a, a) == pytest.approx(1.0)


def test_every_public_name_is_there():
    assert all(hasattr(M, name) for name in M.__all__)
    assert mg.metrics is M
