"""Which text tokens the decoder attended at each step (cross-attention)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ._util import base_layout, esc

MAX_CELLS = 300_000  # values sent to the browser, over all layers


def _check_attn(attn):
    from ..attention import Attentions

    if attn is None:
        raise TypeError("attn is None: generate with attentions=True to record g.attentions")
    if not isinstance(attn, Attentions):
        raise TypeError(
            f"attn must be musicgen_nb.attention.Attentions (g.attentions), got {type(attn).__name__}"
        )


def pool_rows(z: np.ndarray, factor: int) -> np.ndarray:
    """Average ``z`` over blocks of ``factor`` consecutive rows (the last block may be short)."""
    if factor <= 1:
        return z
    n = z.shape[0]
    out = np.add.reduceat(z, np.arange(0, n, factor), axis=0)
    counts = np.minimum(factor, n - np.arange(0, n, factor))
    return out / counts[:, None]


def cross_attention(
    attn, *, item: int = 0, layer: int | None = None, max_cells: int = MAX_CELLS
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
    _check_attn(attn)
    if attn.cross is None:
        raise ValueError(
            "attn has no cross-attention: melody models condition on a prefix of the "
            "self-attention; use self_attention(attn) instead"
        )
    if attn.cross.ndim != 4 or attn.cross.shape[:2] != (len(attn.layers), attn.batch):
        raise ValueError(
            f"attn.cross must be [layers={len(attn.layers)}, batch={attn.batch}, steps, text_len], "
            f"got shape {attn.cross.shape}"
        )
    if isinstance(max_cells, bool) or not isinstance(max_cells, (int, np.integer)) or max_cells < 1:
        raise ValueError(f"max_cells must be an int >= 1, got {max_cells!r}")
    first = attn.layers[0] if layer is None else layer
    shown = attn.layer_index(first)
    tokens = [esc(t) for t in attn.text_tokens[attn._item(item)]]  # '</s>' is not a tag
    if not tokens:
        raise ValueError(
            f"item {item} has no text (an unconditional prompt): nothing to cross-attend"
        )
    steps = attn.cross.shape[2]
    per_layer = max(1, max_cells // len(attn.layers))
    factor = max(1, int(np.ceil(steps * len(tokens) / per_layer)))
    times = pool_rows(np.arange(steps, dtype=np.float64)[:, None] / attn.frame_rate, factor)[:, 0]
    fig = go.Figure()
    for i, lay in enumerate(attn.layers):
        z = pool_rows(attn.cross_for(lay, item).astype(np.float64), factor)  # [steps', tokens]
        fig.add_trace(
            go.Heatmap(
                z=z.T.astype(np.float32),
                x=times,
                y=np.arange(len(tokens)),
                zmin=0.0,
                colorscale="Viridis",
                colorbar=dict(title="weight"),
                name=f"layer {lay}",
                visible=i == shown,
                customdata=np.array(tokens, dtype=object)[:, None].repeat(len(times), 1),
                hovertemplate="%{customdata} at %{x:.2f} s: %{z:.3f}<extra>layer "
                + str(lay)
                + "</extra>",
            )
        )
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
    base_layout(
        fig,
        title=_title(attn, item, attn.layers[shown]),
        xaxis_title="time (s)",
        yaxis=dict(
            title="text token", tickmode="array", tickvals=list(range(len(tokens))),
            ticktext=tokens, autorange="reversed",
        ),
        updatemenus=[dict(buttons=buttons, active=shown, direction="down", x=1.0, xanchor="right", y=1.15)],
    )  # fmt: skip
    return fig


def _title(attn, item, layer) -> str:
    heads = "all heads" if attn.heads is None else f"heads {attn.heads}"
    return f"Cross-attention, item {item}, layer {layer} ({heads})"


def cross_attention_by_layer(attn, *, item: int = 0) -> go.Figure:
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
    _check_attn(attn)
    if attn.cross is None:
        raise ValueError(
            "attn has no cross-attention: melody models condition on a prefix of the "
            "self-attention; use self_attention(attn) instead"
        )
    tokens = attn.text_tokens[attn._item(item)]
    if not tokens:
        raise ValueError(
            f"item {item} has no text (an unconditional prompt): nothing to cross-attend"
        )
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
