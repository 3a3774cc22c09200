"""Streaming: chunks cover the clip once, match generate() and the one-pass decode,
and stop / KeyboardInterrupt keep what was heard."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from musicgen_nb.streaming import (
    Chunk,
    ChunkDecoder,
    Stream,
    should_start,
    simulate,
    snr_db,
)


def _joined(chunks):
    return np.concatenate([c.audio for c in chunks], axis=-1)


def _check_cover(chunks, sr):
    """Starts are contiguous from 0, only the last is final, no chunk repeats audio."""
    assert chunks and chunks[-1].final and not any(c.final for c in chunks[:-1])
    pos = 0
    for i, c in enumerate(chunks):
        assert c.index == i
        assert round(c.start * sr) == pos, (i, c.start, pos)
        assert c.audio.dtype == np.float32 and c.audio.ndim == 3
        pos += c.audio.shape[-1]
    return pos


def _stream_vs_generate(s, prompts, **kw):
    st = s.stream(prompts, **kw)
    chunks = list(st)
    kw.pop("chunk", None)
    g = s.generate(prompts, progress=False, **kw)
    return st, chunks, g


@pytest.mark.parametrize("chunk", [0.5, 1.0, 0.02])
def test_chunks_cover_the_clip_once_and_match_generate(tiny, chunk):
    st, chunks, g = _stream_vs_generate(
        tiny, ["lo-fi beat", None], duration=2.3, seed=3, chunk=chunk
    )
    n = _check_cover(chunks, tiny.sample_rate)
    assert n == g.audio.shape[-1] == round(2.3 * 32000)
    np.testing.assert_array_equal(st.generation.codes, g.codes)  # streaming samples the same
    np.testing.assert_array_equal(st.generation.audio, g.audio)  # one-pass decode
    assert snr_db(g.audio, _joined(chunks)) >= 30
    assert [c.start for c in st.chunks] == [c.start for c in chunks]  # the kept timeline
    frames = round(chunk * tiny.frame_rate) or 1
    for c in chunks[:-1]:  # every chunk but the tail holds at least `chunk` seconds
        assert c.audio.shape[-1] >= frames * tiny.hop_length


def test_chunk_arrivals_and_estimates(tiny):
    st = tiny.stream("jazz", duration=3.0, seed=1, chunk=0.5)
    chunks = list(st)
    arrived = [c.arrived for c in chunks]
    assert arrived == sorted(arrived) and arrived[0] > 0
    assert all(c.steps_per_s > 0 for c in chunks[1:])
    assert chunks[-1].remaining == 0 and all(np.isfinite(c.remaining) for c in chunks[1:])
    assert all(c.total == pytest.approx(3.0) for c in chunks)
    # The first chunk comes long before the clip is done.
    assert arrived[0] < arrived[-1]


def test_melody_continuation_and_long_form(tiny, tiny_melody):
    tune = np.sin(2 * np.pi * 330 * np.arange(32000) / 32000).astype(np.float32)
    st, chunks, g = _stream_vs_generate(
        tiny_melody, "piano", duration=1.5, seed=2, melody=tune, melody_sr=32000, chunk=0.5
    )
    _check_cover(chunks, 32000)
    np.testing.assert_array_equal(st.generation.codes, g.codes)
    assert snr_db(g.audio, _joined(chunks)) >= 30

    prompt = 0.3 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000).astype(np.float32)
    st, chunks, g = _stream_vs_generate(
        tiny, "jazz", duration=1.0, seed=5, audio_prompt=prompt, audio_prompt_sr=16000, chunk=0.5
    )
    assert g.prompt_frames == 50 and st.prompt_frames == 50
    assert _check_cover(chunks, 32000) == g.audio.shape[-1] == 2 * 32000
    assert chunks[0].start == 0  # the prompt plays first
    np.testing.assert_array_equal(st.generation.codes, g.codes)
    assert snr_db(g.audio, _joined(chunks)) >= 30

    # Long-form: 7 s with a 4 s window, so the chunks cross windows.
    st, chunks, g = _stream_vs_generate(
        tiny, "ambient", duration=7.0, seed=0, extend_stride=2.4, chunk=1.0
    )
    assert len(g.windows) >= 3
    assert _check_cover(chunks, 32000) == 7 * 32000
    np.testing.assert_array_equal(st.generation.codes, g.codes)
    assert snr_db(g.audio, _joined(chunks)) >= 30


def test_stop_keeps_what_was_heard(tiny):
    st = tiny.stream("techno", duration=3.5, seed=9, chunk=0.5)
    heard = []
    for c in st:
        heard.append(c)
        if len(heard) == 2:
            st.stop()
    g = st.generation
    assert g.interrupted and st.interrupted and heard[-1].final
    n = _check_cover(heard, 32000)
    assert n == g.audio.shape[-1] < 3.5 * 32000
    assert snr_db(g.audio, _joined(heard)) >= 30  # what was heard is what is kept
    full = tiny.generate("techno", duration=3.5, seed=9, progress=False)
    np.testing.assert_array_equal(g.codes, full.codes[..., : g.codes.shape[-1]])


def test_keyboard_interrupt_keeps_what_was_heard(tiny):
    # Each step takes at least 5 ms, so the stream is still running when the interrupt comes
    # 0.2 s after the first chunk (~190 steps, >= 0.95 s, remain). On a fast, idle machine tiny
    # could otherwise finish first, and the interrupt then killed the test process itself.
    st = tiny.stream(
        "drums", duration=4.0, seed=4, chunk=0.25, callback=lambda done, total: time.sleep(0.005)
    )
    heard = []
    timer = None
    for c in st:  # the loop body is tiny: the interrupt lands while the stream waits
        heard.append(c)
        if timer is None:
            timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
            timer.start()
    timer.join()
    g = st.generation
    assert g.interrupted and heard[-1].final
    assert _check_cover(heard, 32000) == g.audio.shape[-1] < 4.0 * 32000
    assert snr_db(g.audio, _joined(heard)) >= 30


def test_close_stops_a_stream_left_half_way(tiny):
    st = tiny.stream("x", duration=4.0, seed=1, chunk=0.25)
    first = next(iter(st))
    st.close()
    assert first.index == 0 and st.generation is not None and st.generation.interrupted
    assert st.wait() is st.generation


@pytest.mark.parametrize(
    "kw, exc, text",
    [
        (dict(chunk=0), ValueError, "chunk must be a number of seconds > 0, got 0"),
        (dict(chunk="1"), TypeError, "chunk must be a number of seconds"),
        (dict(chunk=True), TypeError, "chunk must be"),
        (dict(duration=-1), ValueError, "duration must be > 0"),
        (dict(top_k=-1), ValueError, "top_k must be >= 0"),
        (dict(durration=3), TypeError, "unexpected keyword arguments ['durration']"),
        (dict(_on_frames=print), TypeError, "_on_frames is private"),
    ],
)
def test_bad_arguments_fail_at_once(tiny, kw, exc, text):
    with pytest.raises(exc) as info:
        tiny.stream("x", **kw)
    assert text in str(info.value)


_PROMPT_1S = np.sin(np.linspace(0, 880 * np.pi, 32000)).astype(np.float32)


@pytest.mark.parametrize(
    "kw",
    [
        dict(audio_prompt=_PROMPT_1S, audio_prompt_sr=7),  # 4571 s of prompt
        dict(audio_prompt=_PROMPT_1S),  # no audio_prompt_sr
        dict(melody=_PROMPT_1S, melody_sr=32000),  # tiny is not a melody checkpoint
        dict(duration=-1),
        dict(duration=1e6),
        dict(progress="no"),
        dict(trace="yes"),
        dict(callback=5),
        dict(stop="yes"),
        dict(seed=2**64),
        dict(seed=[1, 2]),  # two seeds for one prompt
        dict(negative_prompt="calm", guidance_scale=1.0),
    ],
    ids=lambda kw: ",".join(kw),
)
def test_every_bad_argument_raises_at_the_call_like_generate(tiny, kw):
    """stream() runs generate()'s own checks: the same error, before anything is iterated."""
    with pytest.raises((TypeError, ValueError)) as from_generate:
        tiny.generate("x", **kw)
    with pytest.raises(type(from_generate.value)) as from_stream:
        tiny.stream("x", **kw)  # not iterated: the error comes from the call itself
    assert str(from_stream.value) == str(from_generate.value)


