"""The generation side of a stream: a daemon thread that runs the request and hands frames over.

A :class:`Worker` holds no reference to the :class:`~musicgen_nb.streaming.Stream` it feeds,
so a stream left half way (``for c in st: break``) can be garbage-collected, and the
stream's finalizer then stops its worker. At interpreter exit every worker still running
is stopped at its next step and joined (:func:`stop_all`, an ``atexit`` hook): the
interpreter never shuts down under a thread that is inside torch (which aborted it, rc 134).

The worker hands over through a list and an attribute, not a queue of data: a
KeyboardInterrupt in the consumer then loses nothing (an item taken from a queue is lost
when the interrupt lands before it is stored). The bell only wakes the consumer.

Examples
--------
>>> import musicgen_nb as mg
>>> from musicgen_nb.generation import make_request
>>> s = mg.load("tiny")
>>> w = Worker(s)
>>> req = make_request(s, "jazz", duration=0.5, seed=0, progress=False,
...                    callback=w.callback, stop=w.stop_event, on_frames=w.on_frames)
>>> w.start(req).join()
>>> w.outcome[0], w.received, w.alive
('done', 25, False)
"""

from __future__ import annotations

import atexit
import math
import queue
import threading
import time
from typing import Any

from .playback import remaining_seconds

__all__ = ["EXIT_TIMEOUT", "Worker", "running_workers", "stop_all"]

#: Seconds :func:`stop_all` waits for the running workers at interpreter exit (in all).
EXIT_TIMEOUT = 60.0

_RUNNING: set[Worker] = set()
_RUNNING_LOCK = threading.Lock()


class Worker:
    """Runs one generation request in a daemon thread for a stream.

    Parameters
    ----------
    s : MusicGen
        The session the request runs on.
    stop : threading.Event, optional
        The event that stops generation at its next step (a new one by default).
    callback : callable, optional
        The user's ``callback(done, total)``, called after the worker's own timing.
    max_samples : int
        The most (step, time) samples kept for the time estimates; past it, every other
        one goes (the first and the last stay).

    Attributes
    ----------
    inbox : list
        ``(first frame, codes [B, K, n])`` per hand-over; the consumer sets taken entries to None.
    outcome : tuple or None
        ``("done", Generation)`` or ``("error", exception)``, set after the last frames.
    prompt_frames : int or None
        Frames of the audio prompt (the first hand-over), once known.
    times : list of (int, float)
        (steps done, time) samples, thinned past ``max_samples``.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> w = Worker(mg.load("tiny"))
    >>> w.alive, w.outcome, w.rate()
    (False, None, (0.0, inf))
    """

    def __init__(
        self,
        s: Any,
        *,
        stop: threading.Event | None = None,
        callback: Any = None,
        max_samples: int = 2048,
    ) -> None:
        self.s = s
        self.stop_event = threading.Event() if stop is None else stop
        self.user_callback = callback
        self.max_samples = int(max_samples)
        self.inbox: list = []
        self.received = 0
        self.prompt_frames: int | None = None
        self.outcome: tuple | None = None
        self.bell: queue.SimpleQueue = queue.SimpleQueue()
        self.times: list[tuple[int, float]] = []
        self.total_steps = 0
        self.thread: threading.Thread | None = None

    # -- called by generation, in the worker's thread
    def on_frames(self, start: int, codes: Any) -> None:
        """Keep the frames past those already handed over (``codes`` is ``[B, K, n]`` from ``start``)."""
        n = start + codes.shape[-1]
        if self.prompt_frames is None:  # the first call gives the audio prompt's frames
            self.prompt_frames = int(codes.shape[-1])
        if n > self.received:
            self.inbox.append((self.received, codes[..., self.received - start :].clone()))
            self.received = n
            self.bell.put(None)

    def callback(self, done: int, total: int) -> None:
        """Time the step, then call the user's callback."""
        self.total_steps = total  # set before the sample that rate() may read
        times = self.times
        times.append((done, time.perf_counter()))
        if len(times) > self.max_samples:  # every other sample goes; the first and last stay
            del times[1:-1:2]
        if self.user_callback is not None:
            self.user_callback(done, total)

    # -- the thread
    def start(self, request: Any) -> threading.Thread:
        """Run ``request`` (:func:`musicgen_nb.generation.run`) in a daemon thread."""
        if self.thread is not None:
            raise RuntimeError("this worker was already started; a stream runs once")
        self.thread = threading.Thread(
            target=self._work, args=(request,), name="musicgen-stream", daemon=True
        )
        with _RUNNING_LOCK:
            _RUNNING.add(self)
        try:
            self.thread.start()
        except BaseException:  # (e.g. no thread can be started): not running
            with _RUNNING_LOCK:
                _RUNNING.discard(self)
            raise
        return self.thread

    def _work(self, request: Any) -> None:
        from ..generation import run

        try:
            self.outcome = ("done", run(self.s, request))
        except BaseException as exc:  # handed to the consumer, which raises it
            self.outcome = ("error", exc)
        finally:
            _RUNNING.discard(self)  # atomic; no lock: a GC finalizer may hold it meanwhile
            self.bell.put(None)

    def stop(self) -> None:
        """Stop generation at its next step."""
        self.stop_event.set()

    def abandon(self) -> None:
        """Stop generation if it is still running: the stream it fed is gone.

        (A finished worker leaves the stop event alone: it may be the caller's, reused.)
        """
        if self.alive:
            self.stop()

    @property
    def alive(self) -> bool:
        """Whether the thread is running."""
        return self.thread is not None and self.thread.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread (at most ``timeout`` s); True when it has ended (or never ran)."""
        if self.thread is not None:
            self.thread.join(timeout)
        return not self.alive

    def rate(self) -> tuple[float, float]:
        """(steps/s so far, estimated seconds until the last frame)."""
        times = self.times[:]  # the worker appends while we read
        if not times:
            return 0.0, math.inf
        (d_first, t_first), (done, _) = times[0], times[-1]
        total = self.total_steps
        dt = time.perf_counter() - t_first
        rate = (done - d_first) / dt if dt > 0 and done > d_first else 0.0
        left = total - done
        flat = left / rate if rate > 0 else (0.0 if left == 0 else math.inf)
        return rate, max(flat, remaining_seconds(times, total))


def running_workers() -> list[Worker]:
    """The workers whose thread is running now.

    Examples
    --------
    >>> running_workers()
    []
    """
    with _RUNNING_LOCK:
        return list(_RUNNING)


def stop_all(timeout: float = EXIT_TIMEOUT) -> int:
    """Stop every running worker at its next step and wait for them (at most ``timeout`` s in all).

    Registered with :mod:`atexit`, so that the interpreter never exits under a worker.

    Returns
    -------
    int
        How many workers were running.

    Examples
    --------
    >>> stop_all()
    0
    """
    workers = running_workers()
    for w in workers:
        w.stop()
    deadline = time.monotonic() + timeout  # one deadline for all, not ``timeout`` each
    for w in workers:
        w.join(max(0.0, deadline - time.monotonic()))
    return len(workers)


atexit.register(stop_all)
