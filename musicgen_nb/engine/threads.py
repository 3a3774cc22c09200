"""CPU threads that adapt: keep the decode loop near its fastest thread count when cores are busy.

The decisions are :class:`~musicgen_nb.engine.tuner.ThreadTuner`'s (fed each step's
time and the CPU time other processes used meanwhile,
:class:`~musicgen_nb.engine.cores.CoreMeter`). This module keeps one tuner per
decoder module (:func:`tuner_for`; the engine's CPU step feeds it,
``MUSICGEN_NB_ADAPTIVE_THREADS=0`` turns it off) and owns the process-wide count.

``torch.set_num_threads`` is process-wide, so the decodes running now are counted
(:func:`enter`, :func:`leave`): a tuner changes the count only while its decode is
the only one running and nobody else changed the count since (:func:`steer`), and
the last decode out puts back the count read when the first one came in, also
after a stop or an exception. Code that sets its own count for a while uses
:func:`fixed`, which counts as a decode too.
"""

from __future__ import annotations

import threading
import weakref
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch

from .._util.env import env_switch
from .cores import CoreMeter, usable_cpus
from .tuner import ThreadTuner

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "ThreadTuner", "tuner_for", "forget", "SWITCH", "enter", "leave", "steer", "fixed", "check_switch",
    "metered",
]  # fmt: skip

#: The environment variable that turns the tuner off (``0/false/off/no``).
SWITCH = "MUSICGEN_NB_ADAPTIVE_THREADS"
_TUNERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_METERED: bool | None = None


class _Decodes:
    """The decodes running now in this process, and the thread counts they found and set."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.base: int | None = None  # the count when the first decode came in
        self.mine: int | None = None  # the count a tuner set last (None: none did)


_DECODES = _Decodes()


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
    Where the kernel's counters can be read (:meth:`CoreMeter.open`), a new tuner
    first runs two steps on 1 thread to read the crowd on the cores.

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
            look = 2 if metered() else 0
            tuner = _TUNERS[owner] = ThreadTuner(most, cpus=len(usable_cpus()), look=look)
    return tuner


def metered() -> bool:
    """Whether the kernel's CPU counters can be read here (Linux), read once.

    Examples
    --------
    >>> metered() == (CoreMeter.open() is not None)
    True
    """
    global _METERED
    if _METERED is None:
        _METERED = CoreMeter.open() is not None
    return _METERED


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
