"""The live player: hear a :class:`~musicgen_nb.streaming.Stream` while it is generated.

An anywidget whose front end lives in ``widgets/live_player.js`` and
``widgets/live_player.css``. Each chunk goes to the browser as a custom message
with its samples in a binary buffer (float32, channel after channel; no base64).
The front end schedules the chunks back to back with the Web Audio API, starts
when :func:`musicgen_nb.streaming.should_start` says the rest will arrive in
time, shows "buffering" (and counts a stall) if it ever runs dry, and when the
stream ends it holds the final one-pass audio (compressed, as
:func:`musicgen_nb.players.player` embeds it) for replay and download.
"""

from __future__ import annotations

import itertools
import os
import threading
import weakref
from typing import TYPE_CHECKING

import anywidget
import numpy as np
import traitlets

from .assets import asset

if TYPE_CHECKING:
    from typing import Any

    from ..generation import Generation
    from ..streaming import Chunk, Stream

__all__ = ["LivePlayer", "live", "render_stream"]

_UIDS = itertools.count(1)
# stream -> weakref to its live player: one player per stream (two would pull chunks from one
# iterator in two threads). Weak both ways, so neither keeps the other alive.
_PLAYERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _player_of(stream: Stream) -> LivePlayer | None:
    ref = _PLAYERS.get(stream)
    return None if ref is None else ref()


def _claim(stream: Stream, player: LivePlayer, item: int) -> None:
    """Refuse an item outside the stream's batch, or a stream that has another live player."""
    if item >= stream.batch:
        raise ValueError(
            f"item must be an int in [0, {stream.batch - 1}] (the stream's batch has "
            f"{stream.batch} item{'s' if stream.batch > 1 else ''}), got {item}"
        )
    other = _player_of(stream)
    if other is not None and other is not player:
        raise ValueError(
            "stream already has a live player (one player per stream): display that one "
            "(displaying the stream again shows it), or make a new stream with s.stream(...)"
        )
    _PLAYERS[stream] = weakref.ref(player)


