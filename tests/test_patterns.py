"""Tests for musicgen_nb.patterns: layouts, step counts, round trips, and transformers' delay."""

import numpy as np
import pandas as pd
import pytest
import torch

from musicgen_nb import patterns

K, T = 4, 7


def codes(batch=2, k=K, t=T, seed=0):
    return np.random.default_rng(seed).integers(0, 2048, size=(batch, k, t))


def test_names():
    assert patterns.names() == ["parallel", "delay", "unroll", "coarse_first", "musiclm"]


@pytest.mark.parametrize(
    ("name", "steps"),
    [
        ("parallel", T),
        ("delay", T + K - 1),
        ("unroll", K * T),
        ("coarse_first", 2 * T),
        ("musiclm", K * T),
    ],
)
def test_step_counts(name, steps):
    p = patterns.build(name, K, T)
    assert p.num_steps == steps
    assert p.layout.shape == (steps, K) and p.layout.dtype == np.int64
    # every frame of every codebook exactly once
    for k in range(K):
        col = p.layout[:, k]
        np.testing.assert_array_equal(np.sort(col[col >= 0]), np.arange(T))


def test_delay_layout():
    p = patterns.build("delay", 3, 4)
    np.testing.assert_array_equal(
        p.layout.T,
        [[0, 1, 2, 3, -1, -1], [-1, 0, 1, 2, 3, -1], [-1, -1, 0, 1, 2, 3]],
    )


