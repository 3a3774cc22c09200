"""Tests for musicgen_nb.generation.windows: long-form windows, audio prompts, melody chroma and the run."""

import numpy as np
from _capped import CAP_GB, run_capped
from _devices import live_caches, live_decoders, release_static_pools

import musicgen_nb as mg


def gen(s, prompt="jazz", **kw):
    kw.setdefault("progress", False)
    kw.setdefault("seed", 1)
    return s.generate(prompt, **kw)


def tune(notes, sr=32000, dur=0.5):
    from musicgen_nb import audio

    return audio.melody_tone(notes, dur, sr)


def test_continuation_prefix_equals_encoded_prompt(tiny):
    rng = np.random.default_rng(0)
    prompt = (rng.standard_normal(16000) * 0.2).astype(np.float32)  # 0.5 s at 32 kHz
    g = tiny.generate(
        "jazz", audio_prompt=prompt, audio_prompt_sr=32000, duration=1.0, seed=0, progress=False
    )
    enc = tiny.encode(prompt, 32000)
    assert g.prompt_frames == enc.shape[-1] == 25
    np.testing.assert_array_equal(g.codes[..., : g.prompt_frames], enc)
    assert g.codes.shape[-1] == 25 + 50
    assert g.audio.shape[-1] == 25 * 640 + 32000


def test_continuation_other_rate_and_stereo_prompt(tiny):
    prompt = (
        np.random.default_rng(1).standard_normal((2, 8000)).astype(np.float32) * 0.1
    )  # stereo, 16 kHz
    g = tiny.generate(
        "rock", audio_prompt=prompt, audio_prompt_sr=16000, duration=0.5, seed=0, progress=False
    )
    assert g.prompt_frames == 25 and g.codes.shape[-1] == 50


def test_long_form_windows_overlap_and_exact_length(tiny, capsys):
    g = tiny.generate("ambient", duration=10.0, seed=0, extend_stride=2.4, progress=True)
    assert g.audio.shape[-1] == 320000 and g.codes.shape[-1] == 500
    assert len(g.windows) >= 3
    window = tiny.max_frames
    pairs = zip(g.windows, g.windows[1:], g.window_codes, g.window_codes[1:], strict=False)
    for (_, e0), (s1, e1), prev, cur in pairs:
        assert e1 - s1 <= window and s1 < e0
        overlap = e0 - s1
        np.testing.assert_array_equal(cur[..., :overlap], prev[..., -overlap:])
        np.testing.assert_array_equal(g.codes[..., s1:e1], cur)
    steps = g.timings["steps"]
    assert steps == 500 + 3 * len(g.windows)  # new frames + 3 delay steps per window
    assert f"/{steps}" in capsys.readouterr().err  # one bar over all windows


def test_default_stride_is_sixty_percent_of_window(tiny):
    g = gen(tiny, duration=8.0)  # 400 frames, 200-frame window, stride 0.6 * 4 s = 120 frames
    assert g.windows == [(0, 200), (120, 320), (200, 400)]
    assert g.codes.shape[-1] == 400 and g.params["windows"] == 3


def test_melody_changes_the_codes(tiny_melody):
    a = tune(["C4", "E4", "G4", "C5"])
    b = tune(["F#4", "A#4", "C#5", "D#4"])
    ga = tiny_melody.generate(
        "piano", melody=a, melody_sr=32000, duration=2, seed=0, progress=False
    )
    gb = tiny_melody.generate(
        "piano", melody=b, melody_sr=32000, duration=2, seed=0, progress=False
    )
    assert (ga.codes != gb.codes).mean() > 0.2
    plain = tiny_melody.generate("piano", duration=2, seed=0, progress=False)
    assert (ga.codes != plain.codes).mean() > 0.2


def test_melody_stereo_other_rate_short_and_long(tiny_melody):
    stereo = np.stack([tune(["C4", "G4"], sr=44100)] * 2)
    g = tiny_melody.generate(
        "piano", melody=stereo, melody_sr=44100, duration=2, seed=0, progress=False
    )
    assert g.audio.shape == (1, 1, 64000)
    long = tune(["C4", "E4", "G4"] * 6, dur=0.5)  # 9 s melody, 2 s output
    g2 = tiny_melody.generate(
        "piano", melody=long, melody_sr=32000, duration=2, seed=0, progress=False
    )
    assert g2.codes.shape[-1] == 100


def test_double_cfg_on_melody(tiny_melody):
    m = tune(["C4", "E4", "G4"])
    base = tiny_melody.generate(
        "piano", melody=m, melody_sr=32000, duration=1, seed=0, progress=False
    )
    beta = tiny_melody.generate(
        "piano", melody=m, melody_sr=32000, duration=1, seed=0, progress=False, cfg_coef_beta=5.0
    )
    assert (base.codes != beta.codes).any()
    assert beta.params["cfg_coef_beta"] == 5.0


def test_oom_message_names_smaller_model_and_dtype(tiny):
    from musicgen_nb.engine import oom_message

    big = mg.MusicGen(tiny.model, tiny.processor, name="facebook/musicgen-large", precision="fp32")
    msg = oom_message(big, batch=4, duration=30)
    assert (
        "mg.load('medium')" in msg
        and "precision='bf16'" in msg  # half precision on the CPU; fp16 on a GPU
        and "fewer prompts" in msg
        and "30 s" in msg
    )


