"""How much of this process's CPUs other processes are using, read from the kernel's counters.

A thread count that fits an idle machine loses most of its speed when another
process wants one of the cores (an OpenMP team waits at every barrier for the
thread that lost its core). Timing the steps shows this only after some slow
steps; the kernel's counters show it directly. :class:`CoreMeter` reads the busy
time of the CPUs this process may run on from ``/proc/stat`` (Linux) and
subtracts this process's own CPU time: what is left was used by others. The
thread tuner (:mod:`.tuner`) is fed that figure with each step's time.

Elsewhere (no ``/proc/stat``), :meth:`CoreMeter.open` returns None and the tuner
decides from step times alone.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["CoreMeter", "usable_cpus"]

STAT = Path("/proc/stat")


def usable_cpus() -> list[int]:
    """The CPU numbers this process may run on (its affinity; all CPUs where that is unknown).

    Examples
    --------
    >>> cpus = usable_cpus()
    >>> len(cpus) >= 1 and all(isinstance(c, int) for c in cpus)
    True
    """
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return list(range(os.cpu_count() or 1))


class CoreMeter:
    """Laps of the CPU time other processes used on this process's CPUs.

    Parameters
    ----------
    cpus : list of int
        The CPU numbers to count (default: :func:`usable_cpus`).
    stat : Path
        The kernel's counters (``/proc/stat``; tests may pass a file in its format).
    own : callable
        This process's CPU time in seconds, all threads (default ``time.process_time``).

    Examples
    --------
    >>> meter = CoreMeter.open()
    >>> meter is None or meter.lap() >= 0.0  # seconds of CPU others used since the last lap
    True
    """

    def __init__(
        self, cpus: list[int] | None = None, stat: Path = STAT, own=time.process_time
    ) -> None:
        self.cpus = frozenset(usable_cpus() if cpus is None else cpus)
        self.stat, self.own = Path(stat), own
        self.tick = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
        self.when = time.perf_counter()
        self.last = self._read()

    @classmethod
    def open(cls, cpus: list[int] | None = None) -> CoreMeter | None:
        """A meter of this machine, or None where the kernel's counters cannot be read.

        Examples
        --------
        >>> m = CoreMeter.open()
        >>> m is None or isinstance(m, CoreMeter)
        True
        """
        try:
            meter = cls(cpus)
        except (OSError, ValueError):
            return None
        return meter if meter.last[0] > 0 else None

    @property
    def size(self) -> int:
        """How many CPUs it counts.

        Examples
        --------
        >>> CoreMeter(cpus=[0]).size if CoreMeter.open() else 1
        1
        """
        return len(self.cpus)

    def _read(self) -> tuple[float, float]:
        """(busy seconds of the counted CPUs, this process's CPU seconds), read now."""
        busy = 0
        with open(self.stat, "rb") as f:
            for line in f:
                if not line.startswith(b"cpu") or not line[3:4].isdigit():
                    continue
                name, *fields = line.split()
                if int(name[3:]) in self.cpus:
                    ticks = [
                        int(v) for v in fields[:8]
                    ]  # user nice system idle iowait irq softirq steal
                    busy += sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)
        return busy / self.tick, self.own()

    def lap(self) -> float:
        """CPU seconds others used on the counted CPUs since the last lap (>= 0).

        Busy time includes the hypervisor's steal (a virtual CPU that waited for
        the host), which is contention too. The kernel counts in ticks (10 ms
        on most systems), so sum laps over a few steps before reading much into them.

        Examples
        --------
        >>> m = CoreMeter.open()
        >>> m is None or m.lap() >= 0.0
        True
        """
        busy, own = self._read()
        other = (busy - self.last[0]) - (own - self.last[1])
        self.last, self.when = (busy, own), time.perf_counter()
        return max(0.0, other)

    def rate(self) -> float:
        """Cores others used on average since the last reading (a lap over its wall time).

        One read of the counters per call: the engine calls it once per step, and
        the time between steps (sampling) counts with the step.

        Examples
        --------
        >>> m = CoreMeter.open()
        >>> m is None or m.rate() >= 0.0
        True
        """
        start = self.when
        other = self.lap()
        return other / max(self.when - start, 1e-9)