def test_parallel_and_unroll_layouts():
    np.testing.assert_array_equal(patterns.build("parallel", 2, 3).layout, [[0, 0], [1, 1], [2, 2]])
    u = patterns.build("unroll", 3, 2).layout
    np.testing.assert_array_equal((u >= 0).sum(axis=1), np.ones(6))  # one codebook per step
    np.testing.assert_array_equal(u.max(axis=1), [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(u.argmax(axis=1), [0, 1, 2, 0, 1, 2])


def test_coarse_first_layout():
    p = patterns.build("coarse_first", 3, 2)
    np.testing.assert_array_equal(p.layout, [[0, -1, -1], [1, -1, -1], [-1, 0, 0], [-1, 1, 1]])


def test_musiclm_layout():
    p = patterns.build("musiclm", 4, 2)
    np.testing.assert_array_equal(
        p.layout,
        [
            # coarse group, flattened over all frames
            [0, -1, -1, -1], [-1, 0, -1, -1], [1, -1, -1, -1], [-1, 1, -1, -1],
            # fine group
            [-1, -1, 0, -1], [-1, -1, -1, 0], [-1, -1, 1, -1], [-1, -1, -1, 1],
        ],
    )  # fmt: skip
    assert patterns.build("musiclm", 2, 5).num_steps == 10


@pytest.mark.parametrize("name", patterns.names())
@pytest.mark.parametrize("batched", [True, False])
def test_round_trip(name, batched):
    c = codes()
    if not batched:
        c = c[0]
    p = patterns.build(name, K, T)
    seq = patterns.interleave(c, p, special_id=2048)
    assert seq.shape == c.shape[:-1] + (p.num_steps,)
    assert (seq == 2048).sum() == (p.layout < 0).sum() * (c.shape[0] if batched else 1)
    np.testing.assert_array_equal(patterns.deinterleave(seq, p), c)


def test_interleave_places_codes():
    c = codes(batch=1)
    p = patterns.build("delay", K, T)
    seq = patterns.interleave(c, p, special_id=-5)
    assert seq[0, 2, 2 + 3] == c[0, 2, 3]
    assert seq[0, 3, 0] == -5 and seq[0, 0, T] == -5


def test_interleave_accepts_torch():
    c = torch.as_tensor(codes())
    p = patterns.build("parallel", K, T)
    np.testing.assert_array_equal(patterns.interleave(c, p, 0), c.numpy())


def test_delay_matches_transformers_pattern_mask():
    from transformers import MusicgenDecoderConfig, MusicgenForCausalLM

    pad = 2048
    config = MusicgenDecoderConfig(
        vocab_size=pad, num_codebooks=K, hidden_size=16, num_hidden_layers=1,
        num_attention_heads=2, ffn_dim=32, pad_token_id=pad, bos_token_id=pad,
    )  # fmt: skip
    model = MusicgenForCausalLM(config)
    c = codes(batch=2)
    bos = np.full((2, K, 1), pad)
    input_ids = torch.as_tensor(np.concatenate([bos, c], axis=-1)).reshape(2 * K, T + 1)
    _, mask = model.build_delay_pattern_mask(input_ids, pad_token_id=pad, max_length=T + K)
    ours = patterns.interleave(c, patterns.build("delay", K, T), special_id=pad)
    ours = np.concatenate([bos, ours], axis=-1)  # the BOS column
    np.testing.assert_array_equal(mask.reshape(2, K, T + K).numpy(), ours)


def test_pattern_repr_frame_and_immutability():
    p = patterns.build("delay", 2, 3)
    assert repr(p) == "Pattern('delay', num_codebooks=2, frames=3, num_steps=4)"
    df = p.to_frame()
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["step", "codebook", "frame"]
    assert len(df) == 8
    assert df.query("step == 1 and codebook == 1").frame.item() == 0
    assert df.query("step == 0 and codebook == 1").frame.item() == -1
    with pytest.raises(ValueError):
        p.layout[0, 0] = 5
    assert p == patterns.build("delay", 2, 3) and p != patterns.build("parallel", 2, 3)


def test_build_errors():
    with pytest.raises(ValueError, match=r"name must be one of \['parallel'.*got 'zigzag'"):
        patterns.build("zigzag", 4, 10)
    with pytest.raises(ValueError, match="num_codebooks must be an int >= 1, got 0"):
        patterns.build("delay", 0, 10)
    with pytest.raises(ValueError, match="num_codebooks must be an int >= 2"):
        patterns.build("coarse_first", 1, 10)
    with pytest.raises(TypeError, match="frames"):
        patterns.build("delay", 4, 2.5)


def test_shape_mismatch_errors():
    p = patterns.build("delay", K, T)
    with pytest.raises(ValueError, match=r"codes have shape \(2, 4, 6\).*T=7"):
        patterns.interleave(codes(t=6), p, 0)
    with pytest.raises(ValueError, match=r"seq has shape .*num_steps=10"):
        patterns.deinterleave(codes(t=T), p)
    with pytest.raises(TypeError, match="integer"):
        patterns.interleave(codes().astype(float), p, 0)
    with pytest.raises(TypeError, match="pattern must be a Pattern"):
        patterns.interleave(codes(), "delay", 0)


def test_codebook_delays_mono_and_stereo():
    assert patterns.codebook_delays(4) == [0, 1, 2, 3]
    assert patterns.codebook_delays(4, channels=1) == [0, 1, 2, 3]
    assert patterns.codebook_delays(8, channels=2) == [0, 0, 1, 1, 2, 2, 3, 3]
    # mono delays are the delay pattern's: codebook k first predicts frame 0 at step k
    p = patterns.build("delay", K, T)
    assert patterns.codebook_delays(K) == p.positions[:, 0].tolist()
    with pytest.raises(ValueError, match="channels must be 1 \\(mono\\) or 2 \\(stereo\\), got 3"):
        patterns.codebook_delays(4, channels=3)
    with pytest.raises(ValueError, match=r"num_codebooks must be an int in \[1, 64\], got 0"):
        patterns.codebook_delays(0)
    with pytest.raises(
        ValueError, match=r"num_codebooks must be an int in \[1, 64\], got 1000000000000"
    ):
        patterns.codebook_delays(10**12)  # refused at once, not a MemoryError
    with pytest.raises(TypeError, match="channels must be an int >= 1, got 2.0"):
        patterns.codebook_delays(4, channels=2.0)
