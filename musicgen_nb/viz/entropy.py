"""Entropy of the sampling distribution over time, one line per codebook."""

from __future__ import annotations

import warnings

import numpy as np
import plotly.graph_objects as go

from ..trace import select
from ._util import base_layout, color

MAX_POINTS = 4000


def _curve(x, y, max_points: int = MAX_POINTS):
    """Cap a curve at ``max_points`` points by averaging consecutive bins (NaN-aware)."""
    if (
        isinstance(max_points, bool)
        or not isinstance(max_points, (int, np.integer))
        or max_points < 2
    ):
        raise ValueError(f"max_points must be an int >= 2, got {max_points!r}")
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) <= max_points:
        return x, y
    f = int(np.ceil(len(x) / max_points))
    n = int(np.ceil(len(x) / f)) * f
    xp = np.full(n, np.nan)
    yp = np.full(n, np.nan)
    xp[: len(x)], yp[: len(y)] = x, y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN bins stay NaN
        return np.nanmean(xp.reshape(-1, f), 1), np.nanmean(yp.reshape(-1, f), 1)


def _codebooks(df, codebook):
    available = sorted(int(k) for k in df["codebook"].unique())
    if codebook is None:
        return available
    wanted = [codebook] if isinstance(codebook, (int, np.integer)) else list(codebook)
    for k in wanted:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or int(k) not in available:
            raise ValueError(f"codebook {k!r} is not in the trace; codebooks: {available}")
    return [int(k) for k in wanted]


def per_codebook_lines(df, column: str, *, codebook=None, max_points: int = MAX_POINTS) -> list:
    """One ``go.Scatter`` per codebook of ``column`` against ``time_s``."""
    traces = []
    for k in _codebooks(df, codebook):
        rows = df[df["codebook"] == k]
        x, y = _curve(rows["time_s"].to_numpy(), rows[column].to_numpy(), max_points)
        traces.append(
            go.Scatter(
                x=x,
                y=y,
                mode="lines",
                name=f"codebook {k}",
                legendgroup=f"codebook {k}",
                line=dict(color=color(k)),  # codebook k has one colour in every figure
                hovertemplate="%{x:.2f} s: %{y:.3f}<extra>codebook " + str(k) + "</extra>",
            )
        )
    return traces


def entropy(trace, *, item: int = 0, codebook=None, max_points: int = MAX_POINTS) -> go.Figure:
    """Entropy of the sampling distribution at every frame, one line per codebook.

    The distribution is the one tokens were drawn from: after guidance,
    temperature, top-k and top-p. Low entropy means the model was sure; with
    ``top_k=250`` the entropy cannot exceed ``log(250)``.

    Parameters
    ----------
    trace : pandas.DataFrame
        ``g.trace`` from ``generate(..., trace=True)``.
    item : int
        Batch item.
    codebook : int or list of int, optional
        Codebooks to draw (default all).
    max_points : int
        Cap on points per line sent to the browser; longer curves are averaged
        over consecutive frames.

    Returns
    -------
    plotly.graph_objects.Figure

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> from musicgen_nb.viz.entropy import entropy
    >>> g = mg.load("tiny").generate("jazz", duration=1, seed=0, trace=True, progress=False)
    >>> fig = entropy(g.trace)
    >>> len(fig.data)
    4
    """
    df = select(trace, item=item, columns=("codebook", "frame", "time_s", "entropy"))
    fig = go.Figure(per_codebook_lines(df, "entropy", codebook=codebook, max_points=max_points))
    base_layout(
        fig,
        title=f"Sampling entropy after guidance and warping (temperature, top-k, top-p), item {item}",
        xaxis_title="time (s)",
        yaxis_title="entropy (nats)",
        legend_title="codebook",
        hovermode="x unified",
    )
    return fig
