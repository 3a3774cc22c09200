"""Tests for musicgen_nb.generation.checks: every argument checked, with a clear message, before any work."""

import numpy as np
import pytest
from _capped import expect_error


def gen(s, prompt="jazz", **kw):
    kw.setdefault("progress", False)
    kw.setdefault("seed", 1)
    return s.generate(prompt, **kw)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(duration=0), ValueError, "duration must be > 0"),
        (dict(duration=-1), ValueError, "duration must be > 0"),
        (dict(duration=float("nan")), ValueError, "duration must be a finite"),
        (dict(duration="10"), TypeError, "duration must be a number"),
        (dict(temperature=0), ValueError, "temperature must be > 0"),
        (dict(top_k=-1), ValueError, "top_k must be >= 0"),
        (dict(top_k=2.5), TypeError, "top_k must be an int"),
        (dict(top_p=1.5), ValueError, r"top_p must be in \[0, 1\]"),
        (dict(top_p=-0.1), ValueError, r"top_p must be in \[0, 1\]"),
        (dict(guidance_scale=0.5), ValueError, "guidance_scale must be >= 1"),
        (dict(guidance_scale=float("nan")), ValueError, "guidance_scale must be a finite"),
        (dict(seed=-3), ValueError, "seed must be None or an int"),
        (dict(do_sample="yes"), TypeError, "do_sample must be True or False"),
        (
            dict(melody=np.zeros(32000), melody_sr=32000),
            ValueError,
            "melody= needs a melody checkpoint",
        ),
        (dict(cfg_coef_beta=1.0), ValueError, "cfg_coef_beta needs a melody checkpoint"),
        (dict(audio_prompt=np.zeros((1, 1, 1, 100)), audio_prompt_sr=32000), ValueError, "audio"),
        (dict(audio_prompt=np.zeros(3200)), ValueError, "audio_prompt_sr is required"),
        (dict(negative_prompt=["a", "b"]), ValueError, "negative_prompt must be one text"),
        (
            dict(negative_prompt="a", guidance_scale=1),
            ValueError,
            "negative_prompt needs guidance_scale",
        ),
        (dict(extend_stride=10), ValueError, "extend_stride must be in"),
    ],
)
def test_bad_parameters_raise_clear_errors(tiny, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        gen(tiny, **{"duration": 1, **kwargs})


def test_bad_prompts(tiny):
    with pytest.raises(TypeError, match="prompts must be"):
        tiny.generate(42, duration=1)
    with pytest.raises(ValueError, match="must not be an empty list"):
        tiny.generate([], duration=1)


def test_huge_duration_is_refused_at_once_with_the_reason():
    out = expect_error(
        "mg.load('tiny').generate('x', duration=1e6, progress=False)",
        "ValueError",
        r"duration must be <= 10800 s \(3 hours.*in seconds\), got 1e\+06 s.*50,000,000 frames",
        timeout=120,
    )
    assert "audio_prompt=" in out


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(progress="no"), TypeError, "progress must be True or False, got str 'no'"),
        (dict(trace="yes"), TypeError, "trace must be True or False, got str 'yes'"),
        (dict(attentions="no"), TypeError, "attentions must be True or False"),
        (dict(progress=1), TypeError, "progress must be True or False, got int 1"),
        (dict(callback=5), TypeError, r"callback must be None or a callable .* got int 5"),
        (dict(stop="yes"), TypeError, r"stop must be None or an object with is_set\(\)"),
        (dict(seed=2**64), ValueError, r"seed must be None or an int in \[0, 2\*\*64\)"),
        (dict(seed=-1), ValueError, r"seed must be None or an int in \[0, 2\*\*64\)"),
        (dict(seed=1.5), TypeError, r"seed must be None or an int in \[0, 2\*\*64\), got float"),
        (dict(seed="1"), TypeError, "seed must be None or an int"),
        (dict(duration=0.01), ValueError, r"duration must be at least one frame \(0.02 s"),
        (dict(duration=1e-6), ValueError, "duration must be at least one frame"),
        (
            dict(duration=10**400),
            ValueError,
            "duration must be a finite number .* int of 401 digits",
        ),
        (dict(duration=1e6), ValueError, r"duration must be <= 10800 s"),
        (dict(audio_prompt=np.zeros(3200), audio_prompt_sr=0), ValueError, "audio_prompt_sr must"),
        (dict(audio_prompt=np.zeros(3200), audio_prompt_sr="32k"), TypeError, "audio_prompt_sr"),
        (dict(audio_prompt="prompt.wav", audio_prompt_sr=32000), TypeError, "audio_prompt must"),
        (dict(audio_prompt=np.zeros((3, 1, 3200)), audio_prompt_sr=32000), ValueError, "3 items"),
        (dict(melody_sr=32000), ValueError, "melody_sr was given without melody="),
        (dict(top_k=True), TypeError, "top_k must be an int"),
    ],
)
def test_every_argument_is_checked_before_any_step(tiny, kwargs, exc, match):
    steps = []
    kwargs.setdefault("callback", lambda done, total: steps.append(done))
    with pytest.raises(exc, match=match):
        gen(tiny, **{"duration": 1, **kwargs})
    assert steps == []


