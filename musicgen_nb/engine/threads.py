"""CPU threads that adapt: keep the decode loop near its fastest thread count when cores are busy.

On a 2-core machine, an int8 step with 2 threads ran 59.8 steps/s alone but 15.8
beside one busy process (its OpenMP team waits for the thread that lost its core
at every barrier), while 1 thread ran 40.0 and 36.9. So the best count depends on
what else runs, and changes while a clip decodes.

:class:`ThreadTuner` times the steps (a median per window of steps) and climbs:
it settles on a count ("home"), and probes a neighbour (one thread fewer or more)
for one window when home's steps get slower than they were (contention came) or,
less and less often while nothing changes, on a schedule (contention went); a probe
whose step is far slower than home ends at once. It moves home
when the neighbour is clearly faster. Its decisions depend only on the step times
it is fed, so tests feed it times. :func:`tuner_for` keeps one per decoder and
thread; the engine's CPU step feeds it (``MUSICGEN_NB_ADAPTIVE_THREADS=0`` turns it off).
"""

from __future__ import annotations

import statistics
import threading
import weakref
from typing import TYPE_CHECKING

import torch

from .._util.env import env_switch

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ThreadTuner", "tuner_for", "forget", "SWITCH"]

#: The environment variable that turns the tuner off (``0/false/off/no``).
SWITCH = "MUSICGEN_NB_ADAPTIVE_THREADS"
_TUNERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class ThreadTuner:
    """Choose the intra-op thread count from measured step times.

    Parameters
    ----------
    most : int
        The largest count it uses (the count the process had).
    apply : callable, optional
        Called with each new count (the engine reads :attr:`count` before each step instead).
    window : int
        Steps per measurement (their median is the figure).
    probe_every : int
        Steps between scheduled probes at first; doubles after each probe that
        keeps home, up to 8 times this, and comes back on a change.
    slower : float
        Home's steps this much slower than before (0.15: 15 %), two windows in a
        row, start a probe.
    margin : float
        A neighbour must be this much faster than home to become home.
    abort : float
        A probed step this many times slower than home ends the probe at once
        (a probe of 2 threads beside a busy process cost 8 steps of 4 times the time).

    Examples
    --------
    >>> t = ThreadTuner(2, window=2)
    >>> busy = {2: 0.063, 1: 0.027}  # seconds a step, beside a busy process
    >>> for _ in range(6):
    ...     count = t.observe(busy[t.count])
    >>> t.decisions, t.home
    ([('probe', 1), ('move', 1)], 1)
    """

    def __init__(
        self,
        most: int,
        apply: Callable[[int], None] | None = None,
        window: int = 8,
        probe_every: int = 128,
        slower: float = 0.15,
        margin: float = 0.05,
        abort: float = 2.0,
    ) -> None:
        if not isinstance(most, int) or most < 1:
            raise ValueError(f"most must be an int >= 1, got {most!r}")
        self.most, self.window, self.base = most, window, probe_every
        self.slower, self.margin, self.abort = slower, margin, abort
        self.apply = (lambda n: None) if apply is None else apply
        self.home = self.count = most
        self.every = probe_every
        self.since = 0  # steps at home since the last probe
        self.times: list[float] = []
        self.figure: dict[int, float] = {}  # count -> latest median step time
        self.last: float | None = None  # home's previous figure
        self.down = True  # the direction of the next probe
        self.strikes = 0  # windows in a row slower than home's last figure
        self.decisions: list[tuple[str, int]] = []

    def observe(self, seconds: float) -> int:
        """Record one step's time; return the thread count for the next step."""
        self.times.append(float(seconds))
        home = self.figure.get(self.home)
        if self.count != self.home and home is not None and seconds > self.abort * home:
            self.times = []  # a probe this slow costs more than it can tell: back home now
            self.every = min(self.every * 2, 8 * self.base)
            self._set(self.home, "abort")
            return self.count
        if len(self.times) < self.window:
            return self.count
        figure = statistics.median(self.times)
        self.times = []
        if self.count != self.home:
            self._judge(figure)
        else:
            self._settled(figure)
        return self.count

    def _settled(self, figure: float) -> None:
        """A window at home: probe when it got slower (or faster), or when the schedule says."""
        prev = self.last
        slower = prev is not None and figure > (1 + self.slower) * prev  # cores got busy?
        self.strikes = self.strikes + 1 if slower else 0
        changed = self.strikes >= 2  # two windows in a row: not one preempted step
        if not slower:
            self.last = figure
        self.figure[self.home] = figure
        self.since += self.window
        if self.most == 1:
            return
        unknown = [c for c in (self.home - 1, self.home + 1) if 0 < c <= self.most]
        unknown = [c for c in unknown if c not in self.figure]
        if unknown:  # never measured: measure it now (the first windows of a session)
            self._set(unknown[0], "probe")
            return
        if not (changed or self.since >= self.every):
            return
        if changed:  # try fewer threads first
            self.every, self.down, self.strikes, self.last = self.base, True, 0, figure
        if self.home in (1, self.most):
            target = 2 if self.home == 1 else self.home - 1
        else:
            target = self.home - 1 if self.down else self.home + 1
        if not changed:
            self.down = not self.down
        self._set(target, "probe")

    def _judge(self, figure: float) -> None:
        """A window at the probed count: move home there if it was clearly faster."""
        self.figure[self.count] = figure
        home_figure = self.figure[self.home]
        self.since = 0
        if figure < home_figure * (1 - self.margin):
            self.home, self.every = self.count, self.base
            self.last = figure
            self.decisions.append(("move", self.count))
            return
        self.every = min(self.every * 2, 8 * self.base)
        self._set(self.home, "stay")

    def _set(self, count: int, why: str) -> None:
        self.count = count
        self.decisions.append((why, count))
        self.apply(count)


def tuner_for(owner: object, device: torch.device) -> ThreadTuner | None:
    """The tuner of ``owner`` (a decoder module) in this thread, on the CPU; None elsewhere or off.

    Examples
    --------
    >>> import torch
    >>> owner = torch.nn.Linear(1, 1)
    >>> tuner_for(owner, torch.device("cpu")) is tuner_for(owner, torch.device("cpu"))
    True
    """
    if device.type != "cpu" or not env_switch(SWITCH, default=True):
        return None
    by_thread = _TUNERS.setdefault(owner, {})
    ident = threading.get_ident()
    if ident not in by_thread:
        by_thread[ident] = ThreadTuner(torch.get_num_threads())
    return by_thread[ident]


def forget(owner: object) -> None:
    """Drop the tuners of ``owner`` (every thread): the next decoder starts from the most threads.

    Examples
    --------
    >>> import torch
    >>> owner = torch.nn.Linear(1, 1)
    >>> first = tuner_for(owner, torch.device("cpu"))
    >>> forget(owner)
    >>> tuner_for(owner, torch.device("cpu")) is first
    False
    """
    _TUNERS.pop(owner, None)
