"""Shared fixtures: the offline checkpoints, loaded once per test process."""

import pytest


@pytest.fixture(scope="session")
def tiny():
    import musicgen_nb as mg

    return mg.load("tiny")


@pytest.fixture(scope="session")
def tiny_melody():
    import musicgen_nb as mg

    return mg.load("tiny-melody")
