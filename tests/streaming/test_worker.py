"""The stream's worker: runs a request in a daemon thread, holds no reference to its stream,
and is stopped and joined at interpreter exit (stop_all)."""

from __future__ import annotations

import threading
import time

import pytest

from musicgen_nb.generation import make_request
from musicgen_nb.streaming import worker
from musicgen_nb.streaming.worker import Worker, running_workers, stop_all


def _request(s, w, duration=0.5):
    return make_request(
        s, "jazz", duration=duration, seed=0, progress=False, callback=w.callback,
        stop=w.stop_event, on_frames=w.on_frames,
    )  # fmt: skip


def test_the_worker_hands_over_every_frame_and_the_generation(tiny):
    w = Worker(tiny)
    w.start(_request(tiny, w)).join()
    kind, g = w.outcome
    assert kind == "done" and not g.interrupted and w.received == 25 == g.codes.shape[-1]
    assert w.prompt_frames == 0 and not w.alive and running_workers() == []
    frames = sum(codes.shape[-1] for _, codes in w.inbox)
    assert frames == 25 and [first for first, _ in w.inbox] == sorted(f for f, _ in w.inbox)
    rate, left = w.rate()
    assert rate > 0 and left == 0 and w.times[-1][0] == w.total_steps
    with pytest.raises(RuntimeError, match="already started"):
        w.start(_request(tiny, w))


def test_stop_all_stops_every_running_worker(tiny):
    started = threading.Event()
    w = Worker(tiny, callback=lambda done, total: started.set())
    w.start(_request(tiny, w, duration=20.0))
    assert started.wait(120) and w in running_workers()
    assert stop_all() == 1  # what the interpreter's exit runs
    assert not w.alive and w.outcome[1].interrupted and running_workers() == []
    assert w.times[-1][0] < w.total_steps


def test_abandon_stops_a_running_worker_only(tiny):
    stop = threading.Event()  # the caller's own event, e.g. the studio's
    w = Worker(tiny, stop=stop)
    w.abandon()  # not started: nothing to stop
    w.start(_request(tiny, w)).join()
    w.abandon()  # finished: the caller's event stays clear for its next run
    assert not stop.is_set() and w.stop_event is stop


def test_stop_all_waits_once_for_all_not_once_per_worker(tiny):
    # Workers held inside their step (a callback that waits) cannot stop: stop_all gives up
    # after one shared timeout, not a timeout per worker (3 x 60 s at exit before).
    release = threading.Event()
    workers = []
    for _ in range(3):
        started = threading.Event()

        def hold(done, total, started=started):
            started.set()
            release.wait(120)

        w = Worker(tiny, callback=hold)
        w.start(_request(tiny, w, duration=2.0))
        assert started.wait(120)
        workers.append(w)
    t0 = time.monotonic()
    try:
        assert stop_all(timeout=2.0) == 3
        took = time.monotonic() - t0
    finally:
        release.set()
    assert 2.0 <= took < 4.0, took  # was 6 s: 2 s per worker
    assert all(w.join(120) for w in workers) and running_workers() == []


def test_a_finishing_worker_never_waits_for_the_running_lock(tiny):
    # A GC finalizer may run while a thread holds the lock: the worker must still end.
    w = Worker(tiny)
    w.start(_request(tiny, w, duration=0.5))
    with worker._RUNNING_LOCK:
        assert w.join(30), "the worker waited for the lock held here"
    assert running_workers() == []
