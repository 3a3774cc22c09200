"""Planning an attention capture: which layers and heads, and how big it will be.

:func:`plan_capture` checks ``attention_layers=``, ``attention_heads=`` and
``attention_budget_mb=`` and estimates the capture's size (:func:`estimate_mb`) before
any work; a capture over the budget is refused with its size and how to shrink it.

Examples
--------
>>> import musicgen_nb as mg
>>> plan_capture(mg.load("tiny"), batch=1, frames=100, layers=[-1])["layers"]
[1]
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from typing import Any

__all__ = ["DEFAULT_TEXT_LEN", "estimate_mb", "plan_capture"]

DEFAULT_TEXT_LEN = 64  # tokens assumed for the estimate when the text length is unknown


def _int_list(name: str, value, count: int, what: str) -> list[int]:
    items = (
        [value] if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    )
    try:
        items = list(items)
    except TypeError:
        raise TypeError(
            f"{name} must be None, an int or a list of ints in [0, {count}), got {value!r}"
        ) from None
    if not items:
        raise ValueError(f"{name} must not be empty; use None for all {what} (0..{count - 1})")
    out = []
    for i in items:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(
                f"{name} must hold ints in [0, {count}), got {type(i).__name__} {i!r} in {value!r}"
            )
        i = int(i)
        if not -count <= i < count:
            raise ValueError(
                f"{name} has {i}, out of range: the model has {count} {what} (0..{count - 1})"
            )
        out.append(i % count)
    return sorted(set(out))


def estimate_mb(
    s: Any, *, batch: int, frames: int, text_len: int | None = None, layers: int
) -> dict:
    """Estimate the size of an attention capture, in MB (10**6 bytes).

    Parameters
    ----------
    s : MusicGen
    batch : int
        Batch items (only the conditional branch is kept).
    frames : int
        Frames of the captured (first) window, audio-prompt frames included.
    text_len : int, optional
        Text tokens (padded); None assumes ``DEFAULT_TEXT_LEN``.
    layers : int
        Number of captured layers.

    Returns
    -------
    dict
        ``self_mb``, ``cross_mb``, ``total_mb``, ``positions`` (self-attention
        side), ``steps`` (cross-attention queries), ``text_len``, ``prefix_len``.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> est = estimate_mb(mg.load("tiny"), batch=1, frames=100, text_len=10, layers=2)
    >>> est["positions"], est["steps"]
    (103, 103)
    """
    text_len = DEFAULT_TEXT_LEN if text_len is None else int(text_len)
    K = int(s.num_codebooks)
    steps = int(frames) + K - 1  # positions fed to the decoder: BOS + delayed frames - 1
    prefix = 0
    if s.is_melody:
        prefix = int(s.model.config.chroma_length) + text_len
    positions = prefix + steps
    self_b = layers * batch * positions * positions * 2  # dense float16 result
    cross_b = 0 if s.is_melody else layers * batch * steps * text_len * 2
    return dict(
        self_mb=self_b / 1e6, cross_mb=cross_b / 1e6, total_mb=(self_b + cross_b) / 1e6,
        positions=positions, steps=steps, text_len=text_len, prefix_len=prefix,
    )  # fmt: skip


def plan_capture(
    s: Any, *, batch: int, frames: int, text_len: int | None = None, layers: int | list[int] | None=None, heads: int | list[int] | None=None,
    budget_mb: float = 512.0,
) -> dict:  # fmt: skip
    """Validate an attention request and return the engine's capture spec.

    Parameters
    ----------
    s : MusicGen
    batch : int
        Number of batch items; the first ``batch`` rows (the conditional
        guidance branch) are captured.
    frames : int
        Frames of the first window (the only one captured).
    text_len : int, optional
        Padded text length, for the estimate (None assumes 64 tokens).
    layers : int or list of int, optional
        Decoder layers to capture (``attention_layers=``); None captures all.
        Negative indices count from the end.
    heads : int or list of int, optional
        Heads to average (``attention_heads=``); None averages all heads.
    budget_mb : float
        Largest capture allowed (``attention_budget_mb=``).

    Returns
    -------
    dict
        ``{"layers": [...], "heads": [...] or None, "rows": batch}`` plus
        ``"estimate"`` (see :func:`estimate_mb`).

    Raises
    ------
    ValueError
        Layers or heads out of range, or an estimated size over ``budget_mb``;
        the message gives the size and how to shrink it.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> cap = plan_capture(mg.load("tiny"), batch=1, frames=100, layers=[-1])
    >>> cap["layers"], cap["heads"], cap["rows"]
    ([1], None, 1)
    """
    cfg = s.model.decoder.config
    n_layers, n_heads = int(cfg.num_hidden_layers), int(cfg.num_attention_heads)
    layer_list = (
        list(range(n_layers))
        if layers is None
        else _int_list("attention_layers", layers, n_layers, "decoder layers")
    )
    head_list = (
        None if heads is None else _int_list("attention_heads", heads, n_heads, "attention heads")
    )
    if isinstance(budget_mb, bool) or not isinstance(budget_mb, (int, float, np.number)):
        raise TypeError(f"attention_budget_mb must be a number of MB > 0, got {budget_mb!r}")
    budget_mb = float(budget_mb)
    if math.isnan(budget_mb) or budget_mb <= 0:
        raise ValueError(f"attention_budget_mb must be > 0 MB, got {budget_mb!r}")
    est = estimate_mb(s, batch=batch, frames=frames, text_len=text_len, layers=len(layer_list))
    if est["total_mb"] > budget_mb:
        seconds = frames / s.frame_rate
        per_layer = est["total_mb"] / len(layer_list)
        fit = int(budget_mb // per_layer)
        layers_hint = (
            f"e.g. attention_layers=[{n_layers - 1}]; each layer adds about {per_layer:.1f} MB"
            if fit >= 1
            else f"even one layer takes about {per_layer:.1f} MB here"
        )
        raise ValueError(
            f"attention capture would take about {est['total_mb']:.1f} MB "
            f"(self-attention {est['self_mb']:.1f} MB + cross-attention {est['cross_mb']:.1f} MB: "
            f"{len(layer_list)} layer(s) x {batch} item(s) x {est['positions']} positions, "
            f"{seconds:g} s captured), over attention_budget_mb={budget_mb:g}. "
            f"To shrink it: capture fewer layers with attention_layers= ({layers_hint}), "
            f"generate a shorter duration (self-attention grows with its square), "
            f"use fewer prompts per call, or raise the limit with "
            f"attention_budget_mb={math.ceil(est['total_mb'])}."
        )
    return {"layers": layer_list, "heads": head_list, "rows": int(batch), "estimate": est}
