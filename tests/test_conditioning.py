"""Tests for musicgen_nb.conditioning: text and chroma conditioning for generation and fine-tuning."""

import numpy as np
import pytest
import torch

from musicgen_nb.conditioning import (
    chroma_start,
    conditioning,
    encode_text,
    fit_chroma,
    null_chroma,
    pad,
    stack_states,
    text_states,
)


def test_fit_chroma_loops_a_short_melody():
    chroma = np.eye(12, dtype=np.float32)[[0, 4, 7]]  # 3 frames
    out = fit_chroma(chroma, 8)
    assert out.shape == (8, 12)
    assert out.argmax(-1).tolist() == [0, 4, 7, 0, 4, 7, 0, 4]
    assert fit_chroma(chroma, 2, start=2).argmax(-1).tolist() == [7, 0]


def test_encode_text_unconditional_is_zero_and_masked(tiny):
    hidden, mask = encode_text(tiny, ["jazz", None])
    assert hidden.shape[:2] == mask.shape and hidden.dtype == tiny.dtype
    assert mask[0].any() and not mask[1].any() and hidden[1].abs().sum() == 0
    assert hidden.shape[-1] == tiny.model.decoder.config.hidden_size


def test_text_states_match_encode_text_alone(tiny):
    texts = ["jazz", "a longer rock prompt", None]
    states = text_states(tiny, texts + ["jazz"])
    assert list(states) == texts
    h, m = stack_states(states, ["jazz", None], "cpu")
    alone, alone_mask = encode_text(tiny, ["jazz"])
    assert h.shape[0] == 2 and h.dtype == torch.float32
    torch.testing.assert_close(h[:1, : alone.shape[1]], alone.float())
    assert torch.equal(m[:1, : alone.shape[1]], alone_mask) and not m[1].any()
    wide, _ = stack_states(states, texts, "cpu")
    assert wide.shape[1] == states["a longer rock prompt"][0].shape[1]


def test_pad():
    t = torch.ones(2, 3, 4)
    assert pad(t, 3) is t
    out = pad(t, 5)
    assert out.shape == (2, 5, 4) and out[:, 3:].abs().sum() == 0
    assert pad(torch.ones(1, 1, dtype=torch.bool), 3).tolist() == [[True, False, False]]


@pytest.mark.parametrize(
    "guidance_scale, negative, branches", [(1.0, None, 1), (3.0, None, 2), (3.0, ["drums"], 2)]
)
def test_conditioning_branches_of_a_text_model(tiny, guidance_scale, negative, branches):
    cond = conditioning(tiny, ["jazz"], negative=negative, guidance_scale=guidance_scale)
    assert cond.branches == branches and cond.hidden.shape[0] == branches and not cond.prefix
    assert cond.mask.shape == cond.hidden.shape[:2]
    if negative is not None:
        plain = conditioning(tiny, ["jazz"], negative=None, guidance_scale=guidance_scale)
        assert not torch.equal(cond.hidden[1:], plain.hidden[1:, : cond.hidden.shape[1]])


def test_conditioning_of_a_melody_model(tiny_melody):
    s = tiny_melody
    length = s.model.config.chroma_length
    chroma = np.zeros((1, length, 12), dtype=np.float32)
    chroma[..., 4] = 1
    cond = conditioning(
        s, ["piano"], negative=None, guidance_scale=3.0, melody_chroma=chroma, cfg_coef_beta=1.0
    )
    assert cond.prefix and cond.mask is None and cond.branches == 3
    assert cond.hidden.shape[0] == 3 and cond.hidden.shape[1] > length
    null = null_chroma(s, 2)
    assert null.shape == (2, length, 12) and null[..., 0].min() == 1 and null[..., 1:].max() == 0
    assert chroma_start(s, 0) == 0 and chroma_start(s, 100) == 16