def test_wait_before_anything_consumes_it(tiny):
    st = tiny.stream("x", duration=1.0)
    with pytest.raises(RuntimeError, match="nothing is consuming this stream"):
        st.wait()
    assert "not started" in repr(st)


# ------------------------------------------------------------------- chunk decoding
@pytest.mark.parametrize("method", ["exact", "context"])
@pytest.mark.parametrize("step", [1, 7, 50])
def test_chunk_decoder_matches_the_one_pass_decode(tiny, method, step):
    codes = np.random.default_rng(step).integers(0, 2048, (2, 4, 131))
    ref = tiny.decode(codes)
    d = ChunkDecoder(tiny, method=method)
    parts = []
    for i in range(0, codes.shape[-1], step):
        d.push(codes[..., i : i + step])
        parts.append(d.pull())
        assert d.emitted == d.ready() >= min(d.frames, i + step) - d.hold
    parts.append(d.pull(final=True))
    out = np.concatenate(parts, axis=-1)
    assert out.shape == ref.shape
    assert snr_db(ref, out) >= 30
    if method == "exact":
        assert snr_db(ref, out) >= 100  # the same arithmetic, up to float rounding
        assert d.hold <= 8  # frames held back: at most 0.16 s
    # What the overlap costs: frames decoded twice, per frame of audio.
    assert 0 < d.overlap_frames / codes.shape[-1] < (60 if method == "context" else 15)


