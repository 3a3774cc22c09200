"""Entropy of the sampling distribution over time, one line per codebook."""

from __future__ import annotations

from typing import TYPE_CHECKING

import plotly.graph_objects as go

from ..trace import select
from ._util import MAX_POINTS, base_layout, cap_curve, color, trace_codebooks

if TYPE_CHECKING:
    import pandas as pd


def per_codebook_lines(df, column: str, *, codebook=None, max_points: int = MAX_POINTS) -> list:
    """One ``go.Scatter`` per codebook of ``column`` against ``time_s``.

    Each line is capped at ``max_points`` (see :func:`musicgen_nb.viz._util.cap_curve`),
    and codebook ``k`` has the same colour in every figure.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"codebook": [0, 0, 1, 1], "time_s": [0.0, 0.02] * 2,
    ...                    "entropy": [1.0, 2.0, 3.0, 4.0]})
    >>> [t.name for t in per_codebook_lines(df, "entropy")]
    ['codebook 0', 'codebook 1']
    """
    traces = []
    for k in trace_codebooks(df, codebook):
        rows = df[df["codebook"] == k]
        x, y = cap_curve(rows["time_s"].to_numpy(), rows[column].to_numpy(), max_points)
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


def entropy(
    trace: pd.DataFrame,
    *,
    item: int = 0,
    codebook: int | list[int] | None = None,
    max_points: int = MAX_POINTS,
) -> go.Figure:
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
        # Two short lines: one long title is cut off at 700 px.
        title=f"Sampling entropy, item {item}<br><sup>after guidance and warping "
        "(temperature, top-k, top-p)</sup>",
        xaxis_title="time (s)",
        yaxis_title="entropy (nats)",
        legend_title="codebook",
        hovermode="x unified",
    )
    fig.update_layout(margin_t=75)  # room for the subtitle line
    return fig
