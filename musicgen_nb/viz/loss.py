"""The training loss curve of a fine-tune (and its teacher-forced token accuracy).

Examples
--------
>>> fig = loss_figure([dict(step=1, loss=7.6, accuracy=0.0), dict(step=2, loss=6.9, accuracy=0.1)])
>>> [t.name for t in fig.data]
['loss', 'token accuracy (batch)']
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import plotly.graph_objects as go
from plotly.subplots import make_subplots

if TYPE_CHECKING:
    import pandas as pd


def loss_figure(history: list[dict] | pd.DataFrame) -> go.Figure:
    """A plotly figure of the training loss (and teacher-forced accuracy) per step.

    Parameters
    ----------
    history : list of dict or pandas.DataFrame
        Rows with ``step``, ``loss`` and ``accuracy`` (``FineTune.history``).

    Returns
    -------
    plotly.graph_objects.Figure
        Loss on the left axis, accuracy (0 to 1) on the right one.

    Examples
    --------
    >>> import pandas as pd
    >>> rows = pd.DataFrame(dict(step=[1, 2, 3], loss=[7.0, 5.0, 3.0], accuracy=[0.0, 0.2, 0.5]))
    >>> fig = loss_figure(rows)
    >>> list(fig.data[0].y), fig.layout.xaxis.title.text
    ([7.0, 5.0, 3.0], 'step')
    """
    rows = history.to_dict("records") if hasattr(history, "to_dict") else list(history)
    steps = [r["step"] for r in rows]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=steps, y=[r["loss"] for r in rows], name="loss", mode="lines"))
    fig.add_trace(
        go.Scatter(x=steps, y=[r["accuracy"] for r in rows], name="token accuracy (batch)",
                   mode="lines", line=dict(dash="dot")),
        secondary_y=True,
    )  # fmt: skip
    fig.update_layout(  # legend below the plot: at 700 px a side legend squeezes it
        title="Fine-tuning", xaxis_title="step", height=360, margin=dict(l=50, r=50, t=40, b=40),
        legend=dict(orientation="h", x=0, y=-0.3, yanchor="top"),
    )  # fmt: skip
    fig.update_yaxes(title_text="cross-entropy", secondary_y=False)
    # Round percentages, and no second grid: its lines would not match the loss axis's.
    fig.update_yaxes(
        title_text="accuracy", range=[0, 1], dtick=0.25, tickformat=".0%", showgrid=False,
        secondary_y=True,
    )  # fmt: skip
    fig.update_layout(template="plotly_white")
    return fig
