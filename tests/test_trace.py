import math
import threading

import numpy as np
import pandas as pd
import pytest

import musicgen_nb as mg
from musicgen_nb.trace import COLUMNS, attach_tokens, select, step_schedule

K = 4
VOCAB = 2048


@pytest.fixture(scope="module")
def traced(tiny):
    return tiny.generate("x", duration=2, seed=0, trace=True, attentions=True, progress=False)


@pytest.fixture(scope="module")
def plain(tiny):
    return tiny.generate("x", duration=2, seed=0, progress=False)


@pytest.fixture(scope="module")
def unguided(tiny):
    return tiny.generate(
        ["x", None], duration=1, seed=0, guidance_scale=1.0, trace=True, progress=False
    )


def test_trace_does_not_change_codes(traced, plain):
    np.testing.assert_array_equal(traced.codes, plain.codes)


def test_columns_and_dtypes(traced):
    df = traced.trace
    assert isinstance(df, pd.DataFrame)
    assert tuple(df.columns) == COLUMNS
    for c in ("item", "step", "window", "codebook", "frame", "token"):
        assert df[c].dtype == np.int64, c
    for c in ("time_s", "entropy", "chosen_prob", "kl"):
        assert df[c].dtype == np.float64, c


def test_one_row_per_item_frame_codebook(traced):
    df = traced.trace
    assert len(df) == 1 * K * 100
    assert not df.duplicated(["item", "frame", "codebook"]).any()
    for k in range(K):
        assert sorted(df[df.codebook == k].frame) == list(range(100))
    np.testing.assert_allclose(df.time_s, df.frame / 50)
    assert (df.window == 0).all()


def test_probabilities_are_valid(traced):
    df = traced.trace
    assert df.chosen_prob.between(0, 1).all()
    assert (df.chosen_prob > 0).all()  # a sampled token had some probability
    top = np.array(df.top_probs.tolist())
    ids = np.array(df.top_ids.tolist())
    assert top.shape == ids.shape == (len(df), 5)
    assert ((top >= 0) & (top <= 1)).all()
    assert (top.sum(1) <= 1 + 1e-5).all()
    assert (np.diff(top, axis=1) <= 0).all()  # sorted, most likely first
    assert ((ids >= 0) & (ids < VOCAB)).all()
    assert (df.chosen_prob <= top[:, 0] + 1e-6).all()


def test_entropy_in_range(traced):
    ent = traced.trace.entropy
    assert (ent >= -1e-6).all() and (ent <= math.log(VOCAB) + 1e-4).all()
    # top_k=250 bounds the support of the sampling distribution
    assert (ent <= math.log(250) + 1e-4).all()


def test_kl_nonnegative_with_guidance_nan_without(traced, unguided):
    assert traced.trace.kl.notna().all()
    assert (traced.trace.kl >= -1e-5).all()
    assert unguided.trace.kl.isna().all()


def test_tokens_are_the_generated_codes(traced):
    df = traced.trace
    assert (df.token >= 0).all(), "generation must pass codes to to_frame (token column)"
    np.testing.assert_array_equal(
        df.token.to_numpy(), traced.codes[df["item"], df.codebook, df.frame]
    )
    # when the sampled token is among the top 5, its probability is the listed one
    for r in df.itertuples():
        if r.token in r.top_ids:
            assert r.chosen_prob == pytest.approx(r.top_probs[r.top_ids.index(r.token)], abs=1e-6)


def test_step_to_frame_matches_delay_pattern(traced):
    layout = mg.patterns.build("delay", K, 100).layout
    df = traced.trace
    np.testing.assert_array_equal(df.frame.to_numpy(), layout[df.step, df.codebook])
    # every non-special cell of the layout has its row
    assert len(df) == int((layout >= 0).sum())
    assert df.step.max() == layout.shape[0] - 1 == traced.timings["steps"] - 1


def test_batch_items(unguided):
    df = unguided.trace
    assert sorted(df["item"].unique()) == [0, 1]
    assert len(df) == 2 * K * 50
    a = df[df["item"] == 0].reset_index(drop=True)
    b = df[df["item"] == 1].reset_index(drop=True)
    np.testing.assert_array_equal(
        a[["step", "codebook", "frame"]], b[["step", "codebook", "frame"]]
    )


