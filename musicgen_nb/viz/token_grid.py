"""Codebook x frame heatmap of EnCodec tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from .._util.checks import check_positive
from ._util import base_layout, check_int, codes_2d, esc, is_generation, ordinal, short

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from ..generation import Generation

HOVER = "%{y}<br>frame %{customdata}<br>time %{x:.2f} s<br>code %{z}<extra></extra>"


def token_grid(
    codes_or_generation: ArrayLike | Generation,
    *,
    frame_rate: float = 50,
    item: int = 0,
    max_frames: int = 1500,
    title: str | None = None,
) -> go.Figure:
    """Heatmap of the codes of every codebook over time.

    Parameters
    ----------
    codes_or_generation : array-like or Generation
        Integer codes ``[num_codebooks, frames]`` or ``[batch, num_codebooks, frames]``
        (numpy or torch), or a :class:`~musicgen_nb.Generation`, whose
        ``frame_rate`` and prompt are then used.
    frame_rate : float
        Frames per second, for the time axis. Ignored for a ``Generation``.
    item : int
        Batch item to draw when the codes are batched.
    max_frames : int
        At most this many frames go to the browser. Longer sequences show
        every n-th frame (the title says so); hover still reports the true
        frame index.
    title : str, optional
        Figure title. Defaults to a description of the codes (and the prompt).

    Returns
    -------
    plotly.graph_objects.Figure
        One heatmap: y = codebook ("cb 0" at the top), x = time in seconds,
        z = code. Hover shows codebook, frame, time and code.

    Examples
    --------
    >>> import numpy as np
    >>> from musicgen_nb import viz
    >>> codes = np.random.default_rng(0).integers(0, 2048, size=(4, 100))
    >>> fig = viz.token_grid(codes, frame_rate=50)
    >>> fig.data[0].z.shape
    (4, 100)
    """
    codes, frame_rate, prompt, prompt_frames = _unpack(codes_or_generation, frame_rate, item)
    frame_rate = check_positive(frame_rate, "frame_rate")
    max_frames = check_int(max_frames, "max_frames", minimum=1)
    T = codes.shape[1]
    step = -(-T // max_frames)
    frames = np.arange(0, T, step)
    generated = is_generation(codes_or_generation)
    title = _title(
        title, codes.shape, frame_rate, prompt if generated else False, step, len(frames)
    )
    fig = _figure(codes, frames, frame_rate, title)
    if prompt_frames > 0:
        fig.add_vline(
            x=(prompt_frames - 0.5) / frame_rate,
            line=dict(color="red", dash="dash", width=2),
            annotation_text="end of audio prompt",
            annotation_position="top right",
        )
    return fig


def _title(title, shape, frame_rate: float, prompt, step: int, kept: int) -> str:
    """The given title (escaped) or a description; ``prompt`` False: not a Generation."""
    K, T = shape
    if title is not None:
        title = esc(title)  # plain text: "<", ">" and "&" show as typed
    else:
        title = f"Tokens: {K} codebooks x {T} frames ({T / frame_rate:.2f} s at {frame_rate:g} Hz)"
        if prompt is not False:
            title = f"{short(prompt)} — " + title
    if step > 1:
        title += f"<br><sup>showing every {ordinal(step)} frame ({kept} of {T})</sup>"
    return title


def _unpack(codes_or_generation, frame_rate, item: int) -> tuple:
    """(codes ``[K, T]``, frame rate, prompt, audio-prompt frames) of codes or a Generation."""
    if not is_generation(codes_or_generation):
        return codes_2d(codes_or_generation, item, "codes_or_generation"), frame_rate, None, 0
    g = codes_or_generation
    codes = codes_2d(g.codes, item, "codes_or_generation.codes")
    prompts = list(g.prompts or [])
    prompt = prompts[item] if item < len(prompts) else None
    return codes, g.frame_rate, prompt, int(getattr(g, "prompt_frames", 0) or 0)


def _figure(codes: np.ndarray, frames: np.ndarray, frame_rate: float, title: str) -> go.Figure:
    """The heatmap of the kept ``frames`` of ``codes``, hover giving the true frame index."""
    K = codes.shape[0]
    z = codes[:, frames]
    if np.all((z >= np.iinfo(np.int32).min) & (z <= np.iinfo(np.int32).max)):
        z = z.astype(np.int32)  # plotly.js has no int64 typed arrays
    customdata = np.broadcast_to(frames.astype(np.int32), (K, len(frames)))
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=frames / frame_rate,
            y=[f"cb {k}" for k in range(K)],
            customdata=np.ascontiguousarray(customdata),
            hovertemplate=HOVER,
            colorscale="Viridis",
            colorbar=dict(title=dict(text="code")),
            name="codes",
        )
    )
    base_layout(fig, title=title, height=max(220, 60 * K + 120))
    fig.update_xaxes(title_text="time (s)")
    fig.update_yaxes(title_text="codebook", autorange="reversed", type="category")
    return fig
