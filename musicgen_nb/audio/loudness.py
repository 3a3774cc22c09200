"""Integrated loudness (ITU-R BS.1770-4) and loudness normalization.

Examples
--------
>>> from musicgen_nb.audio import sine
>>> round(loudness(sine(997, 3.0, 48000, amplitude=1.0), 48000), 1)
-3.0
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING

import numpy as np
from scipy import signal

from .._util.checks import check_sr
from .arrays import as_batch, to_float32, to_numpy

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


def k_weighting(sr: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """BS.1770 K-weighting (high shelf + high pass) as two biquads ``(b, a)`` designed for ``sr``.

    Examples
    --------
    >>> [(len(b), len(a)) for b, a in k_weighting(48000)]
    [(3, 3), (3, 3)]
    """
    # Stage 1: high shelf, +4 dB above ~1.7 kHz (head effects). Constants reproduce the
    # 48 kHz coefficients of BS.1770-4 and let us redesign the filter at any rate.
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / sr)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf_b = np.array([vh + vb * k / q + k * k, 2.0 * (k * k - vh), vh - vb * k / q + k * k]) / a0
    shelf_a = np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0])
    # Stage 2: RLB high pass at ~38 Hz.
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / sr)
    a0 = 1.0 + k / q + k * k
    hp_b = np.array([1.0, -2.0, 1.0])
    hp_a = np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0])
    return [(shelf_b, shelf_a), (hp_b, hp_a)]


def _as_channels(audio, name: str = "audio") -> np.ndarray:
    arr = as_batch(audio, name=name)
    if arr.shape[0] != 1:
        raise ValueError(f"{name} must be [channels, samples] or [samples], got shape {arr.shape}")
    return arr[0]


def _block_power(x: np.ndarray, sr: int) -> np.ndarray:
    """Summed channel power of every 400 ms block (75 % overlap) of K-weighted ``[C, N]``."""
    block, hop = int(round(0.4 * sr)), int(round(0.1 * sr))
    n = x.shape[-1]
    if n <= block:
        z = np.mean(x * x, axis=-1, keepdims=True)  # [C, 1]
    else:
        # Mean square of every block via a cumulative sum: [C, num_blocks].
        csum = np.concatenate([np.zeros((x.shape[0], 1)), np.cumsum(x * x, axis=-1)], axis=-1)
        starts = np.arange(0, n - block + 1, hop)
        z = (csum[:, starts + block] - csum[:, starts]) / block
    return z.sum(axis=0)  # channel weights are all 1


def loudness(audio: ArrayLike, sr: int) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4).

    K-weighting designed for ``sr``, 400 ms blocks with 75 % overlap, an absolute gate at
    -70 LUFS and a relative gate 10 LU below the absolutely gated loudness. Every channel
    has weight 1 (right for mono and stereo). Audio shorter than one block is measured as a
    single block. Silence gives ``-inf``.

    Examples
    --------
    >>> from musicgen_nb.audio import sine
    >>> round(loudness(sine(997, 3.0, 48000, amplitude=1.0), 48000), 1)
    -3.0
    """
    sr = check_sr(sr)
    x = _as_channels(audio).astype(np.float64)
    for b, a in k_weighting(sr):
        x = signal.lfilter(b, a, x, axis=-1)
    power = _block_power(x, sr)
    with np.errstate(divide="ignore"):
        block_lufs = -0.691 + 10.0 * np.log10(power)
    gated = power[block_lufs > -70.0]
    if gated.size == 0:
        return float("-inf")
    relative = -0.691 + 10.0 * np.log10(gated.mean()) - 10.0
    gated = power[(block_lufs > -70.0) & (block_lufs > relative)]
    return float(-0.691 + 10.0 * np.log10(gated.mean()))


def normalize_loudness(
    audio: ArrayLike, sr: int, target_lufs: float = -14.0, *, peak: float = 0.99
) -> np.ndarray:
    """Scale audio to an integrated loudness, then scale down if a peak would exceed ``peak``.

    The peak step is a plain gain (no compression), so a very dynamic signal can end up
    quieter than ``target_lufs``. Silent audio (below the -70 LUFS gate) is returned unchanged.

    Parameters
    ----------
    audio : array_like
        ``[C, N]``, ``[N]`` or ``[B, C, N]`` (each item normalized on its own). The shape
        is kept.
    sr : int
    target_lufs : float
        Target loudness in LUFS; -14 is a common streaming level.
    peak : float, keyword-only
        Largest absolute sample allowed after scaling, in (0, 1].

    Examples
    --------
    >>> from musicgen_nb.audio import sine
    >>> y = normalize_loudness(sine(440, 2.0, 32000, amplitude=0.01), 32000, -20.0)
    >>> round(loudness(y, 32000), 1)
    -20.0
    """
    sr = check_sr(sr)
    if isinstance(target_lufs, bool) or not isinstance(target_lufs, numbers.Real):
        raise TypeError(f"target_lufs must be a number in LUFS, e.g. -14.0, got {target_lufs!r}")
    if not math.isfinite(target_lufs) or target_lufs > 0:
        raise ValueError(f"target_lufs must be a finite LUFS value <= 0, got {target_lufs!r}")
    if isinstance(peak, bool) or not isinstance(peak, numbers.Real) or not 0 < peak <= 1:
        raise ValueError(f"peak must be a number in (0, 1], got {peak!r}")
    arr = to_float32(to_numpy(audio, "audio"))
    batch = as_batch(arr)
    out = np.empty_like(batch)
    for i, item in enumerate(batch):
        current = loudness(item, sr)
        if not math.isfinite(current):
            out[i] = item
            continue
        gain = 10.0 ** ((target_lufs - current) / 20.0)
        top = float(np.abs(item).max()) * gain
        if top > peak:
            gain *= peak / top
        out[i] = item * gain
    return out.reshape(arr.shape)
