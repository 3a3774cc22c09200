"""One copy of each argument check. Every message names the argument, the value and what is allowed.

Examples
--------
>>> check_positive(2, "duration")
2.0
>>> check_positive(0, "duration")
Traceback (most recent call last):
...
ValueError: duration must be a positive number, got 0
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path

import numpy as np


def check_int(value, name: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    """Return ``value`` as int, or raise naming ``name`` when it is not an int in range.

    Examples
    --------
    >>> check_int(3, "frames", minimum=1)
    3
    >>> check_int(10**12, "num_codebooks", minimum=1, maximum=64)
    Traceback (most recent call last):
    ...
    ValueError: num_codebooks must be an int in [1, 64], got 1000000000000
    """
    allowed = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int {allowed}, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be an int {allowed}, got {value!r}")
    return int(value)


def check_positive(value, name: str, *, integer: bool = False, allow_none: bool = False):
    """A positive finite number (``integer=True``: a positive int); None if ``allow_none``.

    Examples
    --------
    >>> check_positive(4, "codebook_size", integer=True)
    4
    >>> check_positive(None, "max_seconds", allow_none=True) is None
    True
    """
    if value is None and allow_none:
        return None
    kind = "integer" if integer else "number"
    tail = " or None" if allow_none else ""
    ok_type = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, ok_type):
        raise TypeError(f"{name} must be a positive {kind}{tail}, got {value!r}")
    try:
        ok = math.isfinite(value) and value > 0
    except OverflowError:  # an int too big for a float is still positive and finite
        ok = value > 0
    if not ok:
        raise ValueError(f"{name} must be a positive {kind}{tail}, got {value!r}")
    return int(value) if integer else float(value)


def check_number(value, name: str, *, allowed: str) -> float:
    """A finite real number as float; ``allowed`` describes the accepted range in messages.

    Examples
    --------
    >>> check_number(1, "temperature", allowed="> 0")
    1.0
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a number ({allowed}), got {type(value).__name__} {value!r}"
        )
    try:
        value = float(value)
    except OverflowError:  # an int too big for a float
        raise ValueError(
            f"{name} must be a finite number ({allowed}), got an int of {len(str(value))} digits"
        ) from None
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} must be a finite number ({allowed}), got {value!r}")
    return value


def check_bool(value, name: str) -> bool:
    """A real bool: ``"no"`` or ``0`` would otherwise read as a choice.

    Examples
    --------
    >>> check_bool(True, "progress")
    True
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def check_sr(sr: int, name: str = "sr") -> int:
    """A sample rate: a positive integer in Hz (an integral float like 44100.0 is fine).

    Examples
    --------
    >>> check_sr(44100.0)
    44100
    """
    if isinstance(sr, bool) or not isinstance(sr, numbers.Real):
        raise TypeError(f"{name} must be a positive integer sample rate in Hz, got {sr!r}")
    if not math.isfinite(sr) or sr <= 0 or int(sr) != sr:
        raise ValueError(f"{name} must be a positive integer sample rate in Hz, got {sr!r}")
    return int(sr)


def check_choice(value, name: str, allowed) -> str:
    """One of ``allowed`` (strings), compared as given.

    Examples
    --------
    >>> check_choice("wav", "fmt", ("wav", "flac"))
    'wav'
    """
    allowed = list(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def check_path(path, name: str) -> Path:
    """A file path: a non-empty str or os.PathLike.

    Examples
    --------
    >>> check_path("a.wav", "path").name
    'a.wav'
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"{name} must be a file path (str or os.PathLike), got {type(path).__name__} {path!r:.60}"
        )
    if os.fspath(path) in ("", b""):
        raise ValueError(f"{name} is an empty string; give a file path")
    return Path(os.fsdecode(path))
