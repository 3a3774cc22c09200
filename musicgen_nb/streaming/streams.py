"""The stream: hear the music while it is being generated.

:meth:`MusicGen.stream` runs generation (:func:`musicgen_nb.generation.run`) in a worker thread and
yields the audio in chunks as soon as their frames are complete in every codebook. Streaming never
changes what is sampled: after the loop, ``st.generation`` is the very ``Generation`` that
``generate`` returns (same codes, audio decoded in one pass). Chunks are decoded by
:class:`~musicgen_nb.streaming.ChunkDecoder` so that, joined end to end, they match the one-pass
decode.

Examples
--------
>>> import musicgen_nb as mg
>>> st = mg.load("tiny").stream("jazz", duration=1.0, seed=3, chunk=0.5)
>>> [c.final for c in st], st.generation.audio.shape
([False, True], (1, 1, 32000))
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import queue
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .._util.display import renderer
from .chunk import Chunk
from .chunk_decoder import ChunkDecoder
from .playback import remaining_seconds

if TYPE_CHECKING:
    from ..generation import Generation

__all__ = ["Stream", "stream"]


def _generate_options() -> dict:
    """The options :meth:`MusicGen.generate` takes, with their defaults (``prompts`` aside)."""
    from ..generation import generate

    params = inspect.signature(generate).parameters.values()
    return {p.name: p.default for p in params if p.default is not p.empty and p.name != "prompts"}


def _check_chunk(chunk: object) -> None:
    """Like ``check_positive``, with the unit in the message."""
    if isinstance(chunk, bool) or not isinstance(chunk, (int, float, np.integer, np.floating)):
        raise TypeError(f"chunk must be a number of seconds > 0, got {chunk!r}")
    if not math.isfinite(chunk) or chunk <= 0:
        raise ValueError(f"chunk must be a number of seconds > 0, got {chunk!r}")


def _check_names(kwargs: dict, options: dict) -> None:
    """Unknown keyword arguments raise at once, naming what stream() takes."""
    if "_on_frames" in kwargs:
        raise TypeError("_on_frames is private to stream()")
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise TypeError(
            f"stream() got unexpected keyword arguments {unknown}; it takes generate()'s: "
            + ", ".join(sorted(options))
        )


class Stream:
    """An iterator of :class:`Chunk` over a generation in flight.

    Make one with :meth:`MusicGen.stream`. Iterate it once. Generation starts on the first
    ``next()`` and runs in a worker thread (:func:`musicgen_nb.generation.run` on the request that
    ``generate`` would make, so the same codes for the same seed); chunks are decoded in the
    consumer's thread. ``stop()`` (or KeyboardInterrupt while waiting for a chunk) ends generation
    at the next step: the iteration then ends with a final chunk, and ``generation`` holds the
    partial result, as ``generate`` does. In Jupyter, a stream renders itself as a live player
    (:func:`musicgen_nb.players.live`).

    Parameters
    ----------
    s : MusicGen
    prompts : str, list of (str or None), or None
        As in :meth:`MusicGen.generate`.
    chunk : float
        Seconds of audio per chunk (the last one holds the rest). A chunk is yielded once its frames
        and about 0.1 s after them (the decoder's right context) are complete in every codebook.
    decode_threads : int or None
        Intra-op threads for decoding chunks in the consumer's thread (1 leaves
        the other cores to generation); None keeps torch's setting.
    method : {"auto", "exact", "context"}
        The :class:`ChunkDecoder` method.
    **kwargs
        Every option of :meth:`MusicGen.generate` (``progress`` defaults to False
        here), checked at once: bad values raise before anything runs.

    Attributes
    ----------
    generation : Generation or None
        Set when the iteration ends.
    chunks : list of Chunk
        Metadata of the chunks so far (their audio is not kept).
    interrupted : bool
    decoder : ChunkDecoder
    request : musicgen_nb.generation.Request
        The checked request the worker runs.
    max_samples : int
        The most (step, time) samples kept for the time estimates. Past it, every
        other one goes (the first and the last stay), so an hour-long stream holds
        as little as a minute-long one and each chunk's refit costs the same.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> st = mg.load("tiny").stream("jazz", duration=1.0, seed=0, chunk=0.5)
    >>> st.started, st
    (False, Stream(1 x 1 s, chunk 0.5 s, 0 chunks so far, not started))
    >>> [(c.index, c.final) for c in st]
    [(0, False), (1, True)]
    >>> st.generation.audio.shape, st.interrupted
    ((1, 1, 32000), False)
    """

    max_samples = 2048

    def __init__(self, s: Any, prompts: str | list[str | None] | None = None, *, chunk: float = 1.0,
                 decode_threads: int | None = 1, method: str = "auto", **kwargs: Any) -> None:  # fmt: skip
        from ..generation import make_request

        _check_chunk(chunk)
        defaults = _generate_options()
        _check_names(kwargs, defaults)
        kwargs.setdefault("progress", False)
        stop = kwargs.pop("stop", None)
        self._user_callback = kwargs.pop("callback", None)
        # The same checks generate() runs, once, so a bad argument raises here, not on next().
        options = {k: kwargs.get(k, v) for k, v in defaults.items()}
        options.update(callback=self._user_callback, stop=stop)
        req = make_request(s, prompts, **options, on_frames=self._on_frames)
        self._stop = threading.Event() if stop is None else stop
        # The worker runs it with the stream's stop and callback (which times the steps).
        self.request = dataclasses.replace(req, callback=self._callback, stop=self._stop)
        self.batch = req.batch
        self.s = s
        self.prompts = prompts
        self.kwargs = kwargs
        self.sample_rate = int(s.sample_rate)
        self.chunk_frames = max(1, int(round(chunk * s.frame_rate)))
        self.chunk = self.chunk_frames / s.frame_rate
        self.new_frames = req.new_frames
        self.duration = req.opts["duration"]
        self.decoder = ChunkDecoder(s, method=method, threads=decode_threads)
        self.generation = None
        self.chunks: list[Chunk] = []
        self.interrupted = False
        self.error = None
        self.prompt_frames = None
        # The worker hands over through a list and an attribute, not a queue of data: a
        # KeyboardInterrupt in the consumer then loses nothing (an item taken from a queue
        # is lost when the interrupt lands before it is stored, and queue.Queue's lock can
        # be left released under the worker's put()). The bell only wakes the consumer.
        self._inbox: list = []  # (first frame, codes [B, K, n]) or None once pushed
        self._taken = 0  # inbox entries the decoder has
        self._outcome = None  # ("done", Generation) or ("error", exc): set after every frame
        self._bell: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = None
        self._iter = None
        self._t0 = None
        self._total_steps = 0
        self._times: list[tuple[int, float]] = []  # (steps done, time), thinned past max_samples
        self._received = 0
        self._finished = threading.Event()

    # -- the worker
    def _on_frames(self, start, codes):
        n = start + codes.shape[-1]
        if self.prompt_frames is None:  # the first call gives the audio prompt's frames
            self.prompt_frames = int(codes.shape[-1])
        if n > self._received:
            self._inbox.append((self._received, codes[..., self._received - start :].clone()))
            self._received = n
            self._bell.put(None)

    def _callback(self, done, total):
        self._total_steps = total  # set before the sample that _rate may read
        times = self._times
        times.append((done, time.perf_counter()))
        if len(times) > self.max_samples:  # every other sample goes; the first and last stay
            del times[1:-1:2]
        if self._user_callback is not None:
            self._user_callback(done, total)

    def _work(self):
        from ..generation import run

        try:
            self._outcome = ("done", run(self.s, self.request))
        except BaseException as exc:  # handed to the consumer, which raises it
            self._outcome = ("error", exc)
        self._bell.put(None)

    def _rate(self) -> tuple[float, float]:
        """(steps/s so far, estimated seconds until the last frame)."""
        times = self._times[:]  # the worker appends while we read
        if not times:
            return 0.0, math.inf
        (d_first, t_first), (done, _) = times[0], times[-1]
        total = self._total_steps
        dt = time.perf_counter() - t_first
        rate = (done - d_first) / dt if dt > 0 and done > d_first else 0.0
        left = total - done
        flat = left / rate if rate > 0 else (0.0 if left == 0 else math.inf)
        return rate, max(flat, remaining_seconds(times, total))

    # -- the consumer
    def stop(self) -> None:
        """Stop generation at its next step; the iteration ends with what was made."""
        self._stop.set()

    def __iter__(self) -> Iterator[Chunk]:
        if self._iter is None:
            self._iter = self._chunks()
        return self._iter

    def __next__(self) -> Chunk:
        return next(iter(self))

    def wait(self, timeout: float | None = None) -> Generation | None:
        """Wait until the consumer (e.g. a live player) is done; ``generation``, None on a timeout.

        Examples
        --------
        >>> import musicgen_nb as mg
        >>> st = mg.load("tiny").stream("jazz", duration=1.0, seed=0, chunk=0.5)
        >>> chunks = list(st); st.wait().audio.shape  # consumed by a loop, or a live player
        (1, 1, 32000)
        """
        if self._iter is None:
            raise RuntimeError(
                "nothing is consuming this stream yet: iterate it, or display it (a live player)"
            )
        self._finished.wait(timeout)
        return self.generation

    @property
    def started(self) -> bool:
        """Whether the iteration has begun (a stream is iterated once)."""
        return self._iter is not None

    def _ipython_display_(self):
        # The display layer registers the live player (musicgen_nb.players.live) as the
        # renderer of "stream"; without one, IPython falls back to the repr.
        render = renderer("stream")
        if render is None:
            raise NotImplementedError("no renderer is registered for streams")
        render(self)._ipython_display_()

    def __repr__(self) -> str:
        state = (
            "not started"
            if self._iter is None
            else ("done" if self.generation is not None else "running")
        )
        return (
            f"Stream({self.batch} x {self.duration:g} s, chunk {self.chunk:g} s, "
            f"{len(self.chunks)} chunks so far, {state})"
        )

    def close(self) -> None:
        """Stop generation (if running) and wait for the worker; ``generation`` is then set."""
        self.stop()
        if self.generation is None and self._iter is not None:
            for _ in self._iter:
                pass

    def _total_frames(self) -> int:
        return (self.prompt_frames or 0) + self.new_frames

    def _expected_samples(self) -> int:
        prompt = (self.prompt_frames or 0) * int(self.s.hop_length)
        return prompt + round(self.duration * self.sample_rate)

    def _emit(self, pull, final: bool, *, trim: bool = False) -> Chunk:
        """The chunk of the audio ``pull()`` gives (cut to the clip's length when ``trim``).

        The estimates are read before the pull, so that little runs between the decoder
        moving on and the chunk being returned (a KeyboardInterrupt there loses the audio).
        """
        rate, left = self._rate()
        audio = pull()
        if final:
            self._final_sent = True
        if trim:
            audio = audio[..., : max(0, self._expected_samples() - self._samples_out)]
        c = Chunk(
            audio=audio, start=self._samples_out / self.sample_rate, final=final,
            index=len(self.chunks), sample_rate=self.sample_rate,
            arrived=time.perf_counter() - self._t0, remaining=0.0 if final else left,
            steps_per_s=rate, total=self._expected_samples() / self.sample_rate,
        )  # fmt: skip
        self._samples_out += audio.shape[-1]
        # Keep the timeline, not the audio (st.generation holds the audio).
        self.chunks.append(Chunk(**{**c.__dict__, "audio": audio[..., :0]}))
        return c

    def _take(self) -> None:
        """Push the next inbox entry to the decoder.

        Safe to repeat after an interrupt: only frames past ``decoder.frames`` go in.
        """
        d = self.decoder
        entry = self._inbox[self._taken]
        if entry is not None:
            first, codes = entry
            if first + codes.shape[-1] > d.frames:
                d.push(codes[..., d.frames - first :])
            self._inbox[self._taken] = None  # the decoder keeps the codes
        self._taken += 1

    def _next_chunk(self):
        """Block until the next chunk is ready; None when the stream is over."""
        d = self.decoder
        while True:
            if self.generation is not None:
                return None
            outcome = self._outcome  # read first: the worker sets it after its last frames
            if self._taken < len(self._inbox):
                self._take()
                if self._final_sent:
                    continue
                if d.frames >= self._total_frames():  # complete: no need to wait for generate()
                    return self._emit(lambda: d.pull(final=True), True, trim=True)
                if d.ready() - d.emitted >= self.chunk_frames:
                    return self._emit(d.pull, final=False)
                continue
            if outcome is None:
                try:
                    self._bell.get(timeout=0.05)
                except queue.Empty:
                    pass
                continue
            return self._finish(outcome)

    def _finish(self, outcome):
        """The last chunk once generation has ended (None if it was sent), or its error."""
        kind, value = outcome
        if kind == "error":
            self.error = value
            raise value
        g = value  # "done"
        last = None
        if not self._final_sent:  # (an interrupt in the pull leaves it to do again)
            last = self._emit(lambda: self.decoder.pull(final=True), True, trim=not g.interrupted)
        self.interrupted = g.interrupted
        self.generation = g
        return last

    def _chunks(self):
        self._t0 = time.perf_counter()
        self._samples_out = 0
        self._final_sent = False
        self._thread = threading.Thread(target=self._work, name="musicgen-stream", daemon=True)
        self._thread.start()
        try:
            while True:
                try:
                    c = self._next_chunk()
                except KeyboardInterrupt:  # keep what was made, as generate() does
                    self.stop()
                    continue
                if c is None:
                    break
                yield c
        finally:
            if self.generation is None:  # closed early (e.g. break + close()): stop the worker
                self.stop()
                while self.generation is None and self.error is None:
                    try:
                        self._next_chunk()
                    except KeyboardInterrupt:
                        continue
                    except BaseException:
                        break
            self._thread.join()
            self._finished.set()


def stream(s: Any, prompts: str | list[str | None] | None = None, *, chunk: float = 1.0,
           **kwargs: Any) -> Stream:  # fmt: skip
    """Generate and hear the music as it is made; see :meth:`MusicGen.stream`.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> st = stream(mg.load("tiny"), "jazz", duration=1.0, seed=0, chunk=0.5)
    >>> [round(c.start, 2) for c in st]
    [0.0, 0.5]
    """
    return Stream(s, prompts, chunk=chunk, **kwargs)
