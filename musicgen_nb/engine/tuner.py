"""The thread tuner's decisions: a thread count from step times and from what other processes use.

On a 2-core machine, an int8 step with 2 threads ran 59.8 steps/s alone but 15.8
beside one busy process (its OpenMP team waits for the thread that lost its core
at every barrier), while 1 thread ran 40.0 and 36.9. Measured again here, one
2-thread step beside a busy process took 0.6-2.7 s against 0.04 s at 1 thread:
a single step at the wrong count costs more than a dozen at the right one. So
:class:`ThreadTuner` uses two inputs:

* **the crowd**, the cores other processes used during the last steps
  (:class:`~musicgen_nb.engine.cores.CoreMeter`, read from the kernel): it never
  runs more threads than the cores left free ("cap"), starts a new tuner with
  a two-step look at 1 thread to read the crowd before it uses more, yields
  at once when a process takes a core, and probes up as soon as one frees;
* **step times**, a median per window of steps: it settles on a count ("home")
  and moves when a neighbour (one thread fewer or more, within the cap) is
  clearly faster. Home's windows getting slower, two in a row, start a probe
  of fewer threads (contention the counters do not show); a home step far
  slower than home's figure ends the window at once; a probe whose step is far
  slower ends at once.

Without counters (not Linux) it decides from step times alone, and probes on a
schedule that doubles while nothing changes. Its decisions depend only on the
figures it is fed, so tests feed them.
"""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ThreadTuner"]


