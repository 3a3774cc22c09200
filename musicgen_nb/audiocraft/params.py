"""Argument checks and parameter names shared by :mod:`musicgen_nb.audiocraft`.

audiocraft keeps ``generation_params`` under its own names (``use_sampling``,
``temp``, ``top_k``, ``top_p``, ``cfg_coef``, ``two_step_cfg``, ``cfg_coef_beta``);
:func:`engine_params` turns them into :func:`musicgen_nb.generation.generate`'s.

Examples
--------
>>> engine_params({"use_sampling": True, "temp": 0.0, "top_k": 250, "top_p": 0.0,
...                "cfg_coef": 3.0, "two_step_cfg": False, "cfg_coef_beta": None}, 18.0)["do_sample"]
False
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

__all__ = ["as_batch", "check_bool", "check_int", "check_number", "engine_params", "print_progress"]


def check_bool(value: object, name: str) -> bool:
    """``value`` if it is True or False, else a TypeError naming ``name``.

    Examples
    --------
    >>> check_bool(True, "progress")
    True
    """
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_number(value: object, name: str, *, low: float = 0.0, strict: bool = True) -> float:
    """``value`` as a float above ``low`` (or at least ``low`` when not ``strict``).

    Examples
    --------
    >>> check_number(0, "temperature", strict=False)
    0.0
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r}")
    if value < low or (strict and value == low):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {low:g}, got {value!r}")
    return float(value)


def check_int(value: object, name: str, *, low: int = 1, what: str = "") -> int:
    """``value`` as an int ``>= low`` (numpy integers too), else a ValueError naming ``name``.

    Examples
    --------
    >>> check_int(np.int64(32000), "prompt_sample_rate", what=" (Hz)")
    32000
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low}{what}, got {value!r}")
    return int(value)


def as_batch(x: object, name: str) -> np.ndarray:
    """A torch tensor or array ``[B, C, T]`` or ``[C, T]`` as float32 numpy ``[B, C, T]``.

    Examples
    --------
    >>> as_batch(torch.zeros(1, 8), "prompt").shape
    (1, 1, 8)
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(
            f"{name} must be [B, C, T] (or [C, T] for one item), got shape {arr.shape}"
        )
    return arr


def engine_params(params: dict, extend_stride: float) -> dict:
    """Audiocraft's ``generation_params`` in musicgen-nb's names.

    As in audiocraft, ``temp == 0`` (or ``use_sampling=False``) takes the argmax,
    and ``top_p > 0`` replaces top-k.

    Examples
    --------
    >>> p = engine_params({"use_sampling": True, "temp": 1.0, "top_k": 250, "top_p": 0.9,
    ...                    "cfg_coef": 3.0, "two_step_cfg": False, "cfg_coef_beta": None}, 18.0)
    >>> p["top_k"], p["top_p"], p["guidance_scale"]
    (0, 0.9, 3.0)
    """
    sample = bool(params["use_sampling"]) and params["temp"] > 0
    return dict(
        do_sample=sample, top_k=0 if params["top_p"] > 0 else params["top_k"],
        top_p=params["top_p"], temperature=params["temp"] if sample else 1.0,
        guidance_scale=params["cfg_coef"], cfg_coef_beta=params["cfg_coef_beta"],
        extend_stride=extend_stride,
    )  # fmt: skip


def print_progress(done: int, total: int) -> None:
    """Print progress as audiocraft does: ``"{done: 6d} / {total: 6d}"`` then a carriage return (no newline).

    Examples
    --------
    >>> print_progress(3, 10)
         3 /     10
    """
    print(f"{done: 6d} / {total: 6d}", end="\r", flush=True)
