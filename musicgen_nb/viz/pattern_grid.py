"""Which frame each decoding step predicts, per codebook, for interleaving patterns."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._util import as_array, base_layout, check_int, esc, integer_dtick

if TYPE_CHECKING:
    from ..patterns import Pattern

#: Above this many steps per pattern, cells carry no text (hover still works).
MAX_TEXT_STEPS = 80
SPECIAL_COLOR = "#c8c8c8"
#: Cell label size (px): legible at 16 steps per panel in a notebook-wide figure.
TEXT_SIZE = 12
#: Caps checked before any work: a figure of more cells than this is unreadable and can
#: exhaust memory (``frames=10**9`` would build a 4 x 10**9 layout).
MAX_FRAMES = 3000  # 60 s at 50 frames/s
MAX_CODEBOOKS = 64
HOVER = "step %{x}<br>%{y}<br>predicts frame %{z}<extra>%{fullData.name}</extra>"
HOVER_SPECIAL = "step %{x}<br>%{y}<br>special token<extra>%{fullData.name}</extra>"


def _resolve(p, num_codebooks: int, frames: int, index: int | None):
    """A name or Pattern -> (name, layout [steps, K])."""
    where = "patterns" if index is None else f"patterns[{index}]"
    if isinstance(p, str):
        from ..patterns import build, names

        allowed = list(names())
        if p not in allowed:
            raise ValueError(f"{where} must be a pattern name in {allowed}, got {p!r}")
        p = build(p, num_codebooks, frames)
    if not hasattr(p, "layout"):
        raise TypeError(
            f"{where} must be a Pattern (with .layout) or a pattern name, got {type(p).__name__}"
        )
    layout = as_array(p.layout, f"{where}.layout")
    if layout.ndim != 2 or layout.shape[0] == 0 or layout.shape[1] == 0:
        raise ValueError(
            f"{where}.layout must have shape [num_steps, num_codebooks], got {layout.shape}"
        )
    if not np.issubdtype(layout.dtype, np.integer):
        raise TypeError(f"{where}.layout must hold integer frame indices, got dtype {layout.dtype}")
    if (layout < -1).any():
        raise ValueError(
            f"{where}.layout holds {int(layout.min())}; allowed: frame indices >= 0, or -1"
        )
    name = getattr(p, "name", None) or f"pattern {1 if index is None else index + 1}"
    return str(name), layout.astype(np.int64)


def pattern_grid(
    patterns: str | Pattern | list[str | Pattern], *, num_codebooks: int = 4, frames: int = 8
) -> go.Figure:
    """Grid of decoding steps x codebooks: the frame each step predicts.

    Parameters
    ----------
    patterns : str, Pattern or list of them
        A pattern name (``"parallel"``, ``"delay"``, ``"unroll"``,
        ``"coarse_first"``, ``"musiclm"``), a Pattern from
        :func:`musicgen_nb.patterns.build`, or a list of names and Patterns,
        drawn side by side.
    num_codebooks : int
        Codebooks, for patterns given by name.
    frames : int
        Frames, for patterns given by name.

    Returns
    -------
    plotly.graph_objects.Figure
        One subplot per pattern, stacked in rows on one step scale, titled
        ``"<name>: <n> steps"``: x = decoding step, y = codebook ("cb 0" at the top). A cell's colour and text
        (``"t=3"``) give the frame predicted; special tokens (layout ``-1``)
        are grey cells marked ``"S"``.

    Examples
    --------
    >>> from musicgen_nb import viz
    >>> fig = viz.pattern_grid(["parallel", "delay"], num_codebooks=4, frames=8)
    >>> [a.text for a in fig.layout.annotations]
    ['parallel: 8 steps', 'delay: 11 steps']
    """
    num_codebooks = check_int(num_codebooks, "num_codebooks", minimum=1, maximum=MAX_CODEBOOKS)
    frames = check_int(frames, "frames", minimum=1, maximum=MAX_FRAMES)
    resolved = _resolve_all(patterns, num_codebooks, frames)
    n = len(resolved)
    titles = [esc(f"{name}: {layout.shape[0]} steps") for name, layout in resolved]
    # One pattern per row, all on the same step scale: a cell is as wide in every panel,
    # so the panels' lengths compare the patterns' step counts and the labels stay legible.
    max_steps = max(layout.shape[0] for _, layout in resolved)
    K = max(layout.shape[1] for _, layout in resolved)
    fig = make_subplots(rows=n, cols=1, subplot_titles=titles, vertical_spacing=min(0.12, 0.5 / n))
    zmax = max(max(int(layout.max()), 0) for _, layout in resolved)
    for row, (name, layout) in enumerate(resolved, start=1):
        _add_pattern(fig, row, name, layout, max_steps)
    fig.update_xaxes(title_text="decoding step", row=n, col=1)
    base_layout(
        fig,
        # Title + subtitle: one line of both ran into the right edge at 700 px.
        title="Interleaving patterns<br><sup>the frame each step predicts; grey S = special token</sup>",
        height=130 + n * (26 * K + 70),
        # Whole frames on the colour bar (plotly would tick 0..3 in half frames).
        coloraxis=dict(colorscale="Blues", cmin=0, cmax=max(zmax, 1),
                       colorbar=dict(title=dict(text="frame"), tick0=0,
                                     dtick=integer_dtick(max(zmax, 1)), tickformat="d")),
    )  # fmt: skip
    fig.update_layout(margin_t=85)  # room for the subtitle line above the first panel's title
    return fig


def _resolve_all(patterns, num_codebooks: int, frames: int) -> list:
    """(name, layout) of one pattern or of each pattern of a list."""
    if isinstance(patterns, (list, tuple)):
        if len(patterns) == 0:
            raise ValueError(
                "patterns must hold at least one pattern name or Pattern, got an empty list"
            )
        return [_resolve(p, num_codebooks, frames, i) for i, p in enumerate(patterns)]
    return [_resolve(patterns, num_codebooks, frames, None)]


def _add_pattern(fig, row: int, name: str, layout: np.ndarray, max_steps: int) -> None:
    """Row ``row``: the frame each step predicts, and grey ``S`` cells for special tokens."""
    steps, K_ = layout.shape
    z = layout.T  # [K, steps]
    special = z < 0
    x = np.arange(steps)
    y = [f"cb {k}" for k in range(K_)]
    show_text = max_steps <= MAX_TEXT_STEPS
    text = dict(texttemplate="%{text}" if show_text else None, textfont=dict(size=TEXT_SIZE))
    frame_text = np.where(special, "", np.char.add("t=", z.astype(str)))
    fig.add_trace(
        go.Heatmap(z=np.where(special, np.nan, z.astype(np.float64)), x=x, y=y,
                   text=frame_text if show_text else None, **text, hovertemplate=HOVER,
                   coloraxis="coloraxis", xgap=1, ygap=1, name=esc(name)),
        row=row, col=1,
    )  # fmt: skip
    if special.any():
        fig.add_trace(
            go.Heatmap(z=np.where(special, 1.0, np.nan), x=x, y=y,
                       text=np.where(special, "S", "") if show_text else None, **text,
                       hovertemplate=HOVER_SPECIAL,
                       colorscale=[[0, SPECIAL_COLOR], [1, SPECIAL_COLOR]], showscale=False,
                       xgap=1, ygap=1, name=esc(f"{name} (special)")),
            row=row, col=1,
        )  # fmt: skip
    fig.update_xaxes(range=[-0.5, max_steps - 0.5], dtick=1 if max_steps <= 40 else None,
                     row=row, col=1)  # fmt: skip
    fig.update_yaxes(autorange="reversed", type="category", title_text="codebook", row=row, col=1)