def test_largest_seed_works(tiny):
    a = gen(tiny, duration=0.1, seed=2**64 - 1)
    b = gen(tiny, duration=0.1, seed=np.uint64(2**64 - 1))
    assert a.seed == 2**64 - 1 and np.array_equal(a.codes, b.codes)


@pytest.mark.parametrize(
    "seed, exc, match",
    [
        ([1], ValueError, "one seed per prompt \\(2\\), got 1"),
        ([1, 2, 3], ValueError, "one seed per prompt \\(2\\), got 3"),
        ([1, -2], ValueError, "seed must be None or an int in \\[0, 2\\*\\*64\\), got -2"),
        ([1, "2"], TypeError, "seed must be None or an int in \\[0, 2\\*\\*64\\), got str"),
        ([True, 2], TypeError, "seed must be None or an int in \\[0, 2\\*\\*64\\), got bool"),
        ([1, None], ValueError, "seed lists must hold ints"),
        (1.5, TypeError, "seed must be None or an int in \\[0, 2\\*\\*64\\), got float"),
        (2**64 - 1, ValueError, "gives item i the seed 18446744073709551615 \\+ i"),
    ],
)
def test_bad_per_item_seeds(tiny, seed, exc, match):
    with pytest.raises(exc, match=match):
        tiny.generate(["a", "b"], seed=seed, duration=0.5, progress=False)


# ----------------------------------------------------------------- the helpers themselves
def test_check_seed_and_seeds():
    from musicgen_nb.generation.checks import SEED_LIMIT, check_seed, seeds

    assert check_seed(None) is None and check_seed(np.uint64(5)) == 5
    assert seeds([3, 9], 2) == [3, 9] and seeds(40, 3) == [40, 41, 42]
    fresh = seeds(None, 2)
    assert 0 <= fresh[0] < 2**31 and fresh[1] == fresh[0] + 1
    with pytest.raises(ValueError, match=r"seed must be None or an int in \[0, 2\*\*64\), got -1"):
        check_seed(-1)
    with pytest.raises(ValueError, match="must stay below 2\\*\\*64 for 2 prompts"):
        seeds(SEED_LIMIT - 1, 2)


def test_check_prompts_and_hooks():
    import threading

    from musicgen_nb.generation.checks import check_hooks, check_prompts

    assert check_prompts("a") == ["a"] and check_prompts(("a", None)) == ["a", None]
    with pytest.raises(TypeError, match="negative_prompt must be strings or None, got int 3"):
        check_prompts(["a", 3], "negative_prompt")
    check_hooks(lambda done, total: None, threading.Event())
    with pytest.raises(TypeError, match=r"stop must be None or an object with is_set\(\)"):
        check_hooks(None, object())


def test_validate_normalises(tiny):
    from musicgen_nb.generation import validate

    opts = validate(
        tiny, duration=np.float32(1.5), guidance_scale=3, temperature=1, top_k=np.int64(5),
        top_p=0, do_sample=np.bool_(True), seed=[1, 2], cfg_coef_beta=None, extend_stride=2,
    )  # fmt: skip
    assert opts == dict(
        duration=1.5, guidance_scale=3.0, temperature=1.0, top_k=5, top_p=0.0, do_sample=True,
        cfg_coef_beta=None, extend_stride=2.0,
    )  # fmt: skip
    assert [type(opts[k]) for k in ("duration", "top_k", "do_sample")] == [float, int, bool]
