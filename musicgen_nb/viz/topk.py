"""The top candidates the sampler chose from at one frame."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..trace import select
from ._util import base_layout, pick_codebooks

if TYPE_CHECKING:
    import pandas as pd

CHOSEN_COLOR = "#d62728"
OTHER_COLOR = "#1f77b4"


def topk(
    trace: pd.DataFrame, *, frame: int, item: int = 0, codebook: int | list[int] | None = None
) -> go.Figure:
    """Bar chart of the most likely tokens and their probabilities at one frame.

    One subplot per codebook. The bar of the token actually sampled is drawn in
    red (when it is among the top candidates); each subplot title gives the
    sampled token and its probability.

    Parameters
    ----------
    trace : pandas.DataFrame
        ``g.trace`` from ``generate(..., trace=True)``.
    frame : int
        Frame index (into ``g.codes``).
    item : int
        Batch item.
    codebook : int or list of int, optional
        Codebooks to show (default all).

    Returns
    -------
    plotly.graph_objects.Figure

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> from musicgen_nb.viz.topk import topk
    >>> g = mg.load("tiny").generate("jazz", duration=1, seed=0, trace=True, progress=False)
    >>> len(topk(g.trace, frame=10).data)
    4
    """
    df = select(
        trace,
        item=item,
        columns=("codebook", "frame", "time_s", "top_ids", "top_probs", "chosen_prob", "token"),
    )
    if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)):
        raise TypeError(f"frame must be an int (an index into g.codes), got {frame!r}")
    rows = df[df["frame"] == int(frame)]
    if rows.empty:
        lo, hi = int(df["frame"].min()), int(df["frame"].max())
        raise ValueError(
            f"frame {frame} was not sampled for item {item}; sampled frames: {lo}..{hi}"
        )
    wanted = pick_codebooks(rows["codebook"], codebook, where=f" at frame {frame}")
    by_k = {int(r.codebook): r for r in rows.itertuples(index=False)}
    fig = _bars([(k, by_k[k]) for k in wanted])
    time_s = float(rows["time_s"].iloc[0])
    fig.update_yaxes(title_text="probability", range=[0, 1], row=1, col=1)
    base_layout(fig, title=f"Top candidates at frame {int(frame)} ({time_s:.2f} s), item {item}")
    return fig


def _bars(rows: list) -> go.Figure:
    """One subplot of bars per ``(codebook, trace row)``, the sampled token in red."""
    titles = []
    for k, r in rows:
        tok = "?" if int(r.token) < 0 else str(int(r.token))
        titles.append(f"codebook {k}: sampled {tok} (p={float(r.chosen_prob):.3f})")
    fig = make_subplots(rows=1, cols=len(rows), subplot_titles=titles, shared_yaxes=True)
    for col, (k, r) in enumerate(rows, start=1):
        ids = [int(i) for i in r.top_ids]
        probs = [float(p) for p in r.top_probs]
        colors = [CHOSEN_COLOR if i == int(r.token) else OTHER_COLOR for i in ids]
        fig.add_trace(
            go.Bar(
                x=[str(i) for i in ids],
                y=probs,
                marker_color=colors,
                name=f"codebook {k}",
                showlegend=False,
                hovertemplate="token %{x}: p=%{y:.4f}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(type="category", title_text="token", row=1, col=col)
    return fig
