"""Streaming: hear the music while it is being generated.

:meth:`MusicGen.stream` runs :func:`musicgen_nb.generation.generate` in a
worker thread and yields the audio in chunks as soon as their frames are
complete in every codebook. Streaming never changes what is sampled: after the
loop, ``st.generation`` is the very ``Generation`` that ``generate`` returns
(same codes, audio decoded in one pass).

Chunks are decoded by :class:`ChunkDecoder` so that, joined end to end, they
match the one-pass decode. MusicGen's 32 kHz EnCodec decoder is a convolution,
then an LSTM, then a stack of (transposed) convolutions. The first convolution
looks 3 frames ahead, the LSTM carries its state from chunk to chunk, and the
convolutions after it reach less than 3 frames either side: so the decoder
holds back the last 6 frames (0.12 s) until their right context exists,
re-runs a few frames of left context, and gives the same samples as the
one-pass decode up to float rounding. A decoder of another shape falls back to
decoding each chunk with a fixed left and right context (``method="context"``).

Examples
--------
>>> import musicgen_nb as mg
>>> s = mg.load("tiny")
>>> st = s.stream("lo-fi beat", duration=2.0, seed=1, chunk=0.5)
>>> chunks = list(st)
>>> [round(c.start, 2) for c in chunks][:3], chunks[-1].final
([0.0, 0.5, 1.0], True)
>>> import numpy as np
>>> audio = np.concatenate([c.audio for c in chunks], axis=-1)
>>> audio.shape == st.generation.audio.shape
True
"""

from __future__ import annotations

import inspect
import math
import queue
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "Chunk", "ChunkDecoder", "Stream", "stream", "snr_db", "should_start", "remaining_seconds",
    "simulate",
]  # fmt: skip

#: Safety margin of the player's start rule (see :func:`should_start`).
START_MARGIN = 1.15


