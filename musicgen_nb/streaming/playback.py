"""When to play: the live player's start rule, the remaining-time estimate and a replay.

A stream's chunks arrive while the clip is still being made. The player must
not start so early that it runs dry: :func:`remaining_seconds` estimates the
time until the last chunk (steps slow down as the cache grows),
:func:`should_start` decides from it whether playback may (re)start, and
:func:`simulate` replays a stream's arrivals through that rule offline.

Examples
--------
>>> should_start(pos=0, received=3, total=10, remaining=7, piece=1.1)
True
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .chunk import Chunk

__all__ = ["START_MARGIN", "remaining_seconds", "should_start", "simulate"]

#: Safety margin of the player's start rule (see :func:`should_start`).
START_MARGIN = 1.15


def remaining_seconds(times: list[tuple[int, float]], total: int) -> float:
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


def should_start(
    *,
    pos: float,
    received: float,
    total: float,
    remaining: float,
    piece: float,
    final: bool = False,
    margin: float = START_MARGIN,
) -> bool:
    """The live player's start rule: may playback (re)start at clip position ``pos`` now.

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


def _received(have) -> float:
    """Seconds of audio received, contiguous from the clip's start."""
    received = 0.0
    for c in have:
        if abs(c.start - received) < 1e-9:
            received = c.end
    return received


def simulate(
    chunks: list[Chunk],
    *,
    piece: float,
    margin: float = START_MARGIN,
    latency: float = 0.0,
    tick: float = 0.01,
) -> dict:
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
    started, stalls, stall_s, end = _play(cs, arr, piece=piece, margin=margin, latency=latency,
                                          tick=tick)  # fmt: skip
    return dict(first_audio=arr[0], gapless_start=gapless, start=started, stalls=stalls,
                stall_s=stall_s, end=end)  # fmt: skip


def _play(cs, arr, *, piece, margin, latency, tick) -> tuple:
    """Tick through the arrivals ``arr`` of the chunks ``cs`` (sorted by start) as the player does.

    Returns (start, stalls, seconds stalled, end of playback).
    """
    total = cs[0].total
    t, pos, playing, stalls, stall_s, t_play = 0.0, 0.0, False, 0, 0.0, 0.0
    started = None
    end_clip = cs[-1].end
    stalled_at = None
    while True:
        have = [c for c, a in zip(cs, arr, strict=True) if a <= t + 1e-12]
        received = _received(have)
        last = max(have, key=lambda c: c.arrived) if have else None
        final = any(c.final for c in have)
        if playing:
            pos_now = pos + (t - t_play)
            if pos_now >= end_clip - 1e-9:
                return started, stalls, stall_s, t_play + (end_clip - pos)
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
