"""Helpers shared by the engine tests (tests/engine/): conditioning, tokens, the kernel."""

from __future__ import annotations

import shutil

import pytest
import torch

from musicgen_nb import _kernels as K
from musicgen_nb.conditioning import conditioning

PROMPTS = ["lo-fi beat", "jazz piano"]


def require_kernel():
    """The C++ kernel: it must build wherever a C++ compiler exists."""
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler here: only the PyTorch path runs")
    assert K.load(), K.status()
    return torch.ops.musicgen_nb.attend_int8


def make_cond(s, gs=3.0):
    """Guidance branches for :data:`PROMPTS`."""
    return conditioning(s, PROMPTS, negative=None, guidance_scale=gs)


def tokens(s, rows, n, seed=0):
    """Random codes ``[rows, K, n]``."""
    g = torch.Generator().manual_seed(seed)  # drawn on the CPU: the same codes on every device
    return torch.randint(0, s.codebook_size, (rows, s.num_codebooks, n), generator=g).to(s.device)


def forward_logits(s, toks, cond):
    """transformers' decoder forward on ``toks`` ``[2, K, n]``: last-position logits ``[2, K, V]``."""
    ref = s.model.decoder(
        input_ids=toks.reshape(2 * s.num_codebooks, toks.shape[-1]),
        encoder_hidden_states=cond.hidden,
        encoder_attention_mask=cond.mask.long(),
    ).logits[:, -1]
    return ref.reshape(2, s.num_codebooks, -1)
