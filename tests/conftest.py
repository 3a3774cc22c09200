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


@pytest.fixture(scope="module")
def kernel():
    """The C++ attention kernel: it must build wherever a C++ compiler exists."""
    from _engine import require_kernel

    return require_kernel()
