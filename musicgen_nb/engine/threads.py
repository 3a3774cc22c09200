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
it is fed, so tests feed it times. :func:`tuner_for` keeps one per decoder module;
the engine's CPU step feeds it (``MUSICGEN_NB_ADAPTIVE_THREADS=0`` turns it off).

``torch.set_num_threads`` is process-wide, so the decodes running now are counted
(:func:`enter`, :func:`leave`): a tuner changes the count only while its decode is
the only one running and nobody else changed the count since (:func:`steer`), and
the last decode out puts back the count read when the first one came in, also
after a stop or an exception. Code that sets its own count for a while uses
:func:`fixed`, which counts as a decode too.
"""

from __future__ import annotations

import statistics
import threading
import weakref
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch

from .._util.env import env_switch

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = [
    "ThreadTuner", "tuner_for", "forget", "SWITCH", "enter", "leave", "steer", "fixed", "check_switch",
]  # fmt: skip

#: The environment variable that turns the tuner off (``0/false/off/no``).
SWITCH = "MUSICGEN_NB_ADAPTIVE_THREADS"
_TUNERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _Decodes:
    """The decodes running now in this process, and the thread counts they found and set."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.base: int | None = None  # the count when the first decode came in
        self.mine: int | None = None  # the count a tuner set last (None: none did)


_DECODES = _Decodes()


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
    >>> t.observe(0.027)  # one step at home: the count for the next step
    1
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

    def begin(self) -> None:
        """A new window: forget the previous window's baseline (its shapes and speed differ).

        Examples
        --------
        >>> t = ThreadTuner(2, window=1)
        >>> _ = t.observe(0.01); t.begin(); t.last is None and t.strikes == 0
        True
        """
        self.times, self.last, self.strikes = [], None, 0

    def observe(self, seconds: float) -> int:
        """Record one step's time; return the thread count for the next step.

        Examples
        --------
        >>> t = ThreadTuner(1)
        >>> t.observe(0.02)  # one core: always 1
        1
        """
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


def check_switch() -> bool:
    """Whether the tuner is on (``MUSICGEN_NB_ADAPTIVE_THREADS``); a value it does not know is refused.

    Examples
    --------
    >>> import os
    >>> check_switch() == (os.environ.get("MUSICGEN_NB_ADAPTIVE_THREADS", "1") not in ("0", "off"))
    True
    """
    return env_switch(SWITCH, default=True)


def tuner_for(owner: object, device: torch.device, most: int | None = None) -> ThreadTuner | None:
    """The tuner of ``owner`` (a decoder module) on the CPU; None elsewhere or when turned off.

    A tuner is kept per owner (only one decode tunes at a time: :func:`steer`); it is
    made again when ``most`` (default: the count now) differs from the one it has.

    Examples
    --------
    >>> import torch
    >>> owner, cpu = torch.nn.Linear(1, 1), torch.device("cpu")
    >>> tuner_for(owner, cpu, 2) is tuner_for(owner, cpu, 2), tuner_for(owner, cpu, 1).most
    (True, 1)
    """
    if device.type != "cpu" or not check_switch():
        return None
    most = torch.get_num_threads() if most is None else most
    with _DECODES.lock:
        tuner = _TUNERS.get(owner)
        if tuner is None or tuner.most != most:
            tuner = _TUNERS[owner] = ThreadTuner(most)
    return tuner


def enter() -> int:
    """Count a decode in; return the count to put back (read when the first decode came in).

    Examples
    --------
    >>> base = enter(); leave(); base == torch.get_num_threads()
    True
    """
    with _DECODES.lock:
        if _DECODES.active == 0:
            _DECODES.base, _DECODES.mine = torch.get_num_threads(), None
        _DECODES.active += 1
        return _DECODES.base


def leave() -> None:
    """Count a decode out; the last one out puts back the count a tuner changed.

    Examples
    --------
    >>> before = torch.get_num_threads()
    >>> _ = enter(); _ = steer(1); leave(); torch.get_num_threads() == before
    True
    """
    with _DECODES.lock:
        _DECODES.active = max(0, _DECODES.active - 1)
        if _DECODES.active == 0:
            _put_back()
            _DECODES.base = None


def _put_back() -> None:
    """The base count, if a tuner set another and nobody changed it since (lock held)."""
    d = _DECODES
    if d.mine is not None and d.mine != d.base and torch.get_num_threads() == d.mine:
        torch.set_num_threads(d.base)
    d.mine = None


def steer(count: int) -> bool:
    """Set the count to ``count`` for the one decode running; False (nothing set) otherwise.

    With another decode running, or when someone else set the count since, the
    tuner stands aside (and the count a tuner set is put back first).

    Examples
    --------
    >>> _ = enter(); first = steer(torch.get_num_threads())
    >>> _ = enter(); second = steer(1); leave(); leave()
    >>> first, second
    (True, False)
    """
    d = _DECODES
    with d.lock:
        if d.active != 1:
            _put_back()
            return False
        now = torch.get_num_threads()
        if now != (d.base if d.mine is None else d.mine):
            return False  # someone set their own count: theirs while this window runs
        if now != count:
            torch.set_num_threads(count)
            d.mine = count
        return True


@contextmanager
def fixed(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` threads (None: as it is), counted as a decode (no tuner acts).

    Examples
    --------
    >>> before = torch.get_num_threads()
    >>> with fixed(1):
    ...     inside = torch.get_num_threads()
    >>> inside, torch.get_num_threads() == before
    (1, True)
    """
    enter()
    old = torch.get_num_threads()
    try:
        if n is not None:
            torch.set_num_threads(n)
        yield
    finally:
        torch.set_num_threads(old)
        leave()


def forget(owner: object) -> None:
    """Drop the tuner of ``owner``: the next decoder starts from the most threads.

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
