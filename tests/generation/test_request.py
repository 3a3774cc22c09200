"""Tests for musicgen_nb.generation.request: input sizes, prompts and memory, checked up front."""

import numpy as np
import pytest
from _capped import expect_error


def test_prompt_longer_than_window_is_refused(tiny):
    long = np.zeros(int(32000 * 4.5), dtype=np.float32)
    with pytest.raises(ValueError, match="window is 4 s"):
        tiny.generate("x", audio_prompt=long, audio_prompt_sr=32000, duration=1, progress=False)


def test_prompt_with_a_wrong_rate_is_refused_from_samples_over_sr():
    # 1 s at 32 kHz declared as 7 Hz is 4571 s: resampling it would need ~18 GB.
    out = expect_error(
        "s = mg.load('tiny')\n"
        "s.generate('x', duration=0.5, audio_prompt=mg.audio.sine(440, 1.0, 32000), "
        "audio_prompt_sr=7, progress=False)",
        "ValueError",
        r"audio_prompt is 4571\.43 s \(32000 samples at audio_prompt_sr=7 Hz\).*window is 4 s",
    )
    assert "check audio_prompt_sr" in out


def test_long_text_and_huge_batch_are_refused_before_work():
    expect_error(
        "mg.load('tiny').generate('la ' * 400_000, duration=1, progress=False)",
        "ValueError",
        r"prompt 0 is 1,200,000 characters long.*at most 512 tokens",
    )
    expect_error(
        "mg.load('tiny').generate(['x'] * 2000, duration=600, progress=False)",
        "ValueError",
        r"duration=600 s for 2000 prompt\(s\) needs about .* GB .* available",
    )


# ----------------------------------------------------------------- make_request and Request
def test_make_request_checks_and_normalises(tiny):
    from musicgen_nb.generation import Request, make_request

    hook = []
    req = make_request(
        tiny, ["a", None], duration=1, seed=7, negative_prompt="drums", on_frames=hook.append
    )
    assert isinstance(req, Request) and req.batch == 2 and req.seeds == [7, 8]
    assert req.negative == ["drums", "drums"] and req.new_frames == 50
    assert req.on_frames == hook.append and req.progress is True and req.melody is None
    with pytest.raises(ValueError, match="duration must be > 0"):
        make_request(tiny, "a", duration=0)


def test_generate_and_make_request_take_the_same_options():
    import inspect

    from musicgen_nb.generation import generate, make_request

    gen_params = dict(inspect.signature(generate).parameters)
    req_params = dict(inspect.signature(make_request).parameters)
    assert req_params.pop("on_frames").default is None
    assert "on_frames" not in gen_params
    assert {k: p.default for k, p in gen_params.items()} == {
        k: p.default for k, p in req_params.items()
    }


def test_audio_helpers(tiny):
    from musicgen_nb.generation.request import (
        audio_input,
        check_negative,
        check_prompt_length,
        prompt_frames,
    )

    arr, sr = audio_input(np.zeros((2, 1600)), 16000.0, "melody", 3)
    assert arr.shape == (1, 2, 1600) and sr == 16000 and isinstance(sr, int)
    assert audio_input(None, None, "melody", 1) == (None, None)
    assert prompt_frames(tiny, 8000, 16000) == 25 and prompt_frames(tiny, 641, 32000) == 2
    check_prompt_length(tiny, 32000, 32000)
    with pytest.raises(ValueError, match="window is 4 s"):
        check_prompt_length(tiny, 4 * 32000, 32000)
    assert check_negative(None, 2, 3.0) is None and check_negative(["a", "b"], 2, 3.0) == ["a", "b"]


def test_text_length_limit(tiny):
    from musicgen_nb.conditioning import MAX_TEXT_TOKENS
    from musicgen_nb.generation.request import check_text_lengths

    check_text_lengths(tiny, ["jazz", None])
    with pytest.raises(ValueError, match=f"prompt 1 is .* tokens long.*at most {MAX_TEXT_TOKENS}"):
        check_text_lengths(tiny, ["ok", "la " * 600])


