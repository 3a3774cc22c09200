"""Shared settings of the fine-tuning tests (tests/finetune/): the reference run and a check."""

from __future__ import annotations

import torch

STEPS = 120
SHORT = 40  # the resume tests stop, or are killed, inside a run of this many steps
TRAIN = dict(steps=STEPS, lr=1e-2, batch_size=2, seed=0, progress=False, save_every=10)


def assert_same_weights(a, b):
    """Two safetensors files hold the same non-empty set of tensors, bit for bit."""
    from safetensors.torch import load_file

    wa, wb = load_file(a), load_file(b)
    assert set(wa) == set(wb) and wa
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
