"""Chroma (pitch class x time) heatmaps: one input, or input vs output."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .._util.checks import check_positive
from ._util import as_array, base_layout, check_int, esc, pitch_classes, stride_for

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

HOVER_TIME = "%{x:.2f} s<br>%{y}<br>%{z:.2f}<extra>%{fullData.name}</extra>"
HOVER_FRAME = "frame %{x}<br>%{y}<br>%{z:.2f}<extra>%{fullData.name}</extra>"


def _as_chroma(x, name: str, sr, frame_rate):
    """Chroma ``[frames, 12]`` or audio (with ``sr``) -> (chroma, seconds per frame or None)."""
    if sr is not None:
        from ..melody import FRAME_RATE
        from ..melody import chroma as melody_chroma

        sr = check_positive(sr, "sr")
        audio = as_array(x, name)
        if audio.ndim == 0 or audio.shape[-1] == 0:
            raise ValueError(
                f"{name} must be audio with at least one sample when sr is given, got {audio.shape}"
            )
        c = as_array(melody_chroma(audio, int(sr) if float(sr).is_integer() else sr), name)
        if c.ndim == 3:  # a batched chroma: draw the first item
            c = c[0]
        return c.astype(np.float32), 1.0 / float(FRAME_RATE)
    c = as_array(x, name)
    if c.ndim != 2 or c.shape[1] != 12:
        hint = " (raw audio? then pass sr=)" if c.ndim in (1, 2, 3) and c.shape[-1] != 12 else ""
        raise ValueError(
            f"{name} must be a chroma array of shape [frames, 12]{hint}, got shape {c.shape}"
        )
    if c.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one frame, got shape {c.shape}")
    if not np.issubdtype(c.dtype, np.number):
        raise TypeError(f"{name} must be numeric, got dtype {c.dtype}")
    if frame_rate is not None:
        return c.astype(np.float32), 1.0 / check_positive(frame_rate, "frame_rate")
    return c.astype(np.float32), None


def chroma(
    chroma_in: ArrayLike,
    chroma_out: ArrayLike | None = None,
    *,
    sr: float | None = None,
    frame_rate: float | None = None,
    titles: tuple = ("input", "output"),
    max_frames: int = 2000,
    title: str | None = None,
) -> go.Figure:
    """Chroma heatmap(s): pitch class x time; input vs output with their similarity.

    Parameters
    ----------
    chroma_in : array-like
        A chroma array ``[frames, 12]``, or raw audio (``[samples]`` or
        ``[channels, samples]``) when ``sr`` is given; chroma is then computed
        with :func:`musicgen_nb.melody.chroma`.
    chroma_out : array-like, optional
        A second chroma (or audio), e.g. of the generated audio. Both are then
        stacked and the title gives :func:`musicgen_nb.melody.similarity`.
    sr : float, optional
        Sample rate of the inputs when they are audio.
    frame_rate : float, optional
        Chroma frames per second, for a time axis when chroma arrays are
        given. Without it (and without ``sr``) the x axis is the frame index.
    titles : tuple of str
        Subplot titles of the input and the output.
    max_frames : int
        At most this many frames per chroma go to the browser (every n-th
        frame is kept beyond that; the title says so).
    title : str, optional
        Figure title.

    Returns
    -------
    plotly.graph_objects.Figure
        One heatmap per input: y = pitch class (C at the bottom), x = time in
        seconds (or frame), z = chroma value.

    Examples
    --------
    >>> import numpy as np
    >>> from musicgen_nb import viz
    >>> c = np.eye(12, dtype=np.float32)[np.arange(40) % 12]
    >>> fig = viz.chroma(c, frame_rate=7.8125)
    >>> fig.data[0].z.shape
    (12, 40)
    """
    max_frames = check_int(max_frames, "max_frames", minimum=1)
    _check_titles(titles, 1 if chroma_out is None else 2)
    inputs = [_as_chroma(chroma_in, "chroma_in", sr, frame_rate)]
    if chroma_out is not None:
        inputs.append(_as_chroma(chroma_out, "chroma_out", sr, frame_rate))
    fig, notes = _heatmaps(inputs, titles, max_frames)
    n = len(inputs)
    base_layout(fig, title=_title(title, titles, inputs, notes), height=260 * n + 80,
                coloraxis=_coloraxis(inputs))  # fmt: skip
    return fig


def _check_titles(titles, need: int) -> None:
    if not isinstance(titles, (list, tuple)) or not all(isinstance(t, str) for t in titles):
        raise TypeError(f"titles must be a tuple of strings, got {titles!r}")
    if len(titles) < need:
        raise ValueError(f"titles must hold {need} strings, got {len(titles)}: {titles!r}")


def _heatmaps(inputs: list, titles, max_frames: int):
    """One subplot per (chroma, seconds per frame) of ``inputs``, and notes on capped ones."""
    timed = all(spf is not None for _, spf in inputs)
    n = len(inputs)
    fig = make_subplots(
        rows=n,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.12,
        subplot_titles=[esc(t) for t in titles[:n]],
    )
    labels = list(pitch_classes())
    notes = []
    for row, ((c, spf), name) in enumerate(zip(inputs, titles[:n], strict=True), start=1):
        T = c.shape[0]
        step = stride_for(T, max_frames)
        frames = np.arange(0, T, step)
        x = (frames * spf).astype(np.float32) if timed else frames
        if step > 1:
            notes.append(f"{name}: every {step} frames ({len(frames)} of {T})")
        fig.add_trace(
            go.Heatmap(
                z=np.ascontiguousarray(c[frames].T),
                x=x,
                y=labels,
                coloraxis="coloraxis",
                hovertemplate=HOVER_TIME if timed else HOVER_FRAME,
                name=name,
            ),
            row=row,
            col=1,
        )
        fig.update_yaxes(title_text="pitch class", type="category", row=row, col=1)
    fig.update_xaxes(title_text="time (s)" if timed else "frame", row=n, col=1)
    return fig, notes


def _title(title, titles, inputs: list, notes: list) -> str:
    """The given title (escaped), or one with the chroma similarity of input and output."""
    if title is not None:
        title = esc(title)  # plain text: "<", ">" and "&" show as typed
    else:
        title = "Chroma"
        if len(inputs) == 2:
            from ..melody import similarity

            sim = float(similarity(inputs[0][0], inputs[1][0]))
            title = f"Chroma: {esc(titles[0])} vs {esc(titles[1])} — chroma similarity {sim:.2f}"
    if notes:
        title += "<br><sup>" + "; ".join(notes) + "</sup>"
    return title


def _coloraxis(inputs: list) -> dict:
    return dict(
        colorscale="Blues",
        cmin=min(0.0, min(float(c.min()) for c, _ in inputs)),
        cmax=max(1e-6, max(float(c.max()) for c, _ in inputs)),
        colorbar=dict(title=dict(text="chroma")),
    )