def test_chunk_decoder_needs_its_layers(tiny):
    with pytest.raises(ValueError, match="method must be 'auto', 'exact' or 'context'"):
        ChunkDecoder(tiny, method="fast")
    assert ChunkDecoder(tiny).method == "exact"


def test_context_decoding_alone_is_not_exact(tiny):
    """Without carried state and context, a chunk's edges differ from the full decode:
    the reason for ChunkDecoder."""
    codes = np.random.default_rng(0).integers(0, 2048, (1, 4, 100))
    ref = tiny.decode(codes)
    naive = np.concatenate([tiny.decode(codes[..., i : i + 25]) for i in range(0, 100, 25)], -1)
    assert snr_db(ref, naive) < snr_db(ref, ref + 1e-6)
    assert not np.allclose(ref, naive, atol=1e-6)


@pytest.mark.slow
def test_chunk_decoder_on_the_small_architecture():
    import musicgen_nb as mg

    s = mg.load("small", random_weights=True, precision="int8")
    codes = np.random.default_rng(1).integers(0, 2048, (1, 4, 160))
    ref = s.decode(codes)
    d = ChunkDecoder(s)
    parts = []
    for i in range(0, 160, 50):
        d.push(codes[..., i : i + 50])
        parts.append(d.pull())
    parts.append(d.pull(final=True))
    assert snr_db(ref, np.concatenate(parts, -1)) >= 30


def test_snr_db():
    x = np.sin(np.arange(500) / 7)
    assert snr_db(x, x) == np.inf
    assert snr_db(x, 0.9 * x) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="one shape"):
        snr_db(x, x[:-1])


# ------------------------------------------------------------------- start rule
def _chunks(arrivals, *, size=1.0, total=None):
    total = total or size * len(arrivals)
    rate = size / (arrivals[1] - arrivals[0])  # audio seconds per second
    out = []
    for i, a in enumerate(arrivals):
        final = i == len(arrivals) - 1
        out.append(
            Chunk(
                np.zeros((1, 1, int(size * 100)), np.float32),
                i * size,
                final,
                i,
                100,
                arrived=a,
                remaining=0.0 if final else (total - (i + 1) * size) / rate,
                total=total,
            )  # fmt: skip
        )
    return out


def test_should_start():
    kw = dict(total=10.0, piece=1.0)
    assert not should_start(pos=0, received=0.0, remaining=5, **kw)
    assert not should_start(pos=0, received=1.0, remaining=float("inf"), **kw)
    assert should_start(pos=0, received=1.0, remaining=5, final=True, **kw)
    # 1 s made per 1.2 s: the last chunk (at 9 s) lands after the remaining time.
    assert not should_start(pos=0, received=2.0, remaining=9.6, **kw)
    assert should_start(pos=0, received=3.0, remaining=7.0, **kw)
    # Resuming after a stall at pos: the same rule, measured from pos.
    assert not should_start(pos=3.0, received=3.5, remaining=1.0, **kw)
    assert should_start(pos=3.0, received=5.0, remaining=1.0, **kw)


def test_simulate_slower_than_real_time_never_stalls_with_the_rule():
    cs = _chunks([1.2 * (i + 1) for i in range(10)])  # 10 s made in 12 s
    r = simulate(cs, piece=1.0)
    assert r["first_audio"] == pytest.approx(1.2)
    assert r["gapless_start"] == pytest.approx(max(c.arrived - c.start for c in cs))
    assert r["stalls"] == 0
    assert r["gapless_start"] <= r["start"] <= r["gapless_start"] * 1.6
    # Starting at once (a rule with no margin) would stall.
    eager = simulate(cs, piece=0.0, margin=0.0)
    assert eager["stalls"] > 0 and eager["start"] < r["start"]


