"""Streaming: chunks cover the clip once, match generate() and the one-pass decode,
and stop / KeyboardInterrupt keep what was heard."""

from __future__ import annotations

import gc
import importlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from musicgen_nb.streaming import Stream, snr_db
from musicgen_nb.streaming.worker import running_workers


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
        dict(stop=0),  # falsy, still not an Event
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


def test_wait_on_a_stream_nothing_consumes_runs_it_to_the_end(tiny):
    # The newcomer's path: st = s.stream(...) (an assignment shows nothing), then st.wait().
    st = tiny.stream("x", duration=1.0, seed=5, chunk=0.25)
    assert "not started" in repr(st)
    g = st.wait()
    assert g is st.generation and not g.interrupted and g.audio.shape == (1, 1, 32000)
    assert len(st.chunks) == 4 and "done" in repr(st)
    np.testing.assert_array_equal(g.codes, tiny.generate("x", duration=1.0, seed=5).codes)
    assert st.wait() is g  # again: at once


def test_wait_after_a_partial_iteration_consumes_the_rest(tiny):
    st = tiny.stream("x", duration=2.0, seed=6, chunk=0.25)
    it = iter(st)
    first = [next(it), next(it)]
    g = st.wait(120)  # it used to block forever: nothing else pulls the chunks
    assert g is not None and not g.interrupted and g.audio.shape == (1, 1, 64000)
    assert [c.index for c in first] == [0, 1] and st.chunks[-1].final
    assert list(it) == []  # the iteration is over
    np.testing.assert_array_equal(g.codes, tiny.generate("x", duration=2.0, seed=6).codes)


def test_wait_with_a_timeout_returns_none_and_goes_on_later(tiny):
    st = tiny.stream("x", duration=2.0, seed=6, chunk=0.25)
    assert st.wait(timeout=0) is None and 1 <= len(st.chunks) < 8  # stopped between chunks
    g = st.wait()
    assert g is not None and not g.interrupted and len(st.chunks) == 8


@pytest.mark.parametrize(
    "value, exc",
    [
        (0, ValueError),
        (-1, ValueError),
        (10**6, ValueError),
        ("2", TypeError),
        (2.0, TypeError),
        (True, TypeError),
    ],  # fmt: skip
)
def test_decode_threads_is_checked_by_name_before_any_work(tiny, value, exc, monkeypatch):
    import musicgen_nb.generation as generation

    def too_late(*args, **kwargs):
        raise AssertionError(
            "the request was made (the model's work) before decode_threads was checked"
        )

    monkeypatch.setattr(generation, "make_request", too_late)
    with pytest.raises(exc) as info:
        tiny.stream("x", duration=1.0, decode_threads=value)
    cap = len(os.sched_getaffinity(0))
    assert type(info.value) is exc and str(info.value) == (
        f"decode_threads must be an int in [1, {cap}], got {value!r}; or None (torch's setting)"
    )
    assert running_workers() == []
    monkeypatch.undo()
    st = tiny.stream("x", duration=0.5, decode_threads=cap)  # the whole range is allowed
    assert st.decoder.threads == cap


def test_a_stream_stopped_before_its_first_frame_keeps_the_batch(tiny):
    st = tiny.stream(["a", "b"], duration=2.0, seed=0, chunk=0.25)
    st.stop()
    chunks = list(st)
    assert len(chunks) == 1 and chunks[0].final
    assert chunks[0].audio.shape == (2, 1, 0) == st.generation.audio.shape  # not (0, 1, 0)
    assert st.generation.interrupted and st.generation.codes.shape == (2, 4, 0)


_ABANDON = """
import atexit, sys
def report():  # registered before musicgen_nb: runs after its exit hook
    w = st._worker
    print("alive", w.alive, "stopped", w.stop_event.is_set(), "steps", w.times[-1][0],
          "of", w.total_steps, "interrupted", w.outcome[1].interrupted, flush=True)
atexit.register(report)
import musicgen_nb as mg
st = mg.load("tiny").stream("x", duration=20.0, chunk=0.25)
for chunk in st:
    break
print("left", flush=True)
"""


def test_a_stream_left_after_break_stops_its_worker_at_exit(tmp_path):
    # It aborted the interpreter at exit (rc 134: a daemon thread inside torch), and the
    # worker kept generating the 20 s until then.
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_ABANDON)], capture_output=True, text=True,
        cwd=tmp_path, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.split()
    assert lines[:1] == ["left"] and "terminate called" not in proc.stderr
    out = dict(zip(lines[1::2], lines[2::2], strict=False))
    assert out["alive"] == "False" and out["stopped"] == "True" and out["interrupted"] == "True"
    assert int(out["steps"]) < int(out["of"]) / 2  # stopped long before the end


def test_an_abandoned_stream_stops_its_worker_when_collected(tiny):
    st = tiny.stream("x", duration=20.0, chunk=0.25)
    for _chunk in st:
        break
    w = st._worker
    assert w.alive
    del st, _chunk
    gc.collect()  # the stream and its iteration form a cycle: the collector finds them
    assert w.join(120) and w.outcome[0] == "done" and w.outcome[1].interrupted
    assert w.times[-1][0] < w.total_steps and running_workers() == []