def test_an_hour_is_accepted_and_planned(tiny):
    from musicgen_nb.generation import make_request
    from musicgen_nb.generation.windows import plan as make_plan

    req = make_request(
        tiny, "x", duration=3600.0, guidance_scale=3.0, temperature=1.0, top_k=250, top_p=0.0,
        do_sample=True, seed=1, melody=None, melody_sr=None, audio_prompt=None,
        audio_prompt_sr=None, negative_prompt=None, cfg_coef_beta=None, extend_stride=None,
        progress=False, trace=False, attentions=False, attention_layers=None,
        attention_heads=None, attention_budget_mb=512.0, callback=None, stop=None,
    )  # fmt: skip
    plan = make_plan(tiny, req)
    assert plan.total_frames == 180_000 and plan.windows[-1][1] == 180_000
    starts = [a for a, _ in plan.windows]
    assert starts == sorted(starts) and all(b - a <= tiny.max_frames for a, b in plan.windows)


def test_melody_with_a_wrong_rate_computes_only_the_frames_needed():
    # 1 s declared as 8 Hz is a 67-minute melody; only ~2 s of chroma is read.
    proc = run_capped(
        "s = mg.load('tiny-melody')\n"
        "g = s.generate('x', duration=1, melody=mg.audio.sine(440, 1.0, 32000), melody_sr=8, "
        "seed=0, progress=False)\n"
        "print(g.melody_chroma.shape)\n",
        gb=CAP_GB,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[-2] == "(1, 235, 12)"  # chroma_length frames, not 31,250


def test_chroma_frames_follow_the_windows(tiny_melody):
    m = tune(["C4", "E4", "G4"] * 40, dur=0.5)  # 60 s of melody
    g = tiny_melody.generate("x", melody=m, melody_sr=32000, duration=6, seed=0, progress=False)
    # last window starts at frame 100 -> chroma frame round(100 / 50 * 7.8125) = 16
    assert g.windows[-1][0] == 100 and g.melody_chroma.shape[1] == 16 + 235


def test_per_item_seeds_hold_across_long_form_windows(tiny):
    kw = dict(duration=8.0, extend_stride=3.0, progress=False)
    batched = tiny.generate(["jazz", "rock"], seed=[3, 4], **kw)
    alone = tiny.generate("rock", seed=4, **kw)
    assert batched.params["windows"] > 1
    np.testing.assert_array_equal(batched.codes[1], alone.codes[0])


def test_spans_and_plan(tiny):
    from musicgen_nb.generation import make_request
    from musicgen_nb.generation.windows import plan, spans

    assert spans(tiny, 150, None) == [(0, 150)]
    assert spans(tiny, 300, 2.0) == [(0, 200), (100, 300)]
    p = plan(tiny, make_request(tiny, "x", duration=8.0))
    assert p.windows == [(0, 200), (120, 320), (200, 400)]
    assert p.steps == 203 + 123 + 83 and p.prompt_frames == 0 and p.capture is None
    prompt = mg.audio.sine(440, 0.5, 32000)
    req = make_request(tiny, "x", duration=1.0, audio_prompt=prompt, audio_prompt_sr=32000)
    assert (
        plan(tiny, req).prompt_frames == 25 and plan(tiny, req, known_frames=24).total_frames == 74
    )


def test_run_windows_hands_frames_to_on_frames(tiny):
    from musicgen_nb.generation import make_request
    from musicgen_nb.generation.windows import inputs, plan, run_windows

    calls = []
    req = make_request(
        tiny, "x", duration=6.0, seed=0, progress=False,
        on_frames=lambda start, codes: calls.append((start, codes.shape[-1])),
    )  # fmt: skip
    got, p = inputs(tiny, req, plan(tiny, req))
    run = run_windows(tiny, req, p, got)
    assert [w for w, _ in p.windows] == sorted({start for start, _ in calls})
    assert calls[0] == (0, 0) and calls[-1] == (p.windows[-1][0], 200)
    assert run.codes.shape[-1] == 300 and not run.interrupted


def test_one_key_value_cache_is_alive_at_a_time(tiny):
    """8 s on tiny is 3 windows; a census during every window finds one decoder's k and v.

    (Before: window 0's decoder was kept for attention that was not asked for, and the
    previous decoder lived while the next was built: 3 caches, 6 tensors, in window 2.)
    """
    release_static_pools()  # other tests' static-step pools outlive their calls by design
    counts = []

    def census(done, total):
        if done in (100, 250, 380):  # inside windows 0, 1 and 2 (203 + 123 + 83 steps)
            counts.append((live_caches(tiny), live_decoders()))

    g = gen(tiny, duration=8.0, seed=0, callback=census)
    assert g.windows == [(0, 200), (120, 320), (200, 400)]
    assert counts == [(2, 1)] * 3
    assert live_caches(tiny) == 0 and live_decoders() == 0  # and none after the call


def test_capture_keeps_no_decoder_past_its_window(tiny):
    counts = []

    def census(done, total):
        if done == 300:  # window 1: window 0's attention is collected, its decoder gone
            counts.append(live_decoders())

    g = gen(tiny, duration=6.0, seed=0, attentions=True, callback=census)
    assert counts == [1] and g.attentions.positions == 203
    assert live_decoders() == 0


def test_out_of_memory_frees_the_static_steps_pool_and_fused_copies(tiny):
    """The static step keeps a cache, graphs and fused weights per model: an OOM drops them."""
    import pytest
    import torch

    from musicgen_nb.engine.graphs import pool_of
    from musicgen_nb.engine.memory import OutOfMemory
    from musicgen_nb.engine.static_weights import has_fused

    def hook(done, total):
        if done == 5:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    lm = tiny.model.decoder
    tiny.step = "static"
    try:
        tiny.generate("jazz", duration=0.3, seed=0, progress=False)
        assert pool_of(lm) is not None and has_fused(lm)  # kept across calls
        with pytest.raises(OutOfMemory):
            tiny.generate("jazz", duration=0.3, seed=0, progress=False, callback=hook)
        assert pool_of(lm) is None and not has_fused(lm)
    finally:
        tiny.step = "auto"
