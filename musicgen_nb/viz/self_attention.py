"""Which earlier positions each position attended (decoder self-attention)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from .._util.checks import check_int
from ._util import base_layout, check_attentions

if TYPE_CHECKING:
    from ..attention import Attentions


def pool_square(z: np.ndarray, factor: int) -> np.ndarray:
    """Shrink a square attention matrix by ``factor``.

    Query rows are averaged over each block and key columns summed, so every
    pooled row still sums to what the original rows summed to (1).

    Examples
    --------
    >>> z = np.tril(np.ones((4, 4))) / np.arange(1, 5)[:, None]
    >>> pool_square(z, 2).sum(1).round(6).tolist()
    [1.0, 1.0]
    """
    if factor <= 1:
        return z
    n = z.shape[0]
    starts = np.arange(0, n, factor)
    keys = np.add.reduceat(z, starts, axis=1)
    rows = np.add.reduceat(keys, starts, axis=0)
    counts = np.minimum(factor, n - starts)
    return rows / counts[:, None]


def self_attention(
    attn: Attentions, *, item: int = 0, layer: int = 0, max_positions: int = 600
) -> go.Figure:
    """Heatmap of decoder self-attention for one layer: query position (rows) by key position.

    The matrix is lower triangular (a position sees only earlier ones). For
    melody models the first ``attn.prefix_len`` positions are the conditioning
    prefix (chroma frames, then text); dotted lines mark where it ends. Audio
    position ``p`` (counted after the prefix, 0 is BOS) feeds the step that
    predicts codebook 0's frame ``p``.

    Parameters
    ----------
    attn : musicgen_nb.attention.Attentions
        ``g.attentions`` from ``generate(..., attentions=True)``.
    item : int
        Batch item.
    layer : int
        Decoder layer (one of ``attn.layers``).
    max_positions : int
        Cap on the side of the matrix sent to the browser. Longer sequences are
        pooled in blocks (rows averaged, keys summed, so rows still sum to 1).

    Returns
    -------
    plotly.graph_objects.Figure

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> from musicgen_nb.viz.self_attention import self_attention
    >>> g = mg.load("tiny").generate("jazz", duration=1, seed=0, attentions=True, progress=False)
    >>> self_attention(g.attentions, layer=1).data[0].z.shape
    (53, 53)
    """
    _check_self(attn)
    max_positions = check_int(max_positions, "max_positions", minimum=2)
    z = attn.self_for(layer, item).astype(np.float64)
    n = z.shape[0]
    factor = int(np.ceil(n / max_positions))
    z = pool_square(z, factor)
    pos = np.arange(0, n, max(1, factor))
    fig = go.Figure(
        go.Heatmap(
            z=z.astype(np.float32), x=pos, y=pos, zmin=0.0, colorscale="Viridis",
            colorbar=dict(title="weight"), name=f"layer {layer}",
            hovertemplate="query %{y} -> key %{x}: %{z:.3f}<extra></extra>",
        )
    )  # fmt: skip
    shapes, notes = _prefix_marks(attn, n)
    heads = "all heads" if attn.heads is None else f"heads {attn.heads}"
    pooled = f", pooled x{factor}" if factor > 1 else ""
    base_layout(
        fig,
        title=f"Self-attention, item {item}, layer {layer} ({heads}{pooled})",
        xaxis_title="key position",
        yaxis=dict(title="query position", autorange="reversed"),
        shapes=shapes,
        annotations=notes,
    )
    return fig


def _prefix_marks(attn, n: int) -> tuple[list, list]:
    """Dotted lines (and their labels) where a melody model's chroma and text prefix end."""
    shapes, notes = [], []
    marks = []
    if attn.prefix_len:
        if attn.chroma_len:
            marks.append((attn.chroma_len, "chroma | text"))
        marks.append((attn.prefix_len, "prefix | audio"))
    line = dict(dash="dot", color="white")
    for at, label in marks:
        edge = at - 0.5
        shapes.append(dict(type="line", x0=edge, x1=edge, y0=-0.5, y1=n - 0.5, line=line))
        shapes.append(dict(type="line", y0=edge, y1=edge, x0=-0.5, x1=n - 0.5, line=line))
        notes.append(
            dict(x=edge, y=-0.5, text=label, showarrow=False, yanchor="bottom", font=dict(size=10))
        )
    return shapes, notes


def _check_self(attn) -> None:
    """Raise unless ``attn`` holds self-attention ``[layers, batch, positions, positions]``."""
    check_attentions(attn)
    sa = attn.self_attn
    if sa.ndim != 4 or sa.shape[:2] != (len(attn.layers), attn.batch) or sa.shape[2] != sa.shape[3]:
        raise ValueError(
            f"attn.self_attn must be [layers={len(attn.layers)}, batch={attn.batch}, positions, positions], "
            f"got shape {sa.shape}"
        )
