"""Generations shared by the viz tests of traces and attentions (made once per module)."""

import pytest


@pytest.fixture(scope="module")
def guided(tiny):
    return tiny.generate(
        ["jazz", "rock"], duration=1, seed=0, guidance_scale=3.0, trace=True, progress=False
    )


@pytest.fixture(scope="module")
def unguided(tiny):
    return tiny.generate(
        ["jazz", "rock"], duration=1, seed=0, guidance_scale=1.0, trace=True, progress=False
    )


@pytest.fixture(scope="module")
def attn(tiny):
    g = tiny.generate(["jazz", None], duration=1, seed=0, attentions=True, progress=False)
    return g.attentions