def test_a_call_that_cannot_fit_is_refused_naming_what_fits(tiny):
    """The estimate (cache + activations + codec, and the audio on the CPU) against a faked
    free figure: refused before any work, and the duration and batch it names do fit."""
    import re

    import pytest
    from _devices import live_decoders

    from musicgen_nb.engine.memory import call_bytes
    from musicgen_nb.engine.precision import fake_device
    from musicgen_nb.generation.request import check_memory

    free = call_bytes(tiny, 1, 400, branches=2)["total"] + 3 * 400 * tiny.hop_length * 4
    with fake_device("cpu", free_bytes=free):  # one prompt of 8 s fits, two do not
        check_memory(tiny, 2, 100, 2.0)
        with pytest.raises(ValueError, match="the estimate fits at most") as info:
            tiny.generate(["a", "b"], duration=8.0, seed=0, progress=False)
        msg = str(info.value)
        seconds = float(re.search(r"at most ([\d.]+) s for 2 prompt", msg).group(1))
        prompts = int(re.search(r"at most (\d+) prompt\(s\) of 8 s", msg).group(1))
        assert 2.0 <= seconds < 8.0 and prompts == 1
        assert live_decoders() == 0  # refused before any work
        check_memory(tiny, 2, round(seconds * tiny.frame_rate), seconds)  # what it names fits
        check_memory(tiny, 1, 400, 8.0)
    with fake_device("cuda", free_bytes=1):  # a faked GPU elsewhere changes nothing on the CPU
        check_memory(tiny, 2, 400, 8.0)


def test_the_memory_check_counts_the_guidance_branches_the_call_runs():
    """guidance_scale > 1 runs 2 rows per prompt, a cfg_coef_beta 3, no guidance 1."""
    import pytest

    import musicgen_nb as mg
    from musicgen_nb.engine.memory import call_bytes
    from musicgen_nb.engine.precision import fake_device
    from musicgen_nb.generation.request import guidance_branches, make_request

    tiny = mg.load("tiny-melody")  # cfg_coef_beta needs a melody checkpoint
    audio = 3 * 100 * tiny.hop_length * 4
    free = call_bytes(tiny, 1, 100, branches=2)["total"] + audio
    assert call_bytes(tiny, 1, 100, branches=3)["total"] + audio > free
    with fake_device("cpu", free_bytes=free):
        make_request(tiny, "jazz", duration=2.0)  # two branches fit
        make_request(tiny, "jazz", duration=2.0, guidance_scale=1.0)
        with pytest.raises(ValueError, match="the estimate fits"):
            make_request(tiny, "jazz", duration=2.0, cfg_coef_beta=1.0)
    assert [guidance_branches(1.0), guidance_branches(3.0), guidance_branches(3.0, 0.5)] == [
        1,
        2,
        3,
    ]


def test_the_duration_a_refusal_names_leaves_out_the_audio_prompt(tiny):
    """With a 2 s audio prompt, the duration named is new audio: it fits beside the prompt."""
    import re

    import pytest

    from musicgen_nb.engine.memory import call_bytes
    from musicgen_nb.engine.precision import fake_device
    from musicgen_nb.generation.request import make_request

    prompt = np.zeros(2 * tiny.sample_rate, dtype=np.float32)
    free = call_bytes(tiny, 1, 300, branches=2)["total"] + 3 * 300 * tiny.hop_length * 4
    with fake_device("cpu", free_bytes=free):  # 6 s in all: the 2 s prompt and 4 s more
        with pytest.raises(ValueError, match="the estimate fits") as info:
            make_request(
                tiny, "jazz", duration=8.0, audio_prompt=prompt, audio_prompt_sr=tiny.sample_rate
            )
        seconds = float(re.search(r"at most ([\d.]+) s for 1 prompt", str(info.value)).group(1))
        assert 3.5 <= seconds <= 4.0
        make_request(
            tiny, "jazz", duration=seconds, audio_prompt=prompt, audio_prompt_sr=tiny.sample_rate
        )


def test_the_memory_check_counts_an_attention_capture(tiny):
    """attentions=True keeps the capture on the device, twice while it is concatenated."""
    import pytest

    from musicgen_nb.attention import estimate_mb
    from musicgen_nb.engine.memory import call_bytes
    from musicgen_nb.engine.precision import fake_device
    from musicgen_nb.generation.request import make_request

    frames = 200
    capture = 2 * estimate_mb(tiny, batch=1, frames=frames, layers=2)["total_mb"] * 1e6
    free = call_bytes(tiny, 1, frames)["total"] + 3 * frames * tiny.hop_length * 4 + capture / 2
    with fake_device("cpu", free_bytes=int(free)):
        make_request(tiny, "jazz", duration=4.0)  # without the capture it fits
        with pytest.raises(ValueError, match="the estimate fits"):
            make_request(tiny, "jazz", duration=4.0, attentions=True)