def test_simulate_a_hiccup_counts_a_stall():
    arrivals = [0.5 * (i + 1) for i in range(8)]
    arrivals[5:] = [a + 6 for a in arrivals[5:]]  # the generator stalls for 6 s
    r = simulate(_chunks(arrivals), piece=1.0)
    assert r["stalls"] == 1 and r["stall_s"] > 0


def test_errors_in_generation_reach_the_consumer(tiny):
    # Bad arguments raise at stream() (above); this error only happens in the worker.
    def callback(done, total):
        raise RuntimeError(f"callback failed at step {done}")

    st = tiny.stream("x", duration=1.0, callback=callback)
    with pytest.raises(RuntimeError, match="callback failed at step 1"):
        next(iter(st))
    assert st.error is not None and st.wait(5) is None


# ---- the remaining-time estimate under a slowing decode loop -------------------------------


def _slowing_chunks(estimate):
    """A 30 s stream whose steps slow down linearly (attention over a growing cache),
    chunks of 1 s (50 steps), with ``remaining`` from ``estimate(times, total)``."""
    from musicgen_nb.streaming import Chunk

    total, per = 1500, 50
    times, t = [], 2.0  # 2 s of text encoding before the first step
    chunks = []
    for d in range(1, total + 1):
        t += 0.025 + 1.5e-5 * d  # 25 ms a step at the start, 47.5 ms at the end
        times.append((d, t))
        if d % per == 0:
            i = d // per - 1
            chunks.append(
                Chunk(np.zeros((1, 1, 100), np.float32), float(i), d == total, i, 100,
                      arrived=t, remaining=0.0 if d == total else estimate(times, total),
                      total=30.0)
            )  # fmt: skip
    return chunks


def test_remaining_seconds_fits_a_slowing_loop():
    from musicgen_nb.streaming import remaining_seconds

    quad = [(d, 0.02 * d + 1e-5 * d * d) for d in range(1, 101)]
    assert remaining_seconds(quad, 200) == pytest.approx(2.3, rel=1e-6)
    line = [(d, 0.5 + 0.03 * d) for d in range(10, 60)]
    assert remaining_seconds(line, 100) == pytest.approx(41 * 0.03, rel=1e-6)  # 59 -> 100
    faster = [(d, 0.05 * d - 1e-4 * d * d) for d in range(1, 50)]  # a warm-up: not extrapolated
    assert 0 < remaining_seconds(faster, 100) < 0.05 * 51
    assert remaining_seconds(quad[:5], 200) == 0.0  # too few samples to fit
    assert remaining_seconds(quad, 100) == 0.0  # already there


def test_start_rule_does_not_stall_when_steps_slow_down():
    """With the average rate alone the player starts too early on a 30 s clip and runs dry;
    with the fitted estimate (what Stream reports) it does not, and starts near the
    gapless start."""
    from musicgen_nb.streaming import remaining_seconds, simulate

    def flat(times, total):
        (d0, t0), (d, t) = times[0], times[-1]
        return (total - d) * (t - t0) / (d - d0)

    naive = simulate(_slowing_chunks(flat), piece=1.0)
    fitted = simulate(
        _slowing_chunks(lambda ts, n: max(flat(ts, n), remaining_seconds(ts, n))), piece=1.0
    )
    assert naive["stalls"] >= 1
    assert fitted["stalls"] == 0
    assert fitted["gapless_start"] <= fitted["start"] <= fitted["gapless_start"] + 6.0


def test_step_samples_stay_bounded_and_span_the_run(tiny, monkeypatch):
    # One (step, time) sample per step would grow without end on an hour-long stream:
    # past max_samples every other one goes, keeping the first and the last.
    monkeypatch.setattr(Stream, "max_samples", 16)
    st = tiny.stream("jazz", duration=3.0, seed=1, chunk=0.5)
    chunks = list(st)
    steps = [d for d, _ in st._times]
    assert len(steps) <= 16 and steps == sorted(steps)
    assert steps[0] == 1 and steps[-1] == st._total_steps > 100  # the whole run, thinned
    assert chunks[-1].remaining == 0 and all(np.isfinite(c.remaining) for c in chunks[1:])
    assert all(c.steps_per_s > 0 for c in chunks[1:])
    g = tiny.generate("jazz", duration=3.0, seed=1, progress=False)
    np.testing.assert_array_equal(st.generation.codes, g.codes)  # the same run