def test_schedule_with_prompt_and_windows():
    # audio prompt of 3 frames, then two windows of 10 frames (the second re-uses 6)
    plan = [(0, 10), (4, 14)]
    sched = step_schedule(plan, 2, prefix_known=3)
    # window 0 samples frames 3..9, window 1 frames 10..13: each exactly once per codebook
    for k in range(2):
        assert sorted(sched[sched.codebook == k].frame) == list(range(3, 14))
    # steps per window: frames + K - 1 - known, as generation counts them
    n0 = 10 + 2 - 1 - 3
    n1 = 10 + 2 - 1 - 6
    assert sched[sched.window == 0].step.max() == n0 - 1
    assert sched[sched.window == 1].step.min() == n0
    assert sched.step.max() == n0 + n1 - 1
    w1 = sched[sched.window == 1]
    assert (w1.frame == w1.local_step - w1.codebook + 4).all()


def test_schedule_agrees_with_pattern_for_any_size():
    for frames in (1, 2, 7):
        for k in (1, 2, 4):
            layout = mg.patterns.build("delay", k, frames).layout
            sched = step_schedule([(0, frames)], k)
            assert len(sched) == frames * k
            np.testing.assert_array_equal(sched.frame, layout[sched.step, sched.codebook])


def test_long_form_trace(tiny):
    # tiny's window is 4 s: 5 s generate in two windows
    g = tiny.generate("x", duration=5, seed=0, trace=True, progress=False, extend_stride=2)
    df = g.trace
    assert len(g.windows) == 2 and sorted(df.window.unique()) == [0, 1]
    assert len(df) == K * 250
    for k in range(K):
        assert sorted(df[df.codebook == k].frame) == list(range(250))
    assert df.step.max() == g.timings["steps"] - 1
    np.testing.assert_array_equal(df.token.to_numpy(), g.codes[0, df.codebook, df.frame])


def test_audio_prompt_frames_have_no_rows(tiny):
    prompt = np.random.default_rng(0).standard_normal(32000 // 2).astype(np.float32) * 0.1
    g = tiny.generate(
        "x", duration=1, seed=0, trace=True, progress=False,
        audio_prompt=prompt, audio_prompt_sr=32000,
    )  # fmt: skip
    P = g.prompt_frames
    assert P > 0
    df = g.trace
    for k in range(K):
        assert sorted(df[df.codebook == k].frame) == list(range(P, P + 50))
    assert df.step.min() == 0 and df.step.max() == g.timings["steps"] - 1


def test_stopped_run_keeps_recorded_steps(tiny):
    stop = threading.Event()

    def cb(done, total):
        if done >= 20:
            stop.set()

    g = tiny.generate("x", duration=1, seed=0, trace=True, progress=False, callback=cb, stop=stop)
    assert g.interrupted
    df = g.trace
    assert df.step.max() <= 19
    assert (df.frame < g.codes.shape[-1]).all()
    np.testing.assert_array_equal(df.token.to_numpy(), g.codes[0, df.codebook, df.frame])


def test_attach_tokens_drops_frames_not_in_codes():
    df = pd.DataFrame(dict(item=[0, 0, 0], codebook=[0, 1, 0], frame=[0, 0, 5], token=[-1, -1, -1]))
    out = attach_tokens(df, np.array([[[7, 8], [9, 10]]]))
    assert out.token.tolist() == [7, 9]
    with pytest.raises(ValueError, match="codes must be"):
        attach_tokens(df, np.zeros((2, 2)))


def test_select_errors(traced):
    with pytest.raises(TypeError, match="trace=True"):
        select(None)
    with pytest.raises(ValueError, match="item 3 is not in the trace"):
        select(traced.trace, item=3)
    with pytest.raises(ValueError, match="missing columns"):
        select(traced.trace.drop(columns=["entropy"]), columns=("entropy",))
    rows = select(traced.trace, item=0)
    assert rows[["codebook", "frame"]].equals(
        rows[["codebook", "frame"]].sort_values(["codebook", "frame"]).reset_index(drop=True)
    )