class LivePlayer(anywidget.AnyWidget):
    """Play a stream as it is generated. Build one with :func:`musicgen_nb.players.live`.

    Displaying the player starts the stream in a background thread (the cell
    returns at once; ``st.wait()`` gives the Generation). :meth:`play` does the
    same in the calling thread.

    Attributes
    ----------
    stalls : int
        Times the browser ran dry (sent back by the front end).
    started_after : float
        Seconds from the first chunk to the start of playback in the browser (-1: not yet).
    front_state : str
        The front end's state: waiting, buffering, playing, done or stopped.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> from musicgen_nb.players.live_player import LivePlayer
    >>> st = mg.load("tiny").stream("jazz", duration=1.0, seed=0, chunk=0.5)
    >>> p = LivePlayer(st)
    >>> g = p.play()
    >>> p.sent, p.final_url.startswith("data:audio/"), g.audio.shape
    (2, True, (1, 1, 32000))
    >>> st = mg.load("tiny").stream("jazz", duration=1.0, seed=1, chunk=0.5)
    >>> p.reset(st)  # by hand, what play() does: reset, feed every chunk, finish
    >>> for chunk in st:
    ...     p.feed(chunk)
    >>> p.finish(st.generation)
    >>> p.sent, p.final_name.startswith("jazz_seed1.")
    (2, True)
    >>> thread = p.start(mg.load("tiny").stream("jazz", duration=0.5, seed=2, chunk=0.5))
    >>> p.wait().audio.shape  # start() plays in a background thread, as displaying it does
    (1, 1, 16000)
    """

    _esm = asset("live_player.js")
    _css = asset("live_player.css")

    uid = traitlets.Unicode("").tag(sync=True)
    sample_rate = traitlets.Int(32000).tag(sync=True)
    total = traitlets.Float(0.0).tag(sync=True)
    piece = traitlets.Float(1.0).tag(sync=True)
    margin = traitlets.Float(0.0).tag(sync=True)  # START_MARGIN, set in __init__
    label = traitlets.Unicode("").tag(sync=True)
    steps_per_s = traitlets.Float(0.0).tag(sync=True)
    running = traitlets.Bool(False).tag(sync=True)
    stopped = traitlets.Bool(False).tag(sync=True)
    final_url = traitlets.Unicode("").tag(sync=True)
    final_name = traitlets.Unicode("").tag(sync=True)
    # Written by the front end.
    stalls = traitlets.Int(0).tag(sync=True)
    started_after = traitlets.Float(-1.0).tag(sync=True)
    front_state = traitlets.Unicode("").tag(sync=True)

    #: Seconds of final audio embedded for replay and download.
    max_seconds = 120.0

    def __init__(
        self, stream: Stream | None = None, *, item: int = 0, show_final: bool = True, **kwargs: Any
    ) -> None:
        # streaming (and with it torch) loads with the first player, not with musicgen_nb.players.
        from ..streaming import START_MARGIN

        if isinstance(item, bool) or not isinstance(item, (int, np.integer)) or item < 0:
            raise ValueError(f"item must be an int >= 0 (a batch item), got {item!r}")
        if stream is not None:  # checked before the widget (and its comm) exists
            _claim(stream, self, int(item))
        kwargs.setdefault("margin", START_MARGIN)
        # The uid must be in the state the front end is created with (initialize reads it).
        super().__init__(uid=f"mgnb-live-{next(_UIDS)}-{os.getpid()}", **kwargs)
        self.stream = stream
        self.item = int(item)
        self.show_final = show_final
        self.sent = 0
        self._messages: list[tuple[dict, list]] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.on_msg(self._on_msg)

    # -- messages from the front end
    def _on_msg(self, _widget, content, _buffers) -> None:
        kind = (content or {}).get("type")
        if kind == "ready":  # a new front end: send what it may have missed
            with self._lock:
                for msg, buffers in list(self._messages):
                    self.send(msg, buffers)
        elif kind == "stop" and self.stream is not None:
            self.stream.stop()

    # -- the kernel side
    def reset(self, stream: Stream | None = None, *, label: str | None = None) -> None:
        """Forget the last stream (and silence the browser) before a new one."""
        if stream is not None:
            _claim(stream, self, self.item)
        with self._lock:
            self._messages = []
            self.send({"type": "reset"})
        if stream is not None:
            if self.stream is not None and self.stream is not stream:
                _PLAYERS.pop(self.stream, None)  # the old stream may get a player again
            self.stream = stream
        st = self.stream
        self.sent = 0
        with self.hold_sync():
            self.final_url = ""
            self.stopped = False
            self.steps_per_s = 0.0
            if st is not None:
                self.sample_rate = int(st.sample_rate)
                self.total = float(st.duration)
                self.piece = st.chunk + st.decoder.hold / st.s.frame_rate
                if label is None:
                    prompts = st.prompts if isinstance(st.prompts, list) else [st.prompts]
                    text = prompts[min(self.item, len(prompts) - 1)]
                    label = text or "(unconditional)"
            self.label = label or ""

    def feed(self, chunk: Chunk) -> None:
        """Send one :class:`~musicgen_nb.streaming.Chunk` to the browser (binary buffer)."""
        audio = np.asarray(chunk.audio, dtype=np.float32)
        if audio.ndim != 3 or self.item >= audio.shape[0]:
            raise ValueError(
                f"chunk.audio must be [batch, channels, n] with item {self.item} in it, "
                f"got shape {audio.shape}"
            )
        pcm = np.ascontiguousarray(audio[self.item], dtype="<f4")
        msg = dict(
            type="chunk", index=int(chunk.index), offset=int(round(chunk.start * chunk.sample_rate)),
            samples=int(pcm.shape[-1]), channels=int(pcm.shape[0]), final=bool(chunk.final),
            remaining=float(chunk.remaining) if np.isfinite(chunk.remaining) else 1e9,
            steps_per_s=float(chunk.steps_per_s),
        )  # fmt: skip
        with self._lock:
            self._messages.append((msg, [pcm.tobytes()]))
            self.send(msg, [pcm.tobytes()])
        self.sent += 1
        with self.hold_sync():
            self.total = float(chunk.total)
            self.steps_per_s = float(chunk.steps_per_s)

    def finish(self, generation: Generation | None) -> None:
        """Hand over the final one-pass audio (for replay and download)."""
        from .static import player

        self.stopped = bool(generation.interrupted)
        if not self.show_final or generation.audio.shape[-1] == 0:
            self.final_url = "data:,"
            return
        item = min(self.item, len(generation) - 1)
        p = player(generation, item=item, max_seconds=self.max_seconds)
        stem = "".join(ch if ch.isalnum() else "-" for ch in (self.label or "musicgen"))[:40]
        seed = generation.provenance(item)["seed"]  # this item's own seed
        self.final_name = f"{stem.strip('-') or 'musicgen'}_seed{seed}.{p.fmt}"
        self.final_url = p.data_uri

    def play(self, stream: Stream | None = None) -> Generation | None:
        """Run the stream in this thread, sending every chunk; returns its Generation."""
        if stream is not None or self.sent:
            self.reset(stream)
        elif self.stream is not None and not self.total:
            self.reset()
        st = self.stream
        if st is None:
            raise ValueError("stream is None: pass one, e.g. player.play(s.stream('jazz'))")
        self.running = True
        try:
            for chunk in st:
                self.feed(chunk)
        finally:
            self.running = False
        if st.generation is not None:
            self.finish(st.generation)
        return st.generation

    def start(self, stream: Stream | None = None) -> threading.Thread:
        """Run :meth:`play` in a background thread (what displaying the player does)."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("this player is already playing a stream")
        if stream is not None:  # refused here, not in the thread
            _claim(stream, self, self.item)
        self._thread = threading.Thread(target=self.play, args=(stream,), daemon=True)
        st = stream if stream is not None else self.stream
        if st is not None:  # st.wait() in the caller's thread now waits for this one
            st.consumer = self._thread
        try:
            self._thread.start()
        except BaseException:  # (no thread could be started): wait() must not wait for it
            if st is not None and st.consumer is self._thread:
                st.consumer = None
            self._thread = None
            raise
        return self._thread

    def wait(self, timeout: float | None = None) -> Generation | None:
        """Block until the background stream ends; returns its Generation."""
        if self._thread is not None:
            self._thread.join(timeout)
        return None if self.stream is None else self.stream.generation

    def _ipython_display_(self):
        from IPython.display import display

        bundle = self._repr_mimebundle_()
        data, meta = bundle if isinstance(bundle, tuple) else (bundle, {})
        display(data, metadata=meta, raw=True)
        if self.stream is not None and self._thread is None and not self.sent:
            self.start()


def live(stream: Stream, *, item: int = 0) -> LivePlayer:
    """A live player for a stream: hear it while it is generated.

    Displaying it starts the stream in the background and plays the chunks back
    to back in the browser (Web Audio). Playback starts once the buffered audio
    will outlast the remaining generation time; if it ever runs dry the player
    says "buffering" and counts a stall. At the end it holds the final one-pass
    audio for replay and download. Its Stop button stops generation and keeps
    what was made. A stream displayed on its own renders this player.

    Parameters
    ----------
    stream : musicgen_nb.streaming.Stream
        From :meth:`MusicGen.stream`, not iterated yet, with no live player yet (one
        player per stream; displaying the stream again shows its player again).
    item : int
        Which batch item to play, in ``[0, batch - 1]``.

    Returns
    -------
    musicgen_nb.players.live_player.LivePlayer

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> st = mg.load("tiny").stream("jazz", duration=1.0, seed=0)
    >>> p = mg.players.live(st)
    >>> g = p.play()             # in a notebook: just display p (or st)
    >>> p.stalls, g.audio.shape
    (0, (1, 1, 32000))
    """
    from ..streaming import Stream

    if not isinstance(stream, Stream):
        raise TypeError(
            f"stream must be a Stream from MusicGen.stream(...), got {type(stream).__name__}"
        )
    if stream.started and _player_of(stream) is None:  # (with a player: _claim says so)
        raise ValueError("stream was already iterated; make a new one with s.stream(...)")
    return LivePlayer(stream, item=item)


def render_stream(stream: Stream) -> LivePlayer:
    """What a :class:`~musicgen_nb.streaming.Stream` shows in Jupyter: its live player.

    The top-level package registers this as the ``"stream"`` renderer of
    :mod:`musicgen_nb._util.display`; ``Stream._ipython_display_`` displays the
    player it returns (which starts the stream), so the core never imports widgets.
    A stream displayed again shows the same player (it is not played twice).

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> st = mg.load("tiny").stream("jazz", duration=0.5, seed=0)
    >>> p = render_stream(st)
    >>> type(p).__name__, p.stream is st, p.sent, render_stream(st) is p
    ('LivePlayer', True, 0, True)
    """
    from ..streaming import Stream

    if isinstance(stream, Stream):
        player = _player_of(stream)
        if player is not None:
            return player
    return live(stream)