def test_errors_in_generation_reach_the_consumer(tiny):
    # Bad arguments raise at stream() (above); this error only happens in the worker.
    def callback(done, total):
        raise RuntimeError(f"callback failed at step {done}")

    st = tiny.stream("x", duration=1.0, callback=callback)
    with pytest.raises(RuntimeError, match="callback failed at step 1"):
        next(iter(st))
    assert st.error is not None and st.wait(5) is None


def test_step_samples_stay_bounded_and_span_the_run(tiny, monkeypatch):
    # One (step, time) sample per step would grow without end on an hour-long stream:
    # past max_samples every other one goes, keeping the first and the last.
    monkeypatch.setattr(Stream, "max_samples", 16)
    st = tiny.stream("jazz", duration=3.0, seed=1, chunk=0.5)
    chunks = list(st)
    steps = [d for d, _ in st._worker.times]
    assert len(steps) <= 16 and steps == sorted(steps)
    assert steps[0] == 1 and steps[-1] == st._worker.total_steps > 100  # the whole run, thinned
    assert chunks[-1].remaining == 0 and all(np.isfinite(c.remaining) for c in chunks[1:])
    assert all(c.steps_per_s > 0 for c in chunks[1:])
    g = tiny.generate("jazz", duration=3.0, seed=1, progress=False)
    np.testing.assert_array_equal(st.generation.codes, g.codes)  # the same run


def test_started_and_the_request_run_by_the_worker(tiny):
    st = tiny.stream("x", duration=0.5, seed=0, chunk=0.25)
    assert not st.started and st.request.batch == 1
    assert st.request.new_frames == st.new_frames == 25
    assert st.request.callback == st._worker.callback  # the worker's run is timed by it
    assert st.request.on_frames == st._worker.on_frames and st.request.stop.is_set() is False
    next(iter(st))
    assert st.started
    st.close()
    assert st.generation is not None


def test_display_goes_through_the_registered_renderer(tiny, monkeypatch):
    """The core never imports the live player: it asks the display registry for one."""
    module = importlib.import_module("musicgen_nb.streaming.streams")
    st = tiny.stream("x", duration=0.5, seed=0)
    monkeypatch.setattr(module, "renderer", lambda kind: None)
    with pytest.raises(NotImplementedError):  # IPython then falls back to the repr
        st._ipython_display_()
    shown = []

    class Shown:
        def __init__(self, stream):
            self.stream = stream

        def _ipython_display_(self):
            shown.append(self.stream)

    kinds = []
    monkeypatch.setattr(module, "renderer", lambda kind: kinds.append(kind) or Shown)
    st._ipython_display_()
    assert kinds == ["stream"] and shown == [st] and not st.started


_LOCKED_GC = """
import gc
import musicgen_nb as mg
from musicgen_nb.streaming import worker
gc.disable()
st = mg.load("tiny").stream("x", duration=20.0, chunk=0.25)
for chunk in st:
    break
w = st._worker
del st, chunk
with worker._RUNNING_LOCK:  # a collection can run while a thread holds the lock
    gc.collect()  # the abandoned stream's finalizer: it stops its worker, never joins here
print("collected", flush=True)
print("ended", w.join(120), w.outcome[1].interrupted, flush=True)
"""


def test_collecting_an_abandoned_stream_never_blocks_on_its_worker(tmp_path):
    # The finalizer joined the worker, whose end took the lock held by the collecting thread.
    env = dict(os.environ, OMP_NUM_THREADS="1")
    try:
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(_LOCKED_GC)], capture_output=True,
            text=True, cwd=tmp_path, env=env, timeout=120,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("the collection deadlocked on the worker")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["collected", "ended", "True", "True"]


class _DiesWhenChecked(threading.Thread):
    """A player's thread that ends right after wait() has seen it alive (it took one chunk)."""

    def __init__(self, st):
        self.st, self.took, self.go = st, threading.Event(), threading.Event()
        super().__init__(target=self.take_one, daemon=True)

    def take_one(self):
        next(iter(self.st))
        self.took.set()
        self.go.wait(120)

    def is_alive(self):
        alive = super().is_alive()
        self.go.set()
        return alive


def test_wait_consumes_the_stream_when_its_player_thread_dies(tiny):
    st = tiny.stream("jazz", duration=1.0, seed=0, chunk=0.25)
    player = _DiesWhenChecked(st)
    player.start()
    assert player.took.wait(120) and st.consumer is player
    g = st.wait(60)  # waited forever (here: returned None at the timeout) for a dead thread
    assert g is not None and g.audio.shape == (1, 1, 32000) and not player.is_alive()


def test_only_an_empty_pull_is_given_the_batch(tiny):
    st = tiny.stream(["a", "b"], duration=0.5, seed=0, chunk=0.25)
    list(st)
    wrong = np.ones((3, 1, 8), dtype=np.float32)  # a decoder bug, not "no frame yet"
    assert st._emit(lambda: wrong, final=False).audio.shape == (3, 1, 8)
    empty = np.zeros((0, 1, 0), dtype=np.float32)
    assert st._emit(lambda: empty, final=False).audio.shape == (2, 1, 0)
