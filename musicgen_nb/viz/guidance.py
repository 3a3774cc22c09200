"""Compare sampling entropy and KL across guidance scales."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..trace import select
from ._util import MAX_POINTS, base_layout, cap_curve, color, trace_codebooks


def _scales(generations) -> list:
    """(scale, trace DataFrame) pairs from a dict or a list."""
    if isinstance(generations, dict):
        pairs = list(generations.items())
    elif isinstance(generations, (list, tuple)):
        pairs = []
        for g in generations:
            params = getattr(g, "params", None)
            if not isinstance(params, dict) or "guidance_scale" not in params:
                raise TypeError(
                    "generations as a list must hold Generation objects (their params give the "
                    f"guidance scale); got {type(g).__name__}. Pass a dict {{scale: trace}} otherwise"
                )
            pairs.append((params["guidance_scale"], g))
    else:
        raise TypeError(
            f"generations must be a dict {{guidance_scale: Generation}} or a list of Generation, "
            f"got {type(generations).__name__}"
        )
    if not pairs:
        raise ValueError("generations is empty; give at least one Generation")
    out = []
    for scale, g in pairs:
        trace = g if g is None or hasattr(g, "columns") else getattr(g, "trace", None)
        if trace is None:
            raise ValueError(
                f"the generation for guidance_scale={scale!r} has no trace; generate with trace=True"
            )
        out.append((float(scale), trace))
    return sorted(out, key=lambda p: p[0])


def _mean_curve(df, column, codebooks):
    rows = df[df["codebook"].isin(codebooks)]
    agg = rows.groupby("frame", sort=True).agg(time_s=("time_s", "first"), value=(column, "mean"))
    return agg["time_s"].to_numpy(), agg["value"].to_numpy()


def guidance_comparison(
    generations: dict | list,
    *,
    item: int = 0,
    codebook: int | list[int] | None = None,
    max_points: int = MAX_POINTS,
) -> go.Figure:
    """Entropy (top row) and KL divergence (bottom row) for several guidance scales.

    Give generations made with the same prompt and seed and only the guidance
    scale changed: the curves then show what guidance alone does. Each line is
    the mean over the selected codebooks at each frame. A scale of 1 (no
    guidance) has no KL, so it appears only in the top row.

    Parameters
    ----------
    generations : dict or list
        ``{guidance_scale: Generation}`` (or ``{scale: trace DataFrame}``), or a
        list of ``Generation`` whose ``params["guidance_scale"]`` names each one.
        Every one needs ``trace=True``.
    item : int
        Batch item.
    codebook : int or list of int, optional
        Codebooks averaged (default all).
    max_points : int
        Cap on points per line.

    Returns
    -------
    plotly.graph_objects.Figure

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> from musicgen_nb.viz.guidance import guidance_comparison
    >>> s = mg.load("tiny")
    >>> gens = {c: s.generate("jazz", duration=1, seed=0, guidance_scale=c, trace=True, progress=False)
    ...         for c in (1.0, 3.0)}
    >>> [t.name for t in guidance_comparison(gens).data]
    ['scale 1', 'scale 3', 'scale 3']
    """
    pairs = _scales(generations)
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
        subplot_titles=("sampling entropy", "KL(conditional || unconditional)"),
    )  # fmt: skip
    for i, (scale, trace) in enumerate(pairs):
        _add_scale(fig, i, scale, trace, item=item, codebook=codebook, max_points=max_points)
    which = "all codebooks" if codebook is None else f"codebook(s) {codebook}"
    fig.update_yaxes(title_text="entropy (nats)", row=1, col=1)
    fig.update_yaxes(title_text="KL (nats)", row=2, col=1)
    fig.update_xaxes(title_text="time (s)", row=2, col=1)
    base_layout(
        fig,
        title=f"Guidance scales compared, item {item} (mean over {which})",
        legend_title="guidance",
    )
    return fig


def _add_scale(fig, i: int, scale: float, trace, *, item, codebook, max_points) -> None:
    """The entropy line (row 1) and, with guidance, the KL line (row 2) of one scale."""
    line = dict(color=color(i))  # one colour per scale in both subplots
    df = select(trace, item=item, columns=("codebook", "frame", "time_s", "entropy", "kl"))
    ks = trace_codebooks(df, codebook)
    name = f"scale {scale:g}"
    x, y = cap_curve(*_mean_curve(df, "entropy", ks), max_points)
    fig.add_trace(
        go.Scatter(x=x, y=y, mode="lines", name=name, legendgroup=name, line=line,
                   hovertemplate="%{x:.2f} s: %{y:.3f}<extra>" + name + "</extra>"),
        row=1, col=1,
    )  # fmt: skip
    if not df["kl"].isna().all():
        x, y = cap_curve(*_mean_curve(df, "kl", ks), max_points)
        fig.add_trace(
            go.Scatter(x=x, y=y, mode="lines", name=name, legendgroup=name, showlegend=False,
                       line=line, hovertemplate="%{x:.2f} s: %{y:.3f}<extra>" + name + "</extra>"),
            row=2, col=1,
        )  # fmt: skip
