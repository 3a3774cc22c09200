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
from .chunk_decoder import ChunkDecoder, check_threads
from .worker import Worker

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
    partial result, as ``generate`` does. A stream left half way (``for c in st: break``) stops
    its worker when it is garbage-collected, and at interpreter exit at the latest.
    ``wait()`` gives the Generation whoever consumes the stream. In Jupyter, a stream displayed
    on its own (``st`` as the last line of a cell) renders itself as a live player
    (:func:`musicgen_nb.players.live`) that plays it in the background.

    Parameters
    ----------
    s : MusicGen
    prompts : str, list of (str or None), or None
        As in :meth:`MusicGen.generate`.
    chunk : float
        Seconds of audio per chunk (the last one holds the rest). A chunk is yielded once its frames
        and about 0.1 s after them (the decoder's right context) are complete in every codebook.
    decode_threads : int or None
        Intra-op threads for decoding chunks in the consumer's thread, 1 to
        ``os.cpu_count()`` (1 leaves the other cores to generation); None keeps
        torch's setting.
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
    consumer : threading.Thread or None
        The thread that pulls the chunks: the last one that did, or the one a live player
        sets before it starts. ``wait()`` from another thread waits for it.
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
    >>> st.generation.audio.shape, st.interrupted, st.prompt_frames, st.stop(), st.close()
    ((1, 1, 32000), False, 0, None, None)
    """

    max_samples = 2048

    def __init__(self, s: Any, prompts: str | list[str | None] | None = None, *, chunk: float = 1.0,
                 decode_threads: int | None = 1, method: str = "auto", **kwargs: Any) -> None:  # fmt: skip
        from ..generation import make_request

        _check_chunk(chunk)
        decode_threads = check_threads(decode_threads, "decode_threads")
        defaults = _generate_options()
        _check_names(kwargs, defaults)
        kwargs.setdefault("progress", False)
        stop = kwargs.pop("stop", None)
        callback = kwargs.pop("callback", None)
        # The same checks generate() runs, once, so a bad argument raises here, not on next().
        options = {k: kwargs.get(k, v) for k, v in defaults.items()}
        options.update(callback=callback, stop=stop)
        # The worker holds no reference to the stream, so an abandoned stream can be collected.
        w = self._worker = Worker(s, stop=stop, callback=callback, max_samples=self.max_samples)
        req = make_request(s, prompts, **options, on_frames=w.on_frames)
        self._stop = w.stop_event
        # The worker runs it with the stream's stop and its callback (which times the steps).
        self.request = dataclasses.replace(req, callback=w.callback, stop=w.stop_event)
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
        self._taken = 0  # worker.inbox entries the decoder has
        self._iter = None
        self.consumer: threading.Thread | None = None
        self._t0 = None
        self._finished = threading.Event()

    @property
    def prompt_frames(self) -> int | None:
        """Frames of the audio prompt (0 without one), known once generation has begun."""
        return self._worker.prompt_frames

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
        """Wait for the stream to end and return its Generation (None on a timeout or an error).

        When another thread consumes the stream (a live player), this waits for it. Otherwise
        (never iterated, or iterated part way in this thread) ``wait`` consumes the rest here,
        so it always ends: those chunks are not returned, but ``generation`` holds the whole
        clip. ``timeout`` is then checked between chunks. KeyboardInterrupt stops generation
        and keeps what was made, as in a loop over the stream.

        Examples
        --------
        >>> import musicgen_nb as mg
        >>> st = mg.load("tiny").stream("jazz", duration=1.0, seed=0, chunk=0.5)
        >>> st.wait().audio.shape, len(st.chunks)   # nothing consumed it: wait() ran it
        ((1, 1, 32000), 2)
        """
        if self._finished.is_set() or self.error is not None:
            return self.generation
        consumer = self.consumer  # (ident None: a player's thread, about to start)
        mine = consumer is None or consumer is threading.current_thread()
        deadline = None if timeout is None else time.monotonic() + timeout
        if not mine and self._wait_for(consumer, deadline):
            return self.generation
        for _ in self:
            if deadline is not None and time.monotonic() >= deadline:
                return None
        return self.generation

    def _wait_for(self, consumer: threading.Thread, deadline: float | None) -> bool:
        """Wait for ``consumer``, another thread: False if it died (or never started) first."""
        try:
            while not self._finished.wait(0.2):
                if deadline is not None and time.monotonic() >= deadline:
                    return True
                if self.consumer is not consumer or (consumer.ident and not consumer.is_alive()):
                    return self._finished.is_set()  # (ident None: a thread about to start)
        except KeyboardInterrupt:
            self.stop()
            self._finished.wait(None if deadline is None else max(0, deadline - time.monotonic()))
        return True

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
        done = "done" if self.generation is not None else "running"
        state = "not started" if self._iter is None else done
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

    def _settle(self) -> None:
        """The iteration was left early: stop the worker and keep its outcome (no more chunks)."""
        w = self._worker
        w.stop()
        while True:
            try:
                w.join()
                break
            except KeyboardInterrupt:
                continue
        kind, value = w.outcome if w.outcome is not None else ("error", None)
        if kind == "done":
            self.interrupted, self.generation = value.interrupted, value
        else:
            self.error = value

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
        rate, left = self._worker.rate()
        audio = pull()
        if audio.shape[-1] == 0 and audio.shape[0] != self.batch:  # no frame yet: keep B
            audio = np.zeros((self.batch, self.decoder.channels, 0), dtype=np.float32)
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
        d, inbox = self.decoder, self._worker.inbox
        entry = inbox[self._taken]
        if entry is not None:
            first, codes = entry
            if first + codes.shape[-1] > d.frames:
                d.push(codes[..., d.frames - first :])
            inbox[self._taken] = None  # the decoder keeps the codes
        self._taken += 1

    def _next_chunk(self):
        """Block until the next chunk is ready; None when the stream is over."""
        d, w = self.decoder, self._worker
        while True:
            if self.generation is not None:
                return None
            outcome = w.outcome  # read first: the worker sets it after its last frames
            if self._taken < len(w.inbox):
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
                    w.bell.get(timeout=0.05)
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
        self._worker.start(self.request)
        closed = False
        try:
            while True:
                self.consumer = threading.current_thread()
                try:
                    c = self._next_chunk()
                except KeyboardInterrupt:  # keep what was made, as generate() does
                    self.stop()
                    continue
                if c is None:
                    break
                yield c
        except GeneratorExit:  # closed: the stream was collected (in a GC finalizer): no join
            closed = True
            self._worker.abandon()
            raise
        finally:
            if self.generation is None and self.error is None and not closed:
                self._settle()  # an error in this thread: the worker stops, and is joined
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
