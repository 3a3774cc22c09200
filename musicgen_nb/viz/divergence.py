"""How much the text moved each sampling step: KL(conditional || unconditional)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import plotly.graph_objects as go

from ..trace import select
from ._util import MAX_POINTS, base_layout
from .entropy import per_codebook_lines

if TYPE_CHECKING:
    import pandas as pd


def divergence(
    trace: pd.DataFrame,
    *,
    item: int = 0,
    codebook: int | list[int] | None = None,
    max_points: int = MAX_POINTS,
) -> go.Figure:
    """KL divergence between the conditional and unconditional predictions over time.

    At every frame and codebook, ``KL(p_cond || p_uncond)`` of the
    temperature-scaled distributions before guidance: how far the prompt pulls
    the model away from what it would play unprompted. Recorded only with
    classifier-free guidance (``guidance_scale > 1``).

    Parameters
    ----------
    trace : pandas.DataFrame
        ``g.trace`` from ``generate(..., trace=True)`` with ``guidance_scale > 1``.
    item : int
        Batch item.
    codebook : int or list of int, optional
        Codebooks to draw (default all).
    max_points : int
        Cap on points per line; longer curves are averaged over consecutive frames.

    Returns
    -------
    plotly.graph_objects.Figure

    Raises
    ------
    ValueError
        The trace holds no KL (generated with ``guidance_scale=1``).

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> from musicgen_nb.viz.divergence import divergence
    >>> g = mg.load("tiny").generate("jazz", duration=1, seed=0, trace=True, progress=False)
    >>> [t.name for t in divergence(g.trace).data]
    ['codebook 0', 'codebook 1', 'codebook 2', 'codebook 3']
    """
    df = select(trace, item=item, columns=("codebook", "frame", "time_s", "kl"))
    if df["kl"].isna().all():
        raise ValueError(
            "this trace has no KL divergence: it is recorded only with classifier-free guidance; "
            "generate with guidance_scale > 1 and trace=True"
        )
    fig = go.Figure(per_codebook_lines(df, "kl", codebook=codebook, max_points=max_points))
    base_layout(
        fig,
        title=f"KL(conditional || unconditional), item {item}",
        xaxis_title="time (s)",
        yaxis_title="KL (nats)",
        legend_title="codebook",
        hovermode="x unified",
    )
    return fig
