"""Shared fixtures: the offline checkpoints, loaded once per test process.

They load on ``MUSICGEN_NB_TEST_DEVICE`` (default ``cpu``, so ``make test`` on a CPU
machine is unchanged; ``cuda`` runs the suite on a GPU, in fp32). Tests marked ``gpu``
are skipped unless that device is a CUDA device that exists.
"""

import pytest
from _devices import TEST_DEVICE, on_cuda


@pytest.fixture(scope="session")
def device():
    """The torch device of the session fixtures."""
    import torch

    return torch.device(TEST_DEVICE)


@pytest.fixture(scope="session")
def tiny(device):
    import musicgen_nb as mg

    return mg.load("tiny", device=str(device), precision="fp32")


@pytest.fixture(scope="session")
def tiny_melody(device):
    import musicgen_nb as mg

    return mg.load("tiny-melody", device=str(device), precision="fp32")


@pytest.fixture(scope="module")
def kernel():
    """The C++ attention kernel: it must build wherever a C++ compiler exists."""
    from _engine import require_kernel

    return require_kernel()


def pytest_addoption(parser):
    parser.addoption(
        "--reverse", action="store_true",
        help="run the tests in reverse order (make test-order: finds a test that passes only "
        "after another has left state behind, which -n 2 can hide or expose by chance)",
    )  # fmt: skip


def pytest_collection_modifyitems(config, items):
    """Reverse the order with ``--reverse``; skip the ``gpu`` tests unless on a CUDA device."""
    if config.getoption("--reverse"):
        items.reverse()
    if on_cuda():
        return
    skip = pytest.mark.skip(
        reason=f"needs MUSICGEN_NB_TEST_DEVICE=cuda and a GPU (is {TEST_DEVICE!r})"
    )
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
