"""Tests for musicgen_nb.generation.loop: the decode loop over the delay pattern, progress and stopping."""

import math
import threading

import numpy as np
import pytest

import musicgen_nb as mg


def gen(s, prompt="jazz", **kw):
    kw.setdefault("progress", False)
    kw.setdefault("seed", 1)
    return s.generate(prompt, **kw)


@pytest.mark.parametrize("duration", [0.5, 1.234, 3.99])
def test_duration_is_exact(tiny, duration):
    g = gen(tiny, duration=duration)
    assert g.audio.shape[-1] == round(duration * 32000)
    assert g.codes.shape[-1] == math.ceil(duration * 50 - 1e-6)
    # every delay step is counted inside: frames + K - 1 steps
    assert g.timings["steps"] == g.codes.shape[-1] + 4 - 1


def test_greedy_is_deterministic_without_seed(tiny):
    a = tiny.generate("jazz", duration=0.5, do_sample=False, progress=False)
    b = tiny.generate("jazz", duration=0.5, do_sample=False, progress=False)
    np.testing.assert_array_equal(a.codes, b.codes)


def test_progress_bar_counts_steps(tiny, capsys):
    calls = []
    gen(tiny, duration=0.5, progress=True, callback=lambda done, total: calls.append((done, total)))
    err = capsys.readouterr().err
    assert "generating" in err and "/28" in err  # 25 frames + 3 delay steps
    assert calls == [(i, 28) for i in range(1, 29)]
    gen(tiny, duration=0.5, progress=False)
    assert capsys.readouterr().err == ""


def test_callback_and_keyboard_interrupt_keep_partial_result(tiny):
    seen = []

    def cb(done, total):
        seen.append((done, total))
        if done == 30:
            raise KeyboardInterrupt

    g = gen(tiny, duration=2, callback=cb)
    assert g.interrupted
    assert seen[-1] == (30, 103)
    # 30 steps done: frames complete in all 4 codebooks = 30 - 3
    assert g.codes.shape == (1, 4, 27)
    assert g.audio.shape[-1] == 27 * 640
    full = gen(tiny, duration=2)
    np.testing.assert_array_equal(g.codes, full.codes[..., :27])


def test_stop_event_stops_at_next_step(tiny):
    stop = threading.Event()

    def cb(done, total):
        if done == 10:
            stop.set()

    g = gen(tiny, duration=2, callback=cb, stop=stop)
    assert g.interrupted and g.codes.shape[-1] == 7


@pytest.fixture(scope="module")
def tiny_stereo(tiny):
    from musicgen_nb import checkpoints

    model = checkpoints.build_random(
        checkpoints.tiny_spec(stereo=True), init_scale=checkpoints.TINY_INIT_SCALE
    )
    return mg.MusicGen(model, tiny.processor, name="tiny-stereo")


def test_stereo_delay_matches_transformers(tiny_stereo):
    import torch

    s = tiny_stereo
    assert s.num_codebooks == 8 and s.audio_channels == 2
    g = s.generate(["jazz", "rock"], duration=1.0, seed=11, progress=False)
    assert g.codes.shape == (2, 8, 50) and g.audio.shape == (2, 2, 32000)
    assert g.timings["steps"] == 50 + 3  # codebook pairs share a delay: 3 delay steps
    # Each item has its own generator (seed 11 + i): compare it with transformers alone.
    for i, prompt in enumerate(["jazz", "rock"]):
        inputs = s.processor(text=[prompt], padding=True, return_tensors="pt")
        torch.manual_seed(11 + i)
        with torch.inference_mode():
            ref = s.model.generate(
                **inputs, do_sample=True, guidance_scale=3.0, top_k=250, max_new_tokens=53
            )
        np.testing.assert_allclose(g.audio[i : i + 1], ref.numpy(), atol=1e-5)


def test_one_frame_is_consistent(tiny):
    g = gen(tiny, duration=0.02)
    assert g.codes.shape == (1, 4, 1) and g.audio.shape == (1, 1, 640)


def test_extreme_temperature_tends_to_argmax(tiny):
    greedy = gen(tiny, duration=0.5, do_sample=False)
    cold = gen(tiny, duration=0.5, temperature=1e-45, trace=True)
    np.testing.assert_array_equal(cold.codes, greedy.codes)
    assert np.isfinite(cold.audio).all()
    assert np.isfinite(cold.trace["entropy"]).all() and (cold.trace["chosen_prob"] > 0.99).all()


def test_extreme_guidance_is_finite_and_deterministic(tiny):
    a = gen(tiny, duration=0.5, guidance_scale=1e308, seed=1)
    b = gen(tiny, duration=0.5, guidance_scale=1e308, seed=2)
    c = gen(tiny, duration=0.5, guidance_scale=1e308, do_sample=False)
    # so sharp that sampling is the argmax whatever the seed
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_array_equal(a.codes, c.codes)
    huge = gen(tiny, duration=0.5, guidance_scale=1e300, temperature=1e300, top_p=0.9)
    assert huge.codes.shape == (1, 4, 25) and np.isfinite(huge.audio).all()


