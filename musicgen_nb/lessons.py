"""Loading a model for a lesson: int8 on a CPU, and a decode step time measured on it.

:func:`load` is what the notebooks call (as ``mg.teaching.load``): on a CPU it loads the
decoder's linear layers as weight-only int8 (a decode step on a CPU is bound by reading
its weights, and int8 reads a quarter of fp32's bytes), on a GPU the toolkit's ``"auto"``
precision; then it times a few real decode steps of the loaded model and prints them.
A notebook that compares the model with its fp32 modules by hand passes ``exact=True``.

Examples
--------
>>> s = load("tiny")  # doctest: +ELLIPSIS
tiny: ... ms a decode step (measured just now: 8 steps, ... threads; 50 steps = 1 s of audio)
>>> s.device.type != "cpu" or s.precision == "int8"
True
"""

from __future__ import annotations

import os
from typing import Any

from .models import MusicGen
from .models import load as load_model

#: Decode steps timed after loading (after one warm-up run of the same length).
TIMED_STEPS = 8


def load(name: str | os.PathLike, *, exact: bool = False, **kwargs: Any) -> MusicGen:
    """Load ``name`` for a notebook: int8 on a CPU unless ``exact``; print a measured step time.

    Parameters
    ----------
    name : str or PathLike
        What :func:`musicgen_nb.load` takes: a checkpoint name, an alias or a folder.
    exact : bool, keyword-only
        Keep fp32 on a CPU, for a notebook that compares the model with its fp32 modules by
        hand or trains it. Ignored on a GPU (``"auto"`` precision there).
    **kwargs
        Passed to :func:`musicgen_nb.load`; ``precision=`` given here wins.

    Returns
    -------
    MusicGen

    Raises
    ------
    TypeError
        ``exact`` is not a bool.

    Examples
    --------
    >>> s = load("tiny", exact=True)  # doctest: +ELLIPSIS
    tiny: ... ms a decode step (measured just now: ...)
    >>> s.device.type != "cpu" or s.precision == "fp32"
    True
    """
    import torch

    if not isinstance(exact, bool):
        raise TypeError(f"exact must be True or False, got {exact!r}")
    cuda = torch.cuda.is_available()
    if "precision" not in kwargs:
        kwargs["precision"] = "auto" if cuda or exact else "int8"
    s = load_model(name, **kwargs)
    ms = step_ms(s)
    why = " (kept for exact comparisons)" if exact and not cuda else ""
    # A stand-in runs under the real name: say so, its step time is not the real model's.
    name = f"{s.name} (offline stand-in {s.standin}, random weights)" if s.is_standin else s.name
    print(
        f"{name}: {s.precision} on {s.device.type}{why}, {ms:.0f} ms a decode step (measured "
        f"just now: {TIMED_STEPS} steps, {torch.get_num_threads()} threads; 50 steps = 1 s "
        "of audio)"
    )
    return s


def step_ms(s: MusicGen, steps: int = TIMED_STEPS) -> float:
    """Milliseconds per decode step of ``s``, timed on a short generation after a warm-up.

    Parameters
    ----------
    s : MusicGen
    steps : int
        Decode steps to time (2 to 200).

    Returns
    -------
    float

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> step_ms(mg.load("tiny"), steps=4) > 0
    True
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or not 2 <= steps <= 200:
        raise ValueError(f"steps must be an int in [2, 200], got {steps!r}")
    frames = max(1, steps - (s.num_codebooks - 1))  # the delay pattern adds K - 1 steps
    seconds = frames / s.frame_rate
    s.generate("warm-up", duration=seconds, seed=0, progress=False)
    g = s.generate("warm-up", duration=seconds, seed=0, progress=False)
    return 1000.0 / g.timings["steps_per_s"]
