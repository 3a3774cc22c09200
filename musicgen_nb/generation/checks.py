"""Checks of the sampling parameters, seeds, prompts and hooks of a ``generate`` call.

Every check runs before any work and raises a ``TypeError``/``ValueError`` that names
the argument, the bad value and what is allowed. :func:`validate` is also what
:func:`musicgen_nb.grid` runs on every row of a grid before the first clip.

Examples
--------
>>> check_prompts(["jazz", None])
['jazz', None]
>>> seeds(5, 3)
[5, 6, 7]
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import numpy as np

from .._util.checks import check_bool, check_number

if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "MAX_DURATION",
    "SEED_LIMIT",
    "check_duration",
    "check_hooks",
    "check_prompts",
    "check_seed",
    "seeds",
    "validate",
]

#: Longest ``duration`` one call accepts, in seconds (3 hours). ``duration`` is in
#: seconds, so a value past this is almost always a unit mistake; a longer piece can
#: be made in parts, each continuing the last with ``audio_prompt=``.
MAX_DURATION = 3 * 3600.0
#: Largest seed torch's generators take: seeds are integers in ``[0, 2**64)``.
SEED_LIMIT = 2**64


def check_seed(seed) -> int | None:
    """None, or an int in ``[0, 2**64)`` (the range of torch's generator seeds).

    Examples
    --------
    >>> check_seed(None), check_seed(7)
    (None, 7)
    """
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(
            f"seed must be None or an int in [0, 2**64), got {type(seed).__name__} {seed!r}"
        )
    if not 0 <= int(seed) < SEED_LIMIT:
        raise ValueError(f"seed must be None or an int in [0, 2**64), got {seed!r}")
    return int(seed)


def seeds(seed, batch: int) -> list[int]:
    """One seed per batch item: a list as given, ``n`` as ``n, n + 1, ...``, None as a fresh ``n``.

    Each item samples from its own generator, so an item never depends on its batch-mates.

    Examples
    --------
    >>> seeds([3, 9], 2), seeds(40, 3), len(seeds(None, 2))
    ([3, 9], [40, 41, 42], 2)
    """
    if isinstance(seed, (list, tuple)):
        if any(x is None for x in seed):
            raise ValueError(f"seed lists must hold ints in [0, 2**64), got {seed!r}")
        out = [check_seed(x) for x in seed]
        if len(out) != batch:
            raise ValueError(
                f"seed must list one seed per prompt ({batch}), got {len(out)}: {seed!r}"
            )
        return out
    first = check_seed(seed)
    if first is None:
        first = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    if first + batch > SEED_LIMIT:
        raise ValueError(
            f"seed={first} gives item i the seed {first} + i, which must stay below 2**64 "
            f"for {batch} prompts; give a smaller seed or a list of seeds"
        )
    return [first + i for i in range(batch)]


def check_hooks(callback, stop) -> None:
    """``callback`` must be callable and ``stop`` must have ``is_set()``, checked before step 1.

    Examples
    --------
    >>> import threading
    >>> check_hooks(print, threading.Event())
    >>> check_hooks(5, None)
    Traceback (most recent call last):
    ...
    TypeError: callback must be None or a callable taking (done_steps, total_steps), got int 5
    """
    if callback is not None and not callable(callback):
        raise TypeError(
            "callback must be None or a callable taking (done_steps, total_steps), "
            f"got {type(callback).__name__} {callback!r:.60}"
        )
    if stop is not None and not callable(getattr(stop, "is_set", None)):
        raise TypeError(
            "stop must be None or an object with is_set(), such as threading.Event(), "
            f"got {type(stop).__name__} {stop!r:.60}"
        )


def check_duration(s, duration) -> float:
    """Seconds of new audio: at least one frame, at most :data:`MAX_DURATION`.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> check_duration(mg.load("tiny"), 2)
    2.0
    """
    duration = check_number(duration, "duration", allowed="seconds > 0")
    if duration <= 0:
        raise ValueError(f"duration must be > 0 seconds, got {duration!r}")
    frame = 1.0 / s.frame_rate
    if duration < frame - 1e-9:
        raise ValueError(
            f"duration must be at least one frame ({frame:g} s at {s.frame_rate} frames/s), "
            f"got {duration!r}"
        )
    if duration > MAX_DURATION:
        raise ValueError(
            f"duration must be <= {MAX_DURATION:g} s (3 hours, the most one call generates; "
            f"duration is in seconds), got {duration:g} s, which would be "
            f"{math.ceil(duration * s.frame_rate):,} frames. For a longer piece, generate it "
            "in parts, each continuing the last with audio_prompt="
        )
    return duration


def validate(
    s: Any,
    *,
    duration: float,
    guidance_scale: float,
    temperature: float,
    top_k: int,
    top_p: float,
    do_sample: bool,
    seed: int | list[int] | None,
    cfg_coef_beta: float | None,
    extend_stride: float | None,
) -> dict:
    """Check every sampling parameter; return them normalised. Errors name the argument.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> opts = validate(mg.load("tiny"), duration=1, guidance_scale=3, temperature=1.0,
    ...                 top_k=250, top_p=0.0, do_sample=True, seed=None, cfg_coef_beta=None,
    ...                 extend_stride=None)
    >>> opts["duration"], opts["guidance_scale"]
    (1.0, 3.0)
    """
    duration = check_duration(s, duration)
    sampling = _check_sampling(guidance_scale, temperature, top_k, top_p, do_sample)
    if not isinstance(seed, (list, tuple)):  # lists are checked against the batch: seeds
        check_seed(seed)
    if cfg_coef_beta is not None:
        if not s.is_melody:
            raise ValueError(
                f"cfg_coef_beta needs a melody checkpoint; {s.name!r} is a text-only model"
            )
        cfg_coef_beta = check_number(cfg_coef_beta, "cfg_coef_beta", allowed=">= 0")
        if cfg_coef_beta < 0:
            raise ValueError(f"cfg_coef_beta must be >= 0, got {cfg_coef_beta!r}")
    if extend_stride is not None:
        extend_stride = check_number(extend_stride, "extend_stride", allowed="seconds")
        if not 0 < extend_stride < s.max_duration:
            raise ValueError(
                f"extend_stride must be in (0, {s.max_duration:g}) seconds (the window), "
                f"got {extend_stride!r}"
            )
    return dict(
        duration=duration, **sampling, cfg_coef_beta=cfg_coef_beta,
        extend_stride=extend_stride,
    )  # fmt: skip


def _check_sampling(guidance_scale, temperature, top_k, top_p, do_sample) -> dict:
    """Guidance and sampling options, normalised, in the order of ``validate``'s result."""
    guidance_scale = check_number(
        guidance_scale, "guidance_scale", allowed=">= 1; 1 turns guidance off"
    )
    if guidance_scale < 1:
        raise ValueError(
            f"guidance_scale must be >= 1 (1 turns guidance off), got {guidance_scale!r}"
        )
    temperature = check_number(temperature, "temperature", allowed="> 0")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)):
        raise TypeError(f"top_k must be an int >= 0 (0 turns it off), got {top_k!r}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 turns it off), got {top_k!r}")
    top_p = check_number(top_p, "top_p", allowed="in [0, 1]; 0 turns it off")
    if not 0.0 <= top_p <= 1.0:
        raise ValueError(f"top_p must be in [0, 1] (0 turns it off), got {top_p!r}")
    return dict(
        guidance_scale=guidance_scale, temperature=temperature, top_k=int(top_k), top_p=top_p,
        do_sample=check_bool(do_sample, "do_sample"),
    )  # fmt: skip


def check_prompts(prompts, name: str = "prompts") -> list[str | None]:
    """A prompt, a list of prompts, or None, as a list (None: unconditional).

    Examples
    --------
    >>> check_prompts("jazz"), check_prompts(None)
    (['jazz'], [None])
    """
    if prompts is None or isinstance(prompts, str):
        return [prompts]
    if isinstance(prompts, (list, tuple)):
        if not prompts:
            raise ValueError(
                f"{name} must not be an empty list; use None for unconditional generation"
            )
        for p in prompts:
            if p is not None and not isinstance(p, str):
                raise TypeError(f"{name} must be strings or None, got {type(p).__name__} {p!r}")
        return list(prompts)
    raise TypeError(
        f"{name} must be a string, a list of strings/None, or None; got {type(prompts).__name__}"
    )
