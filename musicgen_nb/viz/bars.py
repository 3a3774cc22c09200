"""One horizontal bar per named setting: a measure compared across runs.

Vertical bars with long names ("temperature 1, top-k 250 (defaults)") get their labels
rotated, and at 700 px the rotated labels take more room than the bars. Here the names
sit on the left, horizontal, one per row, at any width.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import plotly.graph_objects as go

from ._util import base_layout, color, esc

#: Names longer than this are refused: at 700 px a longer label leaves the bars no room.
MAX_NAME_CHARS = 40
MAX_BARS = 60
ROW_PX = 30  # height of one bar's row


def bars(
    values: Mapping[str, float],
    *,
    title: str,
    value_title: str,
    value_range: tuple[float, float] | None = None,
    value_format: str = ".2f",
) -> go.Figure:
    """Horizontal bars, one per name, in the order given (the first at the top).

    Parameters
    ----------
    values : Mapping[str, float]
        Name of each setting or run -> its value (a dict or a pandas Series). Names are
        at most 40 characters; values are finite numbers.
    title : str
        The figure's title.
    value_title : str
        Title of the value axis (the horizontal one).
    value_range : (float, float) or None
        Fixed range of the value axis (e.g. ``(0, 1)`` for a share); None fits the data.
    value_format : str
        d3 format of the value printed at the end of each bar (``".0%"``, ``".2f"``).

    Returns
    -------
    plotly.graph_objects.Figure
        One ``go.Bar`` with ``orientation="h"``; names on the y axis, horizontal
        (``tickangle=0``), the first name at the top; the height grows with the count.

    Examples
    --------
    >>> from musicgen_nb import viz
    >>> fig = viz.bars({"greedy": 0.9, "temperature 1.3": 0.1}, title="Repetition",
    ...                value_title="share of frames", value_range=(0, 1))
    >>> list(fig.data[0].y), fig.data[0].orientation, fig.layout.yaxis.tickangle
    (['greedy', 'temperature 1.3'], 'h', 0)
    """
    names, nums = _check(values)
    texts = {"title": title, "value_title": value_title, "value_format": value_format}
    for arg, text in texts.items():
        if not isinstance(text, str):
            raise TypeError(f"{arg} must be a str, got {type(text).__name__}")
    if value_range is not None:
        ok = isinstance(value_range, (tuple, list)) and len(value_range) == 2
        if not ok or not all(_finite(v) for v in value_range) or value_range[0] >= value_range[1]:
            raise ValueError(
                f"value_range must be (low, high) with low < high, got {value_range!r}"
            )
    fig = go.Figure(
        go.Bar(x=nums, y=[esc(n) for n in names], orientation="h", marker_color=color(0),
               text=nums, texttemplate=f"%{{x:{value_format}}}", textposition="auto",
               hovertemplate="%{y}: %{x}<extra></extra>", cliponaxis=False)
    )  # fmt: skip
    base_layout(fig, title=esc(title), height=110 + ROW_PX * len(names), showlegend=False)
    fig.update_layout(margin=dict(l=10, r=30, t=60, b=50))
    fig.update_yaxes(autorange="reversed", tickangle=0, automargin=True, type="category")
    fig.update_xaxes(title_text=esc(value_title))
    if value_range is not None:
        fig.update_xaxes(range=list(value_range))
    return fig


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check(values) -> tuple[list[str], list[float]]:
    """Names and float values of ``values``, or a ValueError/TypeError naming ``values``."""
    if not hasattr(values, "items"):
        raise TypeError(f"values must be a mapping of name -> number, got {type(values).__name__}")
    items = list(values.items())
    if not 1 <= len(items) <= MAX_BARS:
        raise ValueError(f"values must hold 1 to {MAX_BARS} names, got {len(items)}")
    names, nums = [], []
    for name, v in items:
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARS:
            raise ValueError(
                f"values: each name must be a str of 1 to {MAX_NAME_CHARS} characters "
                f"(longer labels do not fit beside the bars at 700 px), got {name!r}"
            )
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = math.nan
        if not math.isfinite(f) or isinstance(v, bool):
            raise ValueError(f"values[{name!r}] must be a finite number, got {v!r}")
        names.append(name)
        nums.append(f)
    return names, nums