# --------------------------------------------------------------------------- chunk decoding
@contextmanager
def _threads(n: int | None):
    """Run torch ops of this thread with ``n`` intra-op threads (per-thread on CPU)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _seanet_reach(layers) -> float | None:
    """Frames of context each side that the layers after the LSTM need, or None
    when a layer is of a kind this module does not know (then use ``context``)."""
    from transformers.models.encodec.modeling_encodec import (
        EncodecConv1d,
        EncodecConvTranspose1d,
        EncodecResnetBlock,
    )

    rate = 1  # samples per frame at the current layer
    reach = 0.0
    for layer in layers:
        if isinstance(layer, torch.nn.ELU):
            continue
        if isinstance(layer, EncodecConvTranspose1d):
            k, st = layer.conv.kernel_size[0], layer.conv.stride[0]
            reach += math.ceil(k / st) / rate
            rate *= st
        elif isinstance(layer, EncodecConv1d):
            if int(layer.stride) != 1 or getattr(layer, "norm_type", "") != "weight_norm":
                return None
            reach += (int(layer.kernel_size) // 2) / rate
        elif isinstance(layer, EncodecResnetBlock):
            for sub in layer.block:
                if isinstance(sub, EncodecConv1d):
                    reach += (int(sub.kernel_size) // 2) / rate
                elif not isinstance(sub, torch.nn.ELU):
                    return None
            if not isinstance(layer.shortcut, torch.nn.Identity):
                reach += (int(layer.shortcut.kernel_size) // 2) / rate
        else:
            return None
    return reach


class ChunkDecoder:
    """Decode codes piece by piece so that the pieces join into the one-pass decode.

    Feed frames with :meth:`push` as they become known and take the audio that
    is ready with :meth:`pull`; ``pull(final=True)`` flushes the tail.

    Parameters
    ----------
    s : MusicGen
    method : {"auto", "exact", "context"}
        ``"exact"`` carries the LSTM state and re-runs only the few frames the
        convolutions need (MusicGen's EnCodec); ``"context"`` decodes each piece
        whole with ``left``/``right`` frames of context; ``"auto"`` picks
        ``"exact"`` when the codec has the expected layers.
    left, right : int
        Context frames of the ``"context"`` method.
    threads : int or None
        Intra-op threads for decoding (this thread only); None keeps torch's.

    Attributes
    ----------
    hold : int
        Frames held back until their right context exists.
    overlap_frames : int
        Frames decoded more than once so far (the cost of the overlap).
    seconds : float
        Time spent decoding so far.

    Examples
    --------
    >>> import numpy as np, musicgen_nb as mg
    >>> s = mg.load("tiny")
    >>> codes = np.random.default_rng(0).integers(0, 2048, (1, 4, 60))
    >>> d = ChunkDecoder(s)
    >>> d.push(codes[..., :30]); a = d.pull()
    >>> d.push(codes[..., 30:]); b = d.pull(final=True)
    >>> joined = np.concatenate([a, b], axis=-1)
    >>> joined.shape, snr_db(s.decode(codes), joined) > 60
    ((1, 1, 38400), True)
    """

    def __init__(self, s, *, method="auto", left=50, right=5, threads=None):
        if method not in ("auto", "exact", "context"):
            raise ValueError(f"method must be 'auto', 'exact' or 'context', got {method!r}")
        codec = s.model.audio_encoder
        self.s = s
        self.codec = codec
        self.hop = int(s.hop_length)
        self.channels = int(s.audio_channels)
        self.threads = threads
        self.codes = None  # [B, K, n] int64 tensor of every frame pushed
        self.emitted = 0  # frames whose audio was pulled
        self.overlap_frames = 0
        self.seconds = 0.0  # time spent decoding
        layers = list(codec.decoder.layers)
        reach = None
        if method != "context":
            from transformers.models.encodec.modeling_encodec import EncodecConv1d, EncodecLSTM

            ok = (
                len(layers) > 2
                and isinstance(layers[0], EncodecConv1d)
                and int(layers[0].stride) == 1
                and isinstance(layers[1], EncodecLSTM)
            )
            reach = _seanet_reach(layers[2:]) if ok else None
            if method == "exact" and reach is None:
                raise ValueError(
                    "method='exact' needs EnCodec's conv + LSTM + conv-stack decoder; "
                    "this codec has other layers, use method='context'"
                )
        self.method = "exact" if reach is not None else "context"
        if self.method == "exact":
            pad = int(layers[0].padding_total)
            self.pre_right = pad // 2  # frames the first conv looks ahead
            self.pre_left = pad - self.pre_right
            self.post = int(math.ceil(reach))  # frames of context after the LSTM
            self.hold = self.pre_right + self.post
            self.lstm_out = None  # per channel: [B, D, m] LSTM outputs so far
            self.state = [None] * self.channels
            self.lstm_done = 0
            self.lstm_off = 0  # absolute frame of lstm_out[c][..., 0]
        else:
            self.left, self.right = int(left), int(right)
            self.hold = self.right

    @property
    def frames(self) -> int:
        """Frames pushed so far."""
        return 0 if self.codes is None else int(self.codes.shape[-1])

    def push(self, codes) -> None:
        """Append frames ``[B, K, n]`` (numpy or torch, int)."""
        c = torch.as_tensor(codes).to(self.codec.device, torch.long)
        self.codes = c if self.codes is None else torch.cat([self.codes, c], dim=-1)

    def ready(self, final: bool = False) -> int:
        """Frames whose audio :meth:`pull` would give now."""
        return self.frames if final else max(self.emitted, self.frames - self.hold)

    def pull(self, final: bool = False) -> np.ndarray:
        """The audio ``[B, C, samples]`` of the frames ready since the last pull.

        ``final=True`` decodes up to the last frame pushed (the clip's end).
        """
        end = self.ready(final)
        if end <= self.emitted or self.codes is None:
            b = 0 if self.codes is None else self.codes.shape[0]
            return np.zeros((b, self.channels, 0), dtype=np.float32)
        t0 = time.perf_counter()
        with torch.inference_mode(), _threads(self.threads):
            if self.method == "exact":
                wav = self._exact(self.emitted, end, final)
            else:
                wav = self._context(self.emitted, end, final)
        self.emitted = end
        out = wav.to("cpu", torch.float32).numpy()
        self.seconds += time.perf_counter() - t0
        return out

    # -- exact: first conv with 3 frames of look-ahead, stateful LSTM, conv stack with context
    def _embed(self, c: int, a: int, b: int) -> torch.Tensor:
        sub = self.codes[:, c :: self.channels, a:b]  # [B, k, n]
        return self.codec.quantizer.decode(sub.transpose(0, 1))  # [B, D, n]

    def _exact(self, a: int, b: int, final: bool) -> torch.Tensor:
        layers = self.codec.decoder.layers
        n = self.frames
        lstm_end = n if final else n - self.pre_right
        outs = []
        for c in range(self.channels):
            # 1. new LSTM frames [lstm_done, lstm_end): the first conv sees pre_left/pre_right
            #    frames of real context (reflect padding only at the clip's own edges).
            x0, x1 = self.lstm_done, lstm_end
            if x1 > x0:
                lo, hi = max(0, x0 - self.pre_left), min(n, x1 + self.pre_right)
                h = layers[0](self._embed(c, lo, hi))[..., x0 - lo : x1 - lo]
                self.overlap_frames += (x0 - lo) + (hi - x1) if c == 0 else 0
                seq = h.permute(2, 0, 1)
                y, self.state[c] = layers[1].lstm(seq, self.state[c])
                y = (y + seq).permute(1, 2, 0)
                prev = None if self.lstm_out is None else self.lstm_out[c]
                y = y if prev is None else torch.cat([prev, y], dim=-1)
                if self.lstm_out is None:
                    self.lstm_out = [None] * self.channels
                self.lstm_out[c] = y
            # 2. samples of frames [a, b) from LSTM frames [a - post, b + post).
            off = self.lstm_off
            m = off + self.lstm_out[c].shape[-1]
            lo, hi = max(0, a - self.post), min(m, b + self.post)
            x = self.lstm_out[c][..., lo - off : hi - off]
            for layer in layers[2:]:
                x = layer(x)
            outs.append(x[..., (a - lo) * self.hop : (b - lo) * self.hop])
            if c == 0:
                self.overlap_frames += (a - lo) + (hi - b)
        self.lstm_done = max(self.lstm_done, lstm_end)
        # LSTM outputs before the next piece's left context are no longer needed.
        drop = max(0, b - self.post) - self.lstm_off
        if drop > 0:
            self.lstm_out = [y[..., drop:] for y in self.lstm_out]
            self.lstm_off += drop
        return torch.cat(outs, dim=1)

    # -- context: decode [a - left, b + right) whole and keep [a, b)
    def _context(self, a: int, b: int, final: bool) -> torch.Tensor:
        from .tokens import decode

        lo, hi = max(0, a - self.left), b if final else min(self.frames, b + self.right)
        self.overlap_frames += (a - lo) + (hi - b)
        wav = decode(self.s, self.codes[..., lo:hi].cpu().numpy())
        return torch.from_numpy(wav[..., (a - lo) * self.hop : (b - lo) * self.hop])


def snr_db(reference, estimate) -> float:
    """Signal-to-noise ratio of ``estimate`` against ``reference`` in dB, over the whole clip.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.sin(np.arange(1000) / 10)
    >>> round(snr_db(x, x + 0.01 * x), 1)
    40.0
    """
    ref = np.asarray(reference, dtype=np.float64)
    est = np.asarray(estimate, dtype=np.float64)
    if ref.shape != est.shape:
        raise ValueError(
            f"reference and estimate must have one shape, got {ref.shape} and {est.shape}"
        )
    noise = float(np.sum((ref - est) ** 2))
    signal = float(np.sum(ref**2))
    if noise == 0:
        return math.inf
    return 10 * math.log10(max(signal, 1e-30) / noise)


# --------------------------------------------------------------------------- the stream
@dataclass
class Chunk:
    """A piece of a stream.

    Attributes
    ----------
    audio : np.ndarray
        float32 ``[batch, channels, n]``.
    start : float
        Seconds from the start of the clip (the audio prompt, if any, comes first).
    final : bool
        True on the last chunk; the chunks then cover the clip exactly once.
    index : int
    sample_rate : int
    arrived : float
        Seconds from the start of the stream to when this chunk was ready.
    remaining : float
        Estimated seconds until the last chunk is ready (0 on the last one),
        from the steps/s measured so far.
    steps_per_s : float
        Decode steps per second measured so far.
    total : float
        Seconds of audio the whole clip will hold (when not stopped early).
    """

    audio: np.ndarray
    start: float
    final: bool
    index: int
    sample_rate: int
    arrived: float = 0.0
    remaining: float = 0.0
    steps_per_s: float = 0.0
    total: float = 0.0
    samples: int = -1

    def __post_init__(self):
        if self.samples < 0:
            self.samples = int(self.audio.shape[-1])

    @property
    def duration(self) -> float:
        """Seconds of audio in this chunk."""
        return self.samples / self.sample_rate

    @property
    def end(self) -> float:
        return self.start + self.duration

    def __repr__(self) -> str:
        last = ", final" if self.final else ""
        return (
            f"Chunk(#{self.index}, {self.start:.2f}-{self.end:.2f} s, audio {tuple(self.audio.shape[:2]) + (self.samples,)}"
            f", at {self.arrived:.2f} s{last})"
        )


def _generate_defaults() -> dict:
    from .generation import generate

    return {
        k: p.default
        for k, p in inspect.signature(generate).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


class Stream:
    """An iterator of :class:`Chunk` over a generation in flight. Make one with
    :meth:`MusicGen.stream`.

    Iterate it once. Generation starts on the first ``next()`` and runs in a
    worker thread (the same ``generate`` call, so the same codes for the same
    seed); chunks are decoded in the consumer's thread. ``stop()`` (or
    KeyboardInterrupt while waiting for a chunk) ends generation at the next
    step: the iteration then ends with a final chunk, and ``generation`` holds
    the partial result, as ``generate`` does. In Jupyter, a stream renders
    itself as a live player (:func:`musicgen_nb.players.live`).

    Parameters
    ----------
    s : MusicGen
    prompts : str, list of (str or None), or None
        As in :meth:`MusicGen.generate`.
    chunk : float
        Seconds of audio per chunk (the last one holds the rest). A chunk is
        yielded once its frames and about 0.1 s after them (the decoder's right
        context) are complete in every codebook.
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
    max_samples : int
        The most (step, time) samples kept for the time estimates. Past it, every
        other one goes (the first and the last stay), so an hour-long stream holds
        as little as a minute-long one and each chunk's refit costs the same.
    """

    max_samples = 2048

    def __init__(self, s, prompts=None, *, chunk=1.0, decode_threads=1, method="auto", **kwargs):
        from .generation import _request

        if isinstance(chunk, bool) or not isinstance(chunk, (int, float, np.integer, np.floating)):
            raise TypeError(f"chunk must be a number of seconds > 0, got {chunk!r}")
        if not math.isfinite(chunk) or chunk <= 0:
            raise ValueError(f"chunk must be a number of seconds > 0, got {chunk!r}")
        defaults = _generate_defaults()
        unknown = sorted(set(kwargs) - set(defaults) - {"_on_frames"})
        if unknown:
            raise TypeError(
                f"stream() got unexpected keyword arguments {unknown}; it takes generate()'s: "
                + ", ".join(sorted(k for k in defaults if not k.startswith("_")))
            )
        if "_on_frames" in kwargs:
            raise TypeError("_on_frames is private to stream()")
        kwargs.setdefault("progress", False)
        # The same checks generate() runs, so a bad argument raises here, not on next().
        options = {
            k: kwargs.get(k, v) for k, v in defaults.items() if k not in ("prompts", "_on_frames")
        }
        req = _request(s, prompts, **options)
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
        self._stop = kwargs.pop("stop", None) or threading.Event()
        self._user_callback = kwargs.pop("callback", None)
        self._queue: queue.Queue = queue.Queue()
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
            self._queue.put(("frames", codes[..., self._received - start :].clone()))
            self._received = n

    def _callback(self, done, total):
        self._total_steps = total  # set before the sample that _rate may read
        times = self._times
        times.append((done, time.perf_counter()))
        if len(times) > self.max_samples:  # every other sample goes; the first and last stay
            del times[1:-1:2]
        if self._user_callback is not None:
            self._user_callback(done, total)

    def _work(self):
        try:
            g = self.s.generate(
                self.prompts, stop=self._stop, callback=self._callback,
                _on_frames=self._on_frames, **self.kwargs,
            )  # fmt: skip
            self._queue.put(("done", g))
        except BaseException as exc:  # handed to the consumer, which raises it
            self._queue.put(("error", exc))

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

    def __iter__(self):
        if self._iter is None:
            self._iter = self._chunks()
        return self._iter

    def __next__(self):
        return next(iter(self))

    def wait(self, timeout: float | None = None):
        """Block until whoever iterates the stream (e.g. a live player) is done;
        returns ``generation`` (None on a timeout)."""
        if self._iter is None:
            raise RuntimeError(
                "nothing is consuming this stream yet: iterate it, or display it (a live player)"
            )
        self._finished.wait(timeout)
        return self.generation

    def _ipython_display_(self):
        from .players import live

        live(self)._ipython_display_()

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
        return (self.prompt_frames or 0) * int(self.s.hop_length) + round(
            self.duration * self.sample_rate
        )

    def _emit(self, audio, final) -> Chunk:
        rate, left = self._rate()
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

    def _next_chunk(self):
        """Block until the next chunk is ready; None when the stream is over."""
        d = self.decoder
        while True:
            if self.generation is not None:
                return None
            try:
                kind, value = self._queue.get(timeout=0.05)
            except queue.Empty:
                continue
            if kind == "frames":
                d.push(value)
                if self._final_sent:
                    continue
                if d.frames >= self._total_frames():  # complete: no need to wait for generate()
                    tail = d.pull(final=True)
                    self._final_sent = True
                    return self._emit(
                        tail[..., : max(0, self._expected_samples() - self._samples_out)], True
                    )
                if d.ready() - d.emitted >= self.chunk_frames:
                    return self._emit(d.pull(), final=False)
                continue
            if kind == "error":
                self.error = value
                raise value
            g = value  # "done"
            self.generation = g
            self.interrupted = g.interrupted
            if self._final_sent:
                return None
            self._final_sent = True
            tail = d.pull(final=True)
            if not g.interrupted:
                tail = tail[..., : max(0, self._expected_samples() - self._samples_out)]
            return self._emit(tail, final=True)

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


def stream(s, prompts=None, *, chunk=1.0, **kwargs) -> Stream:
    """Generate and hear the music as it is made; see :meth:`MusicGen.stream`."""
    return Stream(s, prompts, chunk=chunk, **kwargs)


# --------------------------------------------------------------------------- when to play
def remaining_seconds(times, total: int) -> float:
    """Seconds until step ``total``, if each step keeps slowing down as it has so far.

    A step attends over every earlier position, so its time grows with the
    position: a 30 s clip's last steps are slower than its first. Fitting the
    elapsed time as a quadratic in the steps done (a step time linear in the
    position) and extending it to ``total`` covers that; the average rate alone
    underestimates the wait, and a player that trusts it runs dry near the end.

    Parameters
    ----------
    times : list of (int, float)
        ``(steps done, time in seconds)`` at each step so far.
    total : int
        The step count at the end.

    Returns
    -------
    float
        Estimated seconds from the last sample to step ``total``; 0 with fewer
        than 8 samples (not enough to fit), or when the fit does not rise.

    Examples
    --------
    >>> times = [(d, 0.02 * d + 1e-5 * d * d) for d in range(1, 101)]  # steps slow down
    >>> round(remaining_seconds(times, 200), 2)  # the flat rate (0.021 s a step) says 2.1
    2.3
    """
    if len(times) < 8:
        return 0.0
    d = np.array([t[0] for t in times], dtype=np.float64)
    t = np.array([t[1] for t in times], dtype=np.float64)
    if d[-1] <= d[0] or total <= d[-1]:
        return 0.0
    d0, scale = d[0], d[-1] - d[0]
    x = (d - d0) / scale  # well conditioned whatever the step counts
    c2, c1, _ = np.polyfit(x, t, 2)
    if c2 < 0:  # speeding up (a warm-up): a straight line is the safe reading
        c2, c1 = 0.0, np.polyfit(x, t, 1)[0]
    end, now = (total - d0) / scale, x[-1]
    return max(0.0, float(c2 * (end**2 - now**2) + c1 * (end - now)))


def should_start(*, pos, received, total, remaining, piece, final=False, margin=START_MARGIN):
    """The live player's start rule: may playback (re)start at clip position ``pos`` now?

    With production at a steady rate, the next chunk and the last chunk are the
    ones that could arrive too late. Start when both are covered with a margin:

    * the buffered audio ahead of ``pos`` outlasts the wait for one more chunk,
      ``received - pos >= margin * piece / rate``, where ``rate`` is audio seconds
      made per second, ``(total - received) / remaining``, and holds at least
      ``1.5 * piece`` (so that the rate is measured over more than one chunk);
    * the audio before the last chunk outlasts the remaining generation time,
      ``total - piece - pos >= margin * remaining``.

    Parameters
    ----------
    pos : float
        Where playback would start, in seconds of the clip.
    received : float
        Seconds of audio received (from the clip's start, without holes).
    total : float
        Seconds the clip will hold.
    remaining : float
        Estimated seconds until the last chunk arrives (from the measured steps/s).
    piece : float
        The longest a chunk can be, in seconds.
    final : bool
        Whether the last chunk has arrived (then it always may start).
    margin : float
        Safety factor on the estimates.

    Examples
    --------
    >>> should_start(pos=0, received=1, total=10, remaining=12, piece=1.1)
    False
    >>> should_start(pos=0, received=3, total=10, remaining=7, piece=1.1)
    True
    """
    if final:
        return True
    if received <= pos or not math.isfinite(remaining):
        return False
    if remaining <= 0:
        return received - pos >= piece
    rate = max(total - received, 1e-9) / remaining
    ahead = received - pos
    return (
        ahead >= max(margin * piece / rate, 1.5 * piece)
        and total - piece - pos >= margin * remaining
    )


def simulate(chunks, *, piece, margin=START_MARGIN, latency=0.0, tick=0.01) -> dict:
    """Replay a stream's chunk arrivals through the live player's logic.

    Parameters
    ----------
    chunks : list of Chunk
        With ``start``, ``duration``, ``arrived``, ``remaining``, ``final``, ``total``
        (``st.chunks`` after a stream).
    piece : float
        As in :func:`should_start`.
    latency : float
        Seconds added to every arrival (delivery to the browser).
    tick : float
        How often the player checks its rule, in seconds.

    Returns
    -------
    dict
        ``first_audio`` (arrival of the first chunk), ``gapless_start`` (the
        earliest start at which continuous playback never runs dry:
        ``max(arrived - start)``), ``start`` (when the player's rule started
        playback), ``stalls`` (how often it ran dry), ``stall_s`` (seconds
        spent waiting after a stall) and ``end`` (when playback ended).

    Examples
    --------
    >>> from musicgen_nb.streaming import Chunk
    >>> import numpy as np
    >>> cs = [Chunk(np.zeros((1, 1, 100)), i, i == 3, i, 100, arrived=0.5 + 1.5 * i,
    ...             remaining=1.5 * (3 - i), total=4.0) for i in range(4)]
    >>> r = simulate(cs, piece=1.0)
    >>> r["gapless_start"], r["stalls"]
    (2.0, 0)
    """
    cs = sorted(chunks, key=lambda c: c.start)
    if not cs:
        return dict(first_audio=math.nan, gapless_start=math.nan, start=math.nan, stalls=0,
                    stall_s=0.0, end=math.nan)  # fmt: skip
    arr = [c.arrived + latency for c in cs]
    gapless = max(a - c.start for a, c in zip(arr, cs, strict=True))
    total = cs[0].total
    t, pos, playing, stalls, stall_s, t_play = 0.0, 0.0, False, 0, 0.0, 0.0
    started = None
    end_clip = cs[-1].end
    stalled_at = None
    while True:
        have = [c for c, a in zip(cs, arr, strict=True) if a <= t + 1e-12]
        received = 0.0
        for c in have:  # contiguous from the start
            if abs(c.start - received) < 1e-9:
                received = c.end
        last = max(have, key=lambda c: c.arrived) if have else None
        final = any(c.final for c in have)
        if playing:
            pos_now = pos + (t - t_play)
            if pos_now >= end_clip - 1e-9:
                return dict(first_audio=arr[0], gapless_start=gapless, start=started,
                            stalls=stalls, stall_s=stall_s, end=t_play + (end_clip - pos))  # fmt: skip
            if pos_now >= received - 1e-9:  # ran dry
                playing, pos, stalls, stalled_at = False, received, stalls + 1, t
        if not playing and last is not None:
            left = max(0.0, last.remaining - (t - (last.arrived + latency)))
            if should_start(pos=pos, received=received, total=total, remaining=left,
                            piece=piece, final=final, margin=margin):  # fmt: skip
                playing, t_play = True, t
                if started is None:
                    started = t
                if stalled_at is not None:
                    stall_s += t - stalled_at
                    stalled_at = None
        t += tick
        if t > arr[-1] + end_clip + 60:
            raise RuntimeError("simulate: playback never ended")