def tune(notes, sr=32000, dur=0.5):
    from musicgen_nb import audio

    return audio.melody_tone(notes, dur, sr)


def test_extreme_double_guidance_on_melody(tiny_melody):
    m = tune(["C4", "E4"])
    for beta in (0.0, 0.5, 1e308):
        g = tiny_melody.generate(
            "x", melody=m, melody_sr=32000, duration=0.5, seed=0, progress=False,
            guidance_scale=1e200, cfg_coef_beta=beta,
        )  # fmt: skip
        assert ((g.codes >= 0) & (g.codes < 2048)).all()


def test_run_window_directly(tiny):
    import torch

    from musicgen_nb.conditioning import conditioning
    from musicgen_nb.engine import Sampler
    from musicgen_nb.generation.loop import Progress, run_window

    cond = conditioning(tiny, ["jazz"], negative=None, guidance_scale=3.0)
    seen, steps = [], []
    prefix = torch.as_tensor(tiny.encode(mg.audio.sine(440, 0.2, 32000), 32000), device=tiny.device)
    codes, n_steps, stopped, decoder = run_window(
        tiny, cond, batch=1, prefix=prefix, frames=20, sampler=Sampler(),
        generator=[torch.Generator(device=tiny.device).manual_seed(0)],
        progress=Progress(13, False, lambda done, total: steps.append(done)), trace=None,
        capture=None, stop=None, on_frames=lambda c: seen.append(c.shape[-1]),
    )  # fmt: skip
    assert codes.shape == (1, 4, 20) and not stopped and n_steps == 20 + 3 - 10
    assert torch.equal(codes[..., :10], prefix) and steps == list(range(1, 14))
    assert seen == list(range(10, 21))  # the prefix first, then each completed frame


def test_progress_counts_and_calls_back():
    from musicgen_nb.generation.loop import Progress

    calls = []
    bar = Progress(3, False, lambda done, total: calls.append((done, total)))
    for _ in range(3):
        bar.update()
    bar.close()
    assert calls == [(1, 3), (2, 3), (3, 3)] and bar.done == 3 and bar.bar is None


def test_guidance_and_sampling_run_in_fp32_on_a_bf16_model(device):
    """The bf16 decoder's logits are upcast before guidance and sampling: the probabilities
    run_window traces match guidance, warping and softmax of the fp32 upcast to fp32 rounding,
    while the same arithmetic in bf16 is measurably off; the first tokens are the hand-sampled."""
    import torch
    from _devices import generators

    import musicgen_nb as mg
    from musicgen_nb.conditioning import conditioning
    from musicgen_nb.engine import Decoder, Sampler, StepRecord, guide, sample, warp
    from musicgen_nb.generation.loop import Progress, run_window

    s = mg.load("tiny", precision="bf16", device=device)
    sampler = Sampler(guidance_scale=3.0, temperature=0.7, top_k=50)
    tight = dict(rtol=1e-5, atol=1e-7)

    def top5(logits):  # our guidance, warping and softmax, in fp32
        return warp(guide(logits, 1, sampler)[0], sampler).softmax(-1).topk(5, -1).values

    def top5_in_bf16(logits):  # the same arithmetic kept in bf16 (guide() itself upcasts)
        if logits.shape[0] == 2:
            cond, uncond = logits.split(1)
            logits = uncond + (cond - uncond) * sampler.guidance_scale
        logits = logits / sampler.temperature
        kth = logits.topk(sampler.top_k, -1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
        return logits.softmax(-1).float().topk(5, -1).values

    for gs in (3.0, 1.0):  # two branches, and one (no guidance)
        sampler.guidance_scale = gs
        cond = conditioning(s, ["jazz"], negative=None, guidance_scale=gs)
        start = torch.full((cond.branches, 4, 1), s.special_id, device=s.device)
        logits = Decoder(s.model, cond, max_len=8).step(start)
        assert logits.dtype == torch.bfloat16
        guided = guide(logits.float(), 1, sampler)[0]
        assert guided.dtype == warp(guided, sampler).dtype == torch.float32
        want, _ = sample(warp(guided, sampler), sampler, generators(s, [5]))
        trace = StepRecord()
        codes, *_ = run_window(
            s, cond, batch=1, prefix=None, frames=4, sampler=sampler,
            generator=generators(s, [5]), progress=Progress(7, False, None),
            trace=trace, capture=None, stop=None,
        )  # fmt: skip
        got = trace.top_probs[0]
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, top5(logits.float()), **tight)
        with pytest.raises(AssertionError):  # what bf16 guidance and sampling would give
            torch.testing.assert_close(got, top5_in_bf16(logits), **tight)
        assert codes[0, 0, 0] == want[0, 0]