class ThreadTuner:
    """Choose the intra-op thread count from step times and the crowd on the cores.

    Parameters
    ----------
    most : int
        The largest count it uses (the count the process had).
    apply : callable, optional
        Called with each new count (the engine reads :attr:`count` before each step instead).
    window : int
        Steps per measurement (their median is the figure).
    probe_every : int
        Steps between scheduled probes at first (time-only mode); doubles after
        each probe that keeps home, up to 8 times this, and comes back on a change.
    slower : float
        Home's steps this much slower than before (0.15: 15 %), two windows in a
        row, start a probe of fewer threads.
    margin : float
        A neighbour must be this much faster than home to become home.
    abort : float
        A probed step this many times slower than home ends the probe at once; a
        home step this much slower ends the window at once.
    cpus : int, optional
        The CPUs this process may use (default ``most``): the cap is these minus the crowd.
    look : int
        Steps a new tuner first runs on 1 thread to read the crowd (0: none; the
        engine asks for 2 where it can feed crowd figures).
    crowd : float
        Cores used by others that take one core away (0.5: half a core or more).
    resolution : float
        Seconds of steps a crowd reading needs (the kernel counts in 10 ms ticks).

    Examples
    --------
    >>> t = ThreadTuner(2, window=2)
    >>> busy = {2: 0.063, 1: 0.027}  # seconds a step beside a busy process; no crowd figures
    >>> for _ in range(6):
    ...     count = t.observe(busy[t.count])
    >>> t.decisions, t.home
    ([('probe', 1), ('move', 1)], 1)
    >>> t = ThreadTuner(2, look=2)  # with crowd figures: the CPU-seconds others used in the step
    >>> t.count, t.observe(0.027, others=0.027), t.observe(0.027, others=0.027), t.decisions
    (1, 1, 1, [('look', 1)])
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
        cpus: int | None = None,
        look: int = 0,
        crowd: float = 0.5,
        resolution: float = 0.05,
    ) -> None:
        if not isinstance(most, int) or most < 1:
            raise ValueError(f"most must be an int >= 1, got {most!r}")
        self.most, self.window, self.base = most, window, probe_every
        self.slower, self.margin, self.abort = slower, margin, abort
        self.cpus, self.look, self.crowd = most if cpus is None else cpus, look, crowd
        self.resolution = resolution
        self.apply = (lambda n: None) if apply is None else apply
        self.home = self.count = most
        self.cap = most  # the most threads the crowd leaves room for
        self.every = probe_every
        self.since = 0  # steps at home since the last probe
        self.times: list[float] = []
        self.others: float | None = None  # CPU-seconds others used in the steps not yet read
        self.wall = 0.0  # the wall time of those steps
        self.figure: dict[int, float] = {}  # count -> latest median step time
        self.last: float | None = None  # home's previous figure
        self.down = True  # the direction of the next probe
        self.strikes = 0  # windows in a row slower than home's last figure
        self.decisions: list[tuple[str, int]] = []
        self.looking = most > 1 and look > 0  # the first steps run on 1 thread, reading the crowd
        if self.looking:
            self.count = 1

    def begin(self) -> None:
        """A new window: forget the previous window's baseline (its shapes and speed differ).

        Examples
        --------
        >>> t = ThreadTuner(2, window=1)
        >>> _ = t.observe(0.01); t.begin(); t.last is None and t.strikes == 0
        True
        """
        self.times, self.last, self.strikes = [], None, 0

    def observe(self, seconds: float, others: float | None = None) -> int:
        """Record one step; return the thread count for the next step.

        Parameters
        ----------
        seconds : float
            The step's wall time.
        others : float, optional
            CPU-seconds other processes used on this process's CPUs during the step.

        Examples
        --------
        >>> t = ThreadTuner(1)
        >>> t.observe(0.02)  # one core: always 1
        1
        """
        self.times.append(float(seconds))
        if others is not None:
            self.others = (self.others or 0.0) + float(others)
            self.wall += float(seconds)
        if self.looking:
            if len(self.times) >= self.look and (others is None or self.wall >= self.resolution):
                self._end_look()
            return self.count
        home = self.figure.get(self.home)
        far = home is not None and seconds > self.abort * home
        if self.count != self.home and far:
            self._abort()
            return self.count
        if len(self.times) < self.window and not (far and self.count == self.home):
            return self.count
        figure, crowd = statistics.median(self.times), self._crowd()
        self.times = []
        if crowd is not None and self._fit(crowd, figure):
            return self.count
        if self.count != self.home:
            self._judge(figure)
        else:
            self._settled(figure, crowd)
        return self.count

    def _end_look(self) -> None:
        """The look is over: home is the most threads the crowd leaves room for."""
        self.looking = False
        crowd = self._crowd()
        self.times = []
        self.cap = self._cap_for(crowd or 0.0, self.most)
        self.home = self.cap
        self._set(self.home, "look")

    def _crowd(self) -> float | None:
        """Cores others used during the steps since the last reading; None: no figures yet.

        The kernel counts in ticks (10 ms), so a reading waits for ``resolution``
        seconds of steps: a few steps of a large model, more of a small one.
        """
        if self.others is None or self.wall < self.resolution:
            return None
        crowd = self.others / self.wall
        self.others, self.wall = None, 0.0
        return crowd

    def _cap_for(self, crowd: float, before: int) -> int:
        """The cap for ``crowd``; it rises only once the crowd is a quarter core below the line."""
        cap = max(1, min(self.most, math.floor(self.cpus - crowd + self.crowd)))
        if cap > before:
            cap = max(before, min(cap, math.floor(self.cpus - crowd + self.crowd / 2)))
        return cap

    def _fit(self, crowd: float, figure: float) -> bool:
        """Keep within the cap: yield at once, or probe up when a core freed. True: acted."""
        before, self.cap = self.cap, self._cap_for(crowd, self.cap)
        if self.count > self.cap:
            if self.count == self.home:
                self.figure[self.home] = figure
            self.home, self.every, self.last, self.strikes = self.cap, self.base, None, 0
            self._set(self.cap, "yield")
            return True
        if self.cap > before and self.count == self.home < self.cap:
            self.figure[self.home], self.last = figure, figure
            self._set(self.home + 1, "probe")
            return True
        return False

    def _abort(self) -> None:
        """A probe far slower than home: back home now (it costs more than it can tell)."""
        self.times = []
        self.every = min(self.every * 2, 8 * self.base)
        self._set(self.home, "abort")

    def _settled(self, figure: float, crowd: float | None) -> None:
        """A window at home: probe when it got slower, or when the schedule says."""
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
        unknown = [c for c in (self.home - 1, self.home + 1) if 0 < c <= self.cap]
        unknown = [c for c in unknown if c not in self.figure]
        if unknown:  # never measured: measure it now (the first windows of a session)
            self._set(unknown[0], "probe")
            return
        target = self._target(changed, crowd)
        if target is not None:
            self._set(target, "probe")

    def _target(self, changed: bool, crowd: float | None) -> int | None:
        """The count to probe after a window at home, or None."""
        if not (changed or self.since >= self.every):
            return None
        if changed:  # try fewer threads first
            self.every, self.down, self.strikes = self.base, True, 0
            self.last = self.figure[self.home]
        elif crowd is not None:  # the counters tell when a core frees: only probe up on schedule
            self.since, self.every = 0, min(self.every * 2, 8 * self.base)
            return self.home + 1 if self.home < self.cap else None
        if self.home in (1, self.most):
            target = 2 if self.home == 1 else self.home - 1
        else:
            target = self.home - 1 if self.down else self.home + 1
        if not changed:
            self.down = not self.down
        return target if target <= self.cap else None

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
