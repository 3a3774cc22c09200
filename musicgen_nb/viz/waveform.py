"""Per-channel waveform lines, with a min/max envelope for long audio."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from .._util.checks import check_positive
from ._util import (
    audio_2d,
    base_layout,
    channel_names,
    check_int,
    esc,
    minmax_envelope,
    unpack_generation,
)

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from ..generation import Generation

HOVER = "%{x:.3f} s<br>%{y:.3f}<extra>%{fullData.name}</extra>"


def waveform(
    audio: ArrayLike | Generation,
    sr: int | None = None,
    *,
    item: int = 0,
    max_points: int = 20000,
    title: str | None = None,
) -> go.Figure:
    """Plot the waveform of each channel against time.

    Parameters
    ----------
    audio : array-like or Generation
        Samples ``[samples]``, ``[channels, samples]`` or
        ``[batch, channels, samples]`` (numpy or torch), or a
        :class:`~musicgen_nb.Generation` (then ``sr`` may be ``None``).
    sr : int
        Sample rate in Hz (optional for a ``Generation``).
    item : int
        Batch item to draw when the audio is batched.
    max_points : int
        At most this many points per channel go to the browser. Longer audio
        is drawn as a min/max envelope (each block keeps its lowest and
        highest sample, so peaks survive); the title says so.
    title : str, optional
        Figure title.

    Returns
    -------
    plotly.graph_objects.Figure
        One line trace per channel (``"mono"``, or ``"left"`` and ``"right"``),
        x = time in seconds, y = amplitude.

    Examples
    --------
    >>> import numpy as np
    >>> from musicgen_nb import viz
    >>> y = np.sin(2 * np.pi * 440 * np.arange(32000) / 32000)
    >>> fig = viz.waveform(y, 32000, max_points=2000)
    >>> len(fig.data[0].x) <= 2000
    True
    """
    audio, sr, prompt = unpack_generation(audio, sr, item)
    sr = check_positive(sr, "sr")
    max_points = check_int(max_points, "max_points", minimum=2)
    wav = audio_2d(audio, item, "audio")
    C, N = wav.shape

    fig = go.Figure(_lines(wav, sr, max_points))
    title = _title(title, C, N, sr, prompt, len(fig.data[0].x) if N > max_points else None)
    base_layout(fig, title=title, height=300, showlegend=C > 1)
    fig.update_xaxes(title_text="time (s)")
    # Symmetric about 0, so 0 is always on the axis and a one-sided clip reads as one.
    peak = float(np.abs(wav).max()) if wav.size else 0.0
    peak = peak * 1.05 if peak > 0 else 1.0
    fig.update_yaxes(title_text="amplitude", range=[-peak, peak], zeroline=True)
    return fig


def _lines(wav: np.ndarray, sr: float, max_points: int) -> list:
    """One line per channel, a min/max envelope of at most ``max_points`` points."""
    lines = []
    for name, y in zip(channel_names(wav.shape[0]), wav, strict=True):
        pos, vals = minmax_envelope(y, max_points)
        lines.append(
            go.Scatter(
                x=(pos / sr).astype(np.float32),
                y=vals.astype(np.float32),
                mode="lines",
                line=dict(width=1),
                name=name,
                hovertemplate=HOVER,
            )
        )
    return lines


def _title(title, C: int, N: int, sr: float, prompt, n_shown) -> str:
    """The given title (escaped) or a description; notes the envelope (``n_shown`` points)."""
    if title is not None:
        title = esc(title)  # plain text: "<", ">" and "&" show as typed
    else:
        title = f"Waveform: {C} channel{'s' if C > 1 else ''}, {N / sr:.2f} s at {sr:g} Hz"
        if prompt is not None:
            title = f"{prompt} — {title}"
    if n_shown is not None:
        title += f"<br><sup>min/max envelope: {n_shown} of {N} points per channel</sup>"
    return title
