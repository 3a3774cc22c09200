"""Resampling with soxr (HQ), refused up front when it cannot fit in memory.

Memory of one :func:`resample` call: peak RSS above a warmed-up baseline, float32 ``[B, C, N]``
input, soxr 1.1.0 "HQ", a fresh process per case (``python benchmarks/bench_resample_memory.py``)::

    orig -> target Hz    shape            in MB  out MB  peak MB
    7 -> 32000           [1, 1, 320]        0.0     5.9     13.1
    7 -> 32000           [1, 1, 8000]       0.0   146.3    177.1
    7 -> 32000           [1, 2, 1600]       0.0    58.5    118.5
    7 -> 32000           [2, 2, 1000]       0.0    73.1    148.8
    100 -> 32000         [1, 1, 32000]      0.1    41.0     43.8
    1000 -> 32000        [1, 2, 160000]     1.3    41.0     82.0
    44100 -> 48000       [1, 2, 2205000]   17.6    19.2     39.2
    48000 -> 32000       [2, 2, 2400000]   38.4    25.6     66.5

soxr itself holds 1.0-1.3x its output, plus up to ~10 MB of filter tables at extreme ratios;
more than one row adds a transposed copy of the output. Every case lies under
``input + 1.35 * output + 16 MB`` (one row) and ``input + 2.25 * output + 16 MB`` (more rows):
:data:`RESAMPLE_OUT_FACTOR` and :data:`RESAMPLE_OVERHEAD`.

Examples
--------
>>> import numpy as np
>>> resample(np.zeros(48000), 48000, 16000).shape
(16000,)
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING

import numpy as np
import soxr

from .._util.checks import check_sr
from .._util.memory import available_bytes
from .arrays import to_float32, to_numpy

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

#: Bytes soxr needs per output byte: (one row, more rows). Measured, see the module docstring.
RESAMPLE_OUT_FACTOR = (1.35, 2.25)
#: Fixed bytes on top (filter tables and the like).
RESAMPLE_OVERHEAD = 16 * 2**20
_COMMON_RATES = "16000, 22050, 32000, 44100, 48000 Hz"


def resample(
    audio: ArrayLike,
    orig_sr: int,
    target_sr: int,
    *,
    name: str = "orig_sr",
    work: tuple[str, float] | None = None,
) -> np.ndarray:
    """Resample along the last axis with soxr (HQ), keeping any leading shape.

    Before resampling, the memory the call needs is estimated from the sizes
    (input + 1.35 x output + 16 MB for one row, 2.25 x output for more; measured)
    and compared with the memory available: a wrong rate that would stretch the audio a thousandfold is refused
    at once instead of exhausting memory. The caller's ``work`` is counted too, also
    when the rates are equal (then the call is a copy).

    Parameters
    ----------
    audio : array_like
        ``[..., N]`` samples on the last axis.
    orig_sr, target_sr : int
        Positive sample rates in Hz.
    name : str, keyword-only
        The caller's name for ``orig_sr`` (for example ``"sr"``), used in error messages.
    work : (str, float), optional, keyword-only
        What the caller does next with the resampled audio and the bytes that takes per
        output sample (all rows together), for example ``("encoding it with EnCodec",
        120.0)``. It is counted in the memory check, so that a call that cannot finish is
        refused before resampling.

    Returns
    -------
    np.ndarray
        float32 ``[..., round(N * target_sr / orig_sr)]``.

    Raises
    ------
    ValueError
        A bad rate, no samples, or more memory needed than is available.

    Examples
    --------
    >>> import numpy as np
    >>> resample(np.zeros((2, 3, 48000)), 48000, 32000).shape
    (2, 3, 32000)
    """
    _check_options(name, work)
    orig_sr = check_sr(orig_sr, name)
    target_sr = check_sr(target_sr, "target_sr")
    arr = to_float32(to_numpy(audio, "audio"))
    if arr.ndim == 0 or arr.shape[-1] == 0:
        raise ValueError(f"audio must have samples on its last axis, got shape {arr.shape}")
    check_resample_memory(arr, orig_sr, target_sr, name=name, work=work)
    if orig_sr == target_sr:
        return arr.copy()
    lead = arr.shape[:-1]
    flat = arr.reshape(-1, arr.shape[-1]).T  # soxr wants [frames, channels]
    out = soxr.resample(np.ascontiguousarray(flat), orig_sr, target_sr, quality="HQ")
    out = np.asarray(out, dtype=np.float32).reshape(-1, flat.shape[1]).T
    return np.ascontiguousarray(out.reshape(*lead, -1))


def _check_options(name, work) -> None:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str (the caller's name for orig_sr), got {name!r}")
    if work is not None and not (
        isinstance(work, tuple) and len(work) == 2 and isinstance(work[0], str)
        and isinstance(work[1], numbers.Real) and not isinstance(work[1], bool) and work[1] >= 0
    ):  # fmt: skip
        raise TypeError(f"work must be None or (str, bytes per output sample >= 0), got {work!r}")


def resample_bytes(shape, orig_sr: int, target_sr: int) -> int:
    """Bytes one :func:`resample` call of float32 audio of ``shape`` needs (measured model).

    Equal rates count the copy only.

    Examples
    --------
    >>> resample_bytes((1, 32000), 32000, 32000)
    128000
    >>> resample_bytes((1, 32000), 16000, 32000) > 16 * 2**20
    True
    """
    n = shape[-1]
    size = math.prod(shape)
    if orig_sr == target_sr:
        return 4 * size
    rows = size // n
    out_len = math.ceil(n * target_sr / orig_sr)
    factor = RESAMPLE_OUT_FACTOR[rows > 1]
    return int(4 * size + factor * 4 * rows * out_len + RESAMPLE_OVERHEAD)


def check_resample_memory(
    arr: np.ndarray, orig_sr: int, target_sr: int, *, name: str = "orig_sr", work=None
) -> None:
    """Refuse a resample (and the caller's ``work`` after it) that cannot fit in memory.

    Parameters
    ----------
    arr : np.ndarray
        float32 ``[..., N]``, the audio to resample.
    orig_sr, target_sr : int
    name, work
        As in :func:`resample`.

    Raises
    ------
    ValueError
        Naming the samples, the rates, the memory needed and the memory available.

    Examples
    --------
    >>> check_resample_memory(np.zeros(100, np.float32), 100, 200)  # fits: returns None
    """
    n = arr.shape[-1]
    what, per_sample = work if work is not None else ("", 0.0)
    if orig_sr == target_sr and not per_sample:
        return  # a copy of what the caller already holds, and nothing after it
    need = resample_bytes(arr.shape, orig_sr, target_sr)
    out_len = math.ceil(n * target_sr / orig_sr)
    after = per_sample * out_len
    available = available_bytes()
    if available is None or need + after <= available:
        return
    seconds = n / orig_sr
    span = f"{seconds:.2f} s" + (f" ({seconds / 60:.1f} min)" if seconds >= 120 else "")
    if orig_sr == target_sr:
        fits = available / (4 * (arr.size // n) + per_sample) / orig_sr
        raise ValueError(
            f"{n:,} samples at {name}={orig_sr} Hz are {span} of audio; {what} needs about "
            f"{after / 1e9:,.1f} GB, but only {available / 1e9:,.1f} GB of memory is available; "
            f"pass shorter audio (about {fits:,.0f} s fits) or fewer items at a time"
        )
    target = f"target_sr={target_sr} Hz" if name == "orig_sr" else f"{target_sr} Hz"
    then = f", and {what} about {after / 1e9:,.1f} GB more" if after else ""
    if name == "orig_sr":
        hint = f"Check orig_sr (the audio's own sample rate; common: {_COMMON_RATES}) and target_sr"
    else:
        hint = f"Check {name}: it must be the audio's own sample rate (common: {_COMMON_RATES})"
    raise ValueError(
        f"{n:,} samples at {name}={orig_sr} Hz are {span} of audio; resampling them to {target} "
        f"makes shape {arr.shape} into {(*arr.shape[:-1], out_len)}, which needs about "
        f"{need / 1e9:,.1f} GB{then}, but only {available / 1e9:,.1f} GB of memory is available. "
        f"{hint}; if the rates are right, pass shorter audio"
    )
