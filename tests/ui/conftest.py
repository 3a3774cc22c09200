"""The studio panel on the tiny model, ready for a 1 s run."""

import pytest

import musicgen_nb as mg


@pytest.fixture
def st(tiny):
    st = mg.studio(tiny, display=False)
    st.prompt.value = "lo-fi beat"
    st.duration.value = 1.0
    return st
