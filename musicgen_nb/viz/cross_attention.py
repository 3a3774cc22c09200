"""Which text tokens the decoder attended at each step (cross-attention)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from .._util.checks import check_int
from ._util import base_layout, check_attentions, esc

if TYPE_CHECKING:
    from ..attention import Attentions

MAX_CELLS = 300_000  # values sent to the browser, over all layers


def _check_cross(attn, *, shape: bool = False) -> None:
    """Raise unless ``attn`` holds cross-attention (melody models have none) of the right shape."""
    check_attentions(attn)
    if attn.cross is None:
        raise ValueError(
            "attn has no cross-attention: melody models condition on a prefix of the "
            "self-attention; use self_attention(attn) instead"
        )
    if shape and (attn.cross.ndim != 4 or attn.cross.shape[:2] != (len(attn.layers), attn.batch)):
        raise ValueError(
            f"attn.cross must be [layers={len(attn.layers)}, batch={attn.batch}, steps, text_len], "
            f"got shape {attn.cross.shape}"
        )


def _item_tokens(attn, item: int) -> list:
    """The text tokens of batch item ``item``; ValueError for an unconditional item."""
    tokens = attn.text_tokens[attn._item(item)]
    if not tokens:
        raise ValueError(
            f"item {item} has no text (an unconditional prompt): nothing to cross-attend"
        )
    return tokens


def pool_rows(z: np.ndarray, factor: int) -> np.ndarray:
    """Average ``z`` over blocks of ``factor`` consecutive rows (the last block may be short).

    Examples
    --------
    >>> pool_rows(np.arange(5.0)[:, None], 2)[:, 0].tolist()
    [0.5, 2.5, 4.0]
    """
    if factor <= 1:
        return z
    n = z.shape[0]
    out = np.add.reduceat(z, np.arange(0, n, factor), axis=0)
    counts = np.minimum(factor, n - np.arange(0, n, factor))
    return out / counts[:, None]


def cross_attention(
    attn: Attentions, *, item: int = 0, layer: int | None = None, max_cells: int = MAX_CELLS
) -> go.Figure:
    """Heatmap of cross-attention: text tokens (rows) over generation time (columns).

    One heatmap trace per captured layer, with a dropdown that shows one layer
    at a time. Column ``j`` is the decode step that predicts codebook 0's frame
    ``j`` (``j / frame_rate`` seconds); each column sums to 1 over the tokens.

    Parameters
    ----------
    attn : musicgen_nb.attention.Attentions
        ``g.attentions`` from ``generate(..., attentions=True)`` on a text model.
    item : int
        Batch item.
    layer : int, optional
        Decoder layer shown first (default the first captured layer).
    max_cells : int
        Cap on values sent to the browser (all layers together); longer
        generations are averaged over consecutive steps.

    Returns
    -------
    plotly.graph_objects.Figure

    Raises
    ------
    ValueError
        Melody models (no cross-attention), an unconditional item (no text),
        or a layer that was not captured.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> from musicgen_nb.viz.cross_attention import cross_attention
    >>> g = mg.load("tiny").generate("jazz", duration=1, seed=0, attentions=True, progress=False)
    >>> fig = cross_attention(g.attentions)
    >>> len(fig.data), [t.visible for t in fig.data]
    (2, [True, False])
    """
    _check_cross(attn, shape=True)
    max_cells = check_int(max_cells, "max_cells", minimum=1)
    shown = attn.layer_index(attn.layers[0] if layer is None else layer)
    tokens = [esc(t) for t in _item_tokens(attn, item)]  # '</s>' is not a tag
    factor, times = _time_pooling(attn, len(tokens), max_cells)
    fig = go.Figure(
        [_layer_heatmap(attn, lay, item, factor, times, tokens, i == shown)
         for i, lay in enumerate(attn.layers)]
    )  # fmt: skip
    base_layout(
        fig,
        title=_title(attn, item, attn.layers[shown]),
        xaxis_title="time (s)",
        yaxis=dict(
            title="text token", tickmode="array", tickvals=list(range(len(tokens))),
            ticktext=tokens, autorange="reversed",
        ),
        updatemenus=[_layer_menu(attn, item, shown)],
    )  # fmt: skip
    return fig


def _time_pooling(attn, n_tokens: int, max_cells: int) -> tuple[int, np.ndarray]:
    """Steps pooled per column so all layers fit in ``max_cells``, and the columns' times."""
    steps = attn.cross.shape[2]
    per_layer = max(1, max_cells // len(attn.layers))
    factor = max(1, int(np.ceil(steps * n_tokens / per_layer)))
    times = pool_rows(np.arange(steps, dtype=np.float64)[:, None] / attn.frame_rate, factor)[:, 0]
    return factor, times


def _layer_heatmap(attn, lay: int, item: int, factor: int, times, tokens, visible: bool):
    """The heatmap of one layer: tokens (rows) over time, pooled over ``factor`` steps."""
    z = pool_rows(attn.cross_for(lay, item).astype(np.float64), factor)  # [steps', tokens]
    return go.Heatmap(
        z=z.T.astype(np.float32),
        x=times,
        y=np.arange(len(tokens)),
        zmin=0.0,
        colorscale="Viridis",
        colorbar=dict(title="weight"),
        name=f"layer {lay}",
        visible=visible,
        customdata=np.array(tokens, dtype=object)[:, None].repeat(len(times), 1),
        hovertemplate="%{customdata} at %{x:.2f} s: %{z:.3f}<extra>layer " + str(lay) + "</extra>",
    )


def _layer_menu(attn, item: int, shown: int) -> dict:
    """The dropdown that shows one layer at a time (and retitles the figure)."""
    buttons = [
        dict(
            label=f"layer {lay}",
            method="update",
            args=[
                {"visible": [j == i for j in range(len(attn.layers))]},
                {"title.text": _title(attn, item, lay)},
            ],
        )
        for i, lay in enumerate(attn.layers)
    ]
    return dict(buttons=buttons, active=shown, direction="down", x=1.0, xanchor="right", y=1.15)


def _title(attn, item, layer) -> str:
    heads = "all heads" if attn.heads is None else f"heads {attn.heads}"
    return f"Cross-attention, item {item}, layer {layer} ({heads})"


def cross_attention_by_layer(attn: Attentions, *, item: int = 0) -> go.Figure:
    """Mean cross-attention each prompt token gets in each layer, over the whole clip.

    Parameters
    ----------
    attn : musicgen_nb.attention.Attentions
        ``g.attentions`` from ``generate(..., attentions=True)`` on a text model.
    item : int
        Batch item.

    Returns
    -------
    plotly.graph_objects.Figure
        One heatmap: a row per captured layer, a column per text token (labelled
        ``"position:token"``, escaped so that ``</s>`` shows as typed).

    Raises
    ------
    ValueError
        Melody models (no cross-attention) or an unconditional item (no text).

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> from musicgen_nb.viz.cross_attention import cross_attention_by_layer
    >>> g = mg.load("tiny").generate("jazz", duration=1, seed=0, attentions=True, progress=False)
    >>> fig = cross_attention_by_layer(g.attentions)
    >>> fig.data[0].x[-1]
    '1:&lt;/s&gt;'
    """
    _check_cross(attn)
    tokens = _item_tokens(attn, item)
    z = np.stack([attn.cross_for(layer, item).astype(np.float64).mean(0) for layer in attn.layers])
    labels = [esc(f"{i}:{t}") for i, t in enumerate(tokens)]
    fig = go.Figure(
        go.Heatmap(
            z=z.astype(np.float32),
            x=labels,
            y=[f"layer {layer}" for layer in attn.layers],
            zmin=0.0,
            colorscale="Blues",
            colorbar=dict(title="mean weight"),
            hovertemplate="%{y}, token %{x}: %{z:.3f}<extra></extra>",
        )
    )
    base_layout(
        fig,
        title=f"Mean cross-attention per layer and token, item {item}",
        height=max(260, 28 * len(attn.layers) + 160),
        xaxis=dict(title="text token", type="category", tickangle=-45),
        yaxis=dict(title="layer", type="category", autorange="reversed"),
    )
    return fig
