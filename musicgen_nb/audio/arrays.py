"""Audio arrays: coercion to numpy float32, finiteness checks, batching and channel layout.

Arrays are float32 with samples on the last axis: ``[N]``, ``[channels, N]`` or
``[batch, channels, N]``.

Examples
--------
>>> import numpy as np
>>> as_batch(np.zeros(100)).shape
(1, 1, 100)
>>> match_channels(as_batch(np.zeros(100)), 2).shape
(1, 2, 100)
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

import numpy as np

from .._util.arrays import as_array, pick_item

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

# More channels than this on the first axis of a 2-D array looks like [samples, channels].
_MAX_CHANNELS = 8


def to_numpy(audio, name: str) -> np.ndarray:
    """Turn arrays, tensors and nested lists into a real-valued numpy array.

    No copy where possible. Tensors are detached and moved to the CPU; half-precision
    tensors become float32 (numpy has no bfloat16).

    Parameters
    ----------
    audio : array_like or torch.Tensor
    name : str
        The argument name used in error messages.

    Returns
    -------
    np.ndarray
        An int, unsigned int or float array.

    Raises
    ------
    TypeError
        Strings, dicts, None, ragged lists, or non-real dtypes.

    Examples
    --------
    >>> to_numpy([1.0, 2.0], "audio").dtype
    dtype('float64')
    >>> to_numpy("a.wav", "melody")
    Traceback (most recent call last):
    ...
    TypeError: melody must be a numeric array or tensor, got str: 'a.wav'
    """
    if hasattr(audio, "detach") and hasattr(audio, "cpu"):  # torch.Tensor, without importing torch
        audio = audio.detach().cpu()
        if audio.dtype.is_floating_point and audio.dtype.itemsize < 4:
            audio = audio.float()  # numpy has no bfloat16
        audio = audio.numpy()
    if isinstance(audio, (str, bytes, dict, set)) or audio is None:
        raise TypeError(
            f"{name} must be a numeric array or tensor, got {type(audio).__name__}: {audio!r:.60}"
        )
    try:
        arr = np.asarray(audio)
    except (ValueError, TypeError) as err:
        raise TypeError(
            f"{name} must be a numeric array or tensor, got {type(audio).__name__}"
        ) from err
    if arr.dtype.kind not in "iuf":
        raise TypeError(
            f"{name} must hold real numbers (int or float), got dtype {arr.dtype} "
            f"from {type(audio).__name__}"
        )
    return arr


def to_float32(arr: np.ndarray) -> np.ndarray:
    """Integers are PCM: scale int16/int32 by their full scale; floats are cast to float32.

    Examples
    --------
    >>> to_float32(np.array([0, 16384, -32768], dtype=np.int16)).tolist()
    [0.0, 0.5, -1.0]
    """
    if arr.dtype.kind in "iu":
        info = np.iinfo(arr.dtype)
        scale = float(info.max) + 1.0 if arr.dtype.kind == "i" else (float(info.max) + 1.0) / 2
        offset = 0.0 if arr.dtype.kind == "i" else scale
        return ((arr.astype(np.float64) - offset) / scale).astype(np.float32)
    return arr.astype(np.float32, copy=False)


def check_finite(arr: np.ndarray, name: str) -> None:
    """Refuse NaN, inf, and values that float32 cannot hold, saying which it is.

    Examples
    --------
    >>> check_finite(np.array([0.0, np.nan]), "melody")
    Traceback (most recent call last):
    ...
    ValueError: melody holds non-finite values: 1 NaN and 0 inf (the first at index (1,)); ...
    """
    if arr.dtype.kind != "f":
        return
    finite = np.isfinite(arr)
    if not finite.all():
        nan = int(np.isnan(arr).sum())
        inf = int(arr.size - finite.sum()) - nan
        first = np.unravel_index(int(np.argmin(finite.ravel())), arr.shape)
        raise ValueError(
            f"{name} holds non-finite values: {nan} NaN and {inf} inf (the first at index "
            f"{tuple(int(i) for i in first)}); all samples must be finite"
        )
    if arr.dtype.itemsize > 4:
        big = float(np.abs(arr).max(initial=0.0))
        if big > float(np.finfo(np.float32).max):
            raise ValueError(
                f"{name} holds values up to {big:.3g}, beyond float32's range (3.4e38); "
                "audio samples should lie in [-1, 1], so scale it down"
            )


def as_batch(audio: ArrayLike, *, name: str = "audio") -> np.ndarray:
    """Return audio as a float32 batch ``[batch, channels, samples]``.

    Parameters
    ----------
    audio : np.ndarray, torch.Tensor or nested list
        ``[N]`` (mono), ``[C, N]`` (channels first) or ``[B, C, N]``. Tensors are detached
        and moved to the CPU. Integer arrays are read as PCM and scaled to [-1, 1).
    name : str, keyword-only
        The argument name used in error messages.

    Returns
    -------
    np.ndarray
        float32 ``[B, C, N]``.

    Raises
    ------
    TypeError
        Non-numeric input.
    ValueError
        Wrong number of dimensions, no samples, non-finite values, or a 2-D array that looks
        like ``[samples, channels]``.

    Examples
    --------
    >>> import numpy as np
    >>> as_batch(np.zeros(100)).shape
    (1, 1, 100)
    >>> as_batch(np.zeros((2, 100))).shape
    (1, 2, 100)
    """
    arr = to_numpy(audio, name)
    if arr.ndim not in (1, 2, 3):
        raise ValueError(
            f"{name} must be 1-D [samples], 2-D [channels, samples] or 3-D "
            f"[batch, channels, samples], got shape {arr.shape}"
        )
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); it needs at least one sample")
    if arr.ndim == 2 and arr.shape[0] > _MAX_CHANNELS and arr.shape[1] <= _MAX_CHANNELS:
        raise ValueError(
            f"{name} has shape {arr.shape}, which looks like [samples, channels]; "
            f"pass [channels, samples] instead, e.g. {name}.T"
        )
    check_finite(arr, name)
    arr = to_float32(arr)
    while arr.ndim < 3:
        arr = arr[None]
    return np.ascontiguousarray(arr)


def one_item(
    audio: ArrayLike, item: int | None = None, *, name: str = "audio", max_channels: int = 16
) -> np.ndarray:
    """One clip as float32 ``[channels, samples]`` from ``[N]``, ``[C, N]`` or ``[B, C, N]``.

    For display (players, figures): NaN and inf become finite instead of raising.

    Parameters
    ----------
    audio : array or tensor
    item : int, optional
        Batch item of a ``[B, C, N]`` input; may be omitted when ``B == 1``.
    name : str
        Argument name used in error messages.
    max_channels : int
        More channels than this is taken for a ``[samples, channels]`` mistake.

    Examples
    --------
    >>> one_item(np.zeros((2, 1, 100)), 1).shape
    (1, 100)
    """
    arr = as_array(audio, name)
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim == 3:
        if item is None and arr.shape[0] != 1:
            raise ValueError(
                f"{name} holds a batch of {arr.shape[0]} items (shape {arr.shape}); "
                f"pass item=0..{arr.shape[0] - 1}"
            )
        arr = pick_item(arr, 0 if item is None else item, name)
    elif arr.ndim == 1:
        arr = arr[None]
    elif arr.ndim != 2:
        raise ValueError(
            f"{name} must have shape [samples], [channels, samples] or "
            f"[batch, channels, samples], got shape {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(
            f"{name} must hold at least one channel and one sample, got shape {arr.shape}"
        )
    if arr.shape[0] > max_channels:
        raise ValueError(
            f"{name} has {arr.shape[0]} channels (shape {arr.shape}); expected [channels, samples] "
            f"with at most {max_channels} channels. Did you pass [samples, channels]? Transpose it."
        )
    return np.nan_to_num(arr.astype(np.float32, copy=False))


def match_channels(audio: np.ndarray, channels: int) -> np.ndarray:
    """Convert ``[B, C, N]`` audio to ``channels`` channels.

    Mono to stereo duplicates the channel; any multichannel input to mono averages.

    Examples
    --------
    >>> import numpy as np
    >>> match_channels(np.ones((1, 1, 4)), 2).shape
    (1, 2, 4)
    >>> match_channels(np.array([[[1.0, 1.0], [0.0, 0.0]]]), 1)
    array([[[0.5, 0.5]]], dtype=float32)
    """
    if isinstance(channels, bool) or not isinstance(channels, numbers.Integral) or channels < 1:
        raise ValueError(f"channels must be a positive integer (1 or 2), got {channels!r}")
    arr = to_float32(to_numpy(audio, "audio"))
    if arr.ndim != 3:
        raise ValueError(f"audio must be 3-D [batch, channels, samples], got shape {arr.shape}")
    have = arr.shape[1]
    if have == channels:
        return arr
    if channels == 1:
        return arr.mean(axis=1, keepdims=True, dtype=np.float32)
    if have == 1:
        return np.repeat(arr, channels, axis=1)
    raise ValueError(
        f"cannot convert {have} channels to {channels}; allowed: same count, mono to any, any to mono"
    )
