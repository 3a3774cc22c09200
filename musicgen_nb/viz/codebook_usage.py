"""Per-codebook usage: entropy (bits) and unique codes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._util import as_array, base_layout, check_int, codes_2d, is_generation

if TYPE_CHECKING:
    import pandas as pd
    from numpy.typing import ArrayLike

    from ..generation import Generation

REQUIRED = ("codebook", "entropy_bits", "unique_codes")


#: Checked before any work: a usage table holds one count per code (MusicGen: 2048).
MAX_CODEBOOK_SIZE = 2**16


def _usage_frame(codes_or_df, codebook_size: int, item):
    """Codes, a Generation or a usage DataFrame -> (DataFrame, total tokens per codebook or None)."""
    import pandas as pd

    if isinstance(codes_or_df, pd.DataFrame):
        missing = [c for c in REQUIRED if c not in codes_or_df.columns]
        if missing:
            raise ValueError(
                f"codes_or_df is a DataFrame without column(s) {missing}; expected the columns of "
                f"musicgen_nb.tokens.codebook_usage: {list(REQUIRED)} (and usage, top_codes, top_counts)"
            )
        if len(codes_or_df) == 0:
            raise ValueError("codes_or_df is an empty DataFrame; expected one row per codebook")
        return codes_or_df, None
    if is_generation(codes_or_df):
        codes_or_df = codes_or_df.codes
    arr = as_array(codes_or_df, "codes_or_df")
    if arr.ndim == 3 and item is None:  # pool every batch item: [B, K, T] -> [K, B * T]
        if 0 in arr.shape:
            raise ValueError(f"codes_or_df must not be empty, got shape {arr.shape}")
        arr = arr.transpose(1, 0, 2).reshape(arr.shape[1], -1)
    codes = codes_2d(arr, 0 if item is None else item, "codes_or_df")
    if codes.min() < 0 or codes.max() >= codebook_size:
        raise ValueError(
            f"codes_or_df holds codes in [{int(codes.min())}, {int(codes.max())}]; "
            f"allowed: 0..{codebook_size - 1} (codebook_size={codebook_size})"
        )
    from ..tokens import codebook_usage as usage_table

    return usage_table(codes, codebook_size=codebook_size), codes.shape[1]


def _top_text(row) -> str:
    codes = row.get("top_codes", None)
    counts = row.get("top_counts", None)
    if codes is None or counts is None:
        return ""
    try:
        pairs = list(zip(list(codes), list(counts), strict=False))
    except TypeError:
        return ""
    return "top codes: " + ", ".join(f"{int(c)} (x{int(n)})" for c, n in pairs)


def codebook_usage(
    codes_or_df: ArrayLike | Generation | pd.DataFrame,
    *,
    codebook_size: int = 2048,
    item: int | None = None,
) -> go.Figure:
    """Bar charts of how each codebook is used: entropy in bits and unique codes.

    Parameters
    ----------
    codes_or_df : array-like, Generation or pandas.DataFrame
        Codes ``[num_codebooks, frames]`` or ``[batch, num_codebooks, frames]``,
        a :class:`~musicgen_nb.Generation`, or the DataFrame returned by
        :func:`musicgen_nb.tokens.codebook_usage`.
    codebook_size : int
        Codes per codebook (2048 for MusicGen); the entropy panel marks the
        maximum, ``log2(codebook_size)`` bits.
    item : int, optional
        Batch item to count; by default all batch items are pooled.

    Returns
    -------
    plotly.graph_objects.Figure
        Two subplots side by side: "entropy (bits)" and "unique codes", one
        bar per codebook ("cb 0" ...). Hover lists the most used codes.

    Examples
    --------
    >>> import numpy as np
    >>> from musicgen_nb import viz
    >>> codes = np.random.default_rng(0).integers(0, 2048, size=(4, 500))
    >>> fig = viz.codebook_usage(codes)
    >>> len(fig.data)
    2
    """
    codebook_size = check_int(codebook_size, "codebook_size", minimum=1, maximum=MAX_CODEBOOK_SIZE)
    df, total = _usage_frame(codes_or_df, codebook_size, item)
    cb = np.asarray(df["codebook"])
    # codebooks count from 0 everywhere (tokens, patterns, notebooks)
    integer = np.issubdtype(cb.dtype, np.integer)
    labels = [f"cb {int(c)}" if integer else str(c) for c in cb]
    entropy = np.asarray(df["entropy_bits"], dtype=np.float64)
    unique = np.asarray(df["unique_codes"], dtype=np.int64)
    top = [_top_text(row) for _, row in df.iterrows()]

    fig = _bars(labels, entropy, unique, top, codebook_size)
    sub = f"codebook size {codebook_size}" + (
        f", {total} tokens per codebook" if total is not None else ""
    )
    # Title + subtitle: in one line it sat on the panel titles at 700 px.
    base_layout(fig, title=f"Codebook usage<br><sup>{sub}</sup>", height=360, showlegend=False)
    fig.update_layout(margin_t=85)
    return fig


def _bars(labels, entropy, unique, top, codebook_size: int) -> go.Figure:
    """Entropy bars (left, up to the ``log2(codebook_size)`` line) and unique-code bars."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["entropy (bits)", "unique codes"])
    fig.add_trace(
        go.Bar(
            x=labels,
            y=entropy,
            customdata=top,
            hovertemplate="%{x}<br>entropy %{y:.2f} bits<br>%{customdata}<extra></extra>",
            name="entropy (bits)",
            marker_color="#3b6fb6",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Bar(
            x=labels,
            y=unique,
            customdata=top,
            hovertemplate="%{x}<br>%{y} unique codes<br>%{customdata}<extra></extra>",
            name="unique codes",
            marker_color="#e08a2c",
        ),
        row=1,
        col=2,
    )
    max_bits = float(np.log2(codebook_size))
    fig.add_hline(
        y=max_bits,
        line=dict(color="grey", dash="dash"),
        annotation_text=f"max {max_bits:.2f} bits",
        annotation_position="bottom right",
        row=1,
        col=1,
    )
    fig.update_yaxes(title_text="bits", range=[0, max_bits * 1.08], row=1, col=1)
    fig.update_yaxes(title_text="codes", row=1, col=2)
    fig.update_xaxes(title_text="codebook", type="category")
    return fig
