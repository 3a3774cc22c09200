"""Helpers shared by the figure builders.

Input coercion (arrays, tensors, a ``Generation``, a trace, captured
attentions), layout defaults, hover templates and the caps on how much data
goes to the browser.
"""

from __future__ import annotations

import html
import warnings

import numpy as np

from .._util.arrays import as_array, pick_item
from .._util.checks import check_int

#: Cap on points per line of a trace figure (entropy, KL) sent to the browser.
MAX_POINTS = 4000

#: Fixed template and margins: no random ids, no timestamps, same JSON every run.
TEMPLATE = "plotly_white"
FONT = dict(family="Arial, sans-serif", size=12)
#: One colour per series (a guidance scale, a codebook), the same in every subplot.
COLORS = (
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
PITCH_CLASSES_FALLBACK = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def base_layout(fig, *, title: str, height: int | None = None, **extra):
    """Apply the shared layout defaults to ``fig`` and return it."""
    fig.update_layout(
        template=TEMPLATE,
        title=dict(text=title, x=0.01, xanchor="left"),
        font=FONT,
        margin=dict(l=60, r=20, t=60, b=50),
        **({"height": height} if height is not None else {}),
        **extra,
    )
    return fig


def integer_dtick(vmax: float, max_ticks: int = 8) -> int:
    """Whole-number tick step (1, 2, 5, 10, 20, ...) giving at most ``max_ticks`` steps to ``vmax``.

    For axes and colour bars of counts or indices (a frame, a step): plotly's own choice
    for a range of 0..3 is 0.5, a half frame that does not exist.
    """
    step = 1
    while vmax / step > max_ticks:
        for mult in (2, 5, 10):
            if vmax / (step * mult) <= max_ticks or mult == 10:
                step *= mult
                break
    return step


def is_generation(obj) -> bool:
    """Duck-type check for :class:`musicgen_nb.generation.Generation`.

    Avoids importing ``generation`` (and torch) just to draw a figure.
    """
    return all(hasattr(obj, a) for a in ("audio", "codes", "sample_rate", "frame_rate", "prompts"))


def unpack_generation(audio, sr, item):
    """(audio, sr, short prompt or None): a Generation's audio and rate, or the inputs as given."""
    if not is_generation(audio):
        return audio, sr, None
    g = audio
    prompts = list(g.prompts or [])
    prompt = short(prompts[item]) if isinstance(item, int) and item < len(prompts) else None
    return g.audio, (g.sample_rate if sr is None else sr), prompt


def codes_2d(codes, item: int, name: str = "codes") -> np.ndarray:
    """Codes ``[K, T]`` or ``[B, K, T]`` -> int ``[K, T]`` of one item."""
    arr = as_array(codes, name)
    if arr.ndim == 3:
        arr = pick_item(arr, item, name)
    elif arr.ndim != 2:
        raise ValueError(
            f"{name} must have shape [num_codebooks, frames] or [batch, num_codebooks, frames], "
            f"got shape {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(
            f"{name} must hold at least one codebook and one frame, got shape {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.number) or not np.all(np.mod(arr, 1) == 0):
            raise TypeError(f"{name} must hold integer codes, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
    return arr


def audio_2d(audio, item: int, name: str = "audio") -> np.ndarray:
    """Audio ``[N]``, ``[C, N]`` or ``[B, C, N]`` -> float32 ``[C, N]`` of one item."""
    from ..audio import one_item

    return one_item(audio, item, name=name, max_channels=16)


def channel_names(n: int) -> list[str]:
    """``["mono"]``, ``["left", "right"]`` or ``["ch 1", ...]``."""
    if n == 1:
        return ["mono"]
    if n == 2:
        return ["left", "right"]
    return [f"ch {i + 1}" for i in range(n)]


def stride_for(n: int, cap: int) -> int:
    """Smallest integer stride that keeps ``ceil(n / stride) <= cap``."""
    return max(1, -(-n // cap))


def pool_columns(z: np.ndarray, cap: int, *, how: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """Pool the columns of ``z`` ``[rows, cols]`` in blocks so at most ``cap`` remain.

    Returns the pooled array and the index of each block's first column.
    """
    step = stride_for(z.shape[1], cap)
    starts = np.arange(0, z.shape[1], step)
    if step == 1:
        return z, starts
    op = {"mean": np.add, "max": np.maximum}[how]
    pooled = op.reduceat(z, starts, axis=1)
    if how == "mean":
        counts = np.diff(np.append(starts, z.shape[1]))
        pooled = pooled / counts
    return pooled.astype(z.dtype, copy=False), starts


def minmax_envelope(y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Min/max envelope of ``y`` with at most ``max_points`` points.

    Returns sample positions and values: each block of samples gives its min
    and its max, in the order they occur, so peaks survive downsampling.
    """
    n = y.shape[0]
    if n <= max_points:
        return np.arange(n), y
    blocks = max_points // 2
    step = -(-n // blocks)
    starts = np.arange(0, n, step)
    pad = (-n) % step
    yp = np.pad(y, (0, pad), mode="edge").reshape(-1, step)
    imin = yp.argmin(axis=1)
    imax = yp.argmax(axis=1)
    first = np.minimum(imin, imax)
    second = np.maximum(imin, imax)
    pos = np.empty(2 * len(starts), dtype=np.int64)
    pos[0::2] = starts + first
    pos[1::2] = starts + second
    pos = np.minimum(pos, n - 1)
    return pos, y[pos]


def ordinal(n: int) -> str:
    """1 -> '1st', 2 -> '2nd', 3 -> '3rd', 4 -> '4th'."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def esc(text) -> str:
    """Escape a text label for plotly, which reads ``<``, ``>`` and ``&`` in labels as HTML.

    Use it on every label that comes from data or the caller (tokens such as
    ``</s>``, prompts, titles); plotly shows the escaped entities as the plain
    characters.
    """
    return html.escape(str(text), quote=False)


def color(i: int) -> str:
    """The ``i``-th series colour (cycles through :data:`COLORS`)."""
    return COLORS[i % len(COLORS)]


def short(text, limit: int = 60) -> str:
    """Shorten a prompt for a title and escape it (plotly titles accept HTML tags)."""
    text = "(unconditional)" if text is None else str(text)
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return html.escape(text, quote=False)


def pitch_classes() -> tuple:
    """Pitch class names from :mod:`musicgen_nb.melody`, with a fallback."""
    try:
        from ..melody import PITCH_CLASSES

        return tuple(PITCH_CLASSES)
    except ImportError:  # melody.py not present in this tree
        return PITCH_CLASSES_FALLBACK


def cap_curve(x, y, max_points: int = MAX_POINTS):
    """Cap a curve at ``max_points`` points by averaging consecutive bins (NaN-aware).

    Examples
    --------
    >>> x, y = cap_curve(np.arange(6), np.arange(6), max_points=3)
    >>> y.tolist()
    [0.5, 2.5, 4.5]
    """
    max_points = check_int(max_points, "max_points", minimum=2)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) <= max_points:
        return x, y
    f = int(np.ceil(len(x) / max_points))
    n = int(np.ceil(len(x) / f)) * f
    xp = np.full(n, np.nan)
    yp = np.full(n, np.nan)
    xp[: len(x)], yp[: len(y)] = x, y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN bins stay NaN
        return np.nanmean(xp.reshape(-1, f), 1), np.nanmean(yp.reshape(-1, f), 1)


def pick_codebooks(available, codebook, *, where: str = "") -> list[int]:
    """The codebooks to draw: all of ``available`` (None), or the int or ints asked for.

    ``where`` is added to the message, e.g. ``" at frame 10"``.

    Examples
    --------
    >>> pick_codebooks([0, 1, 2, 3], None), pick_codebooks([0, 1, 2, 3], 2)
    ([0, 1, 2, 3], [2])
    """
    available = sorted(int(k) for k in available)
    if codebook is None:
        return available
    wanted = [codebook] if isinstance(codebook, (int, np.integer)) else list(codebook)
    for k in wanted:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or int(k) not in available:
            raise ValueError(f"codebook {k!r} is not in the trace{where}; codebooks: {available}")
    return [int(k) for k in wanted]


def trace_codebooks(df, codebook) -> list[int]:
    """:func:`pick_codebooks` among the codebooks of a trace DataFrame ``df``.

    Examples
    --------
    >>> import pandas as pd
    >>> trace_codebooks(pd.DataFrame({"codebook": [1, 0, 1]}), None)
    [0, 1]
    """
    return pick_codebooks(df["codebook"].unique(), codebook)


def check_attentions(attn) -> None:
    """Raise unless ``attn`` is a :class:`musicgen_nb.attention.Attentions` (``g.attentions``).

    Examples
    --------
    >>> check_attentions(None)
    Traceback (most recent call last):
    ...
    TypeError: attn is None: generate with attentions=True to record g.attentions
    """
    from ..attention import Attentions

    if attn is None:
        raise TypeError("attn is None: generate with attentions=True to record g.attentions")
    if not isinstance(attn, Attentions):
        raise TypeError(
            f"attn must be musicgen_nb.attention.Attentions (g.attentions), got {type(attn).__name__}"
        )
