"""Per-clip metrics for :func:`musicgen_nb.run_grid`: ``f(audio [C, n], sr, prompt) -> float``."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .clap import DEFAULT_CLAP, clap_score, require

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    import numpy as np

#: The metrics :func:`metric` knows by name.
NAMES = ("clap_score", "loudness")


def metric(
    name: str, *, device: str | None = None, **kwargs: Any
) -> Callable[[np.ndarray, int, str | None], float]:
    """A per-clip metric ``f(audio [C, n], sr, prompt) -> float`` for ``run_grid(metrics=[...])``.

    ``"clap_score"`` (kwargs: ``model=``; NaN for an unconditional clip) or
    ``"loudness"`` (integrated LUFS). ``device``: where a metric model runs (None:
    CPU). The CLAP checkpoint is checked here (:func:`~musicgen_nb.metrics.clap.require`),
    so a missing one fails at once, not after a grid has generated every clip.

    Examples
    --------
    >>> metric("clap_score", model="tiny-clap").__name__
    'clap_score'
    """
    if name == "clap_score":
        model = kwargs.pop("model", "clap")
        require(DEFAULT_CLAP if model == "clap" else model)

        def fn(audio, sr, prompt):
            if prompt is None:
                return math.nan
            return float(clap_score(audio[None], sr, [prompt], model=model, device=device)[0])

    elif name == "loudness":
        from ..audio import loudness

        def fn(audio, sr, prompt):
            return float(loudness(audio, sr))

    else:
        raise ValueError(f"unknown metric {name!r}; use 'clap_score', 'loudness' or a callable")
    if kwargs:
        raise TypeError(f"metric {name!r} takes no {sorted(kwargs)}")
    fn.__name__ = name
    return fn


def row_metrics(metrics: list | dict | None, *, device: str | None = None) -> dict:
    """``{column: f(audio, sr, prompt)}`` from a list of names/callables or a dict.

    Names become :func:`metric` on ``device``.

    Examples
    --------
    >>> def peak(audio, sr, prompt):
    ...     return float(abs(audio).max())
    >>> list(row_metrics(["loudness", peak])), row_metrics(None)
    (['loudness', 'peak'], {})
    """
    if metrics is None:
        return {}
    if isinstance(metrics, dict):
        items = list(metrics.items())
    elif isinstance(metrics, (list, tuple)):
        items = [(m if isinstance(m, str) else getattr(m, "__name__", None), m) for m in metrics]
    else:
        raise TypeError(
            f"metrics must be a list of names/callables or a dict, got {type(metrics).__name__}"
        )
    out = {}
    for col, m in items:
        fn = metric(m, device=device) if isinstance(m, str) else m
        if not callable(fn) or not isinstance(col, str) or col in ("", "<lambda>"):
            raise ValueError(
                f"metrics entries must be names or named callables (or a dict name -> callable), got {m!r}"
            )
        out[col] = fn
    return out
