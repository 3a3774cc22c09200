"""The whole MusicGen pipeline as one diagram: text -> T5 -> projection -> decoder -> codes -> EnCodec -> audio."""

from __future__ import annotations

from typing import TYPE_CHECKING

import plotly.graph_objects as go

from ._util import base_layout, esc

if TYPE_CHECKING:
    from ..models import MusicGen

#: (key, title, what it does, notebooks that take it apart), left to right.
BOXES = (
    ("text", "text prompt", "a sentence", "00"),
    ("t5", "T5 encoder", "frozen; one vector<br>per text token", "06"),
    ("proj", "projection", "linear: T5 width<br>to decoder width", "06"),
    ("decoder", "decoder", "cross-attn to text<br>self-attn to past codes<br>guidance, sampling", "02 03 06 07"),
    ("codes", "codes", "4 codebooks<br>delay pattern", "01 02 05"),
    ("encodec", "EnCodec decoder", "codes to waveform", "01"),
    ("audio", "audio", "32 kHz", "00 05"),
)  # fmt: skip
MELODY_BOXES = (
    ("melody", "melody audio", "a tune or a song", "04"),
    ("chroma", "chroma", "12 pitch classes,<br>7.8 frames/s", "04"),
    ("chroma_proj", "projection", "to decoder width", "04"),
)
KEYS = tuple(b[0] for b in BOXES + MELODY_BOXES)
FILL, FILL_ON, EDGE, EDGE_ON = "#eaf2fb", "#ffd8a8", "#4a78a8", "#d9480f"
W, H, GAP = 1.2, 1.0, 0.3
#: The decoder of a melody model: no cross-attention, the conditions are a prefix.
MELODY_DECODER = "self-attn to the prefix<br>and past codes<br>guidance, sampling"


def _sizes(s) -> dict:
    """Per-box size notes from a loaded model's config."""
    cfg = s.model.config
    d_text = getattr(cfg.text_encoder, "d_model", None)
    dec = cfg.decoder
    notes = {
        "t5": f"width {d_text}" if d_text else None,
        "proj": f"{d_text} -> {dec.hidden_size}" if d_text else None,
        "decoder": f"{dec.num_hidden_layers} layers, width {dec.hidden_size}",
        "codes": f"{s.num_codebooks} x {s.frame_rate}/s, {s.codebook_size} codes",
    }
    return {k: v for k, v in notes.items() if v}


def pipeline(
    s: MusicGen | None = None,
    *,
    highlight: str | list[str] | None = None,
    melody: bool | None = None,
) -> go.Figure:
    """A diagram of MusicGen from text to audio, with the boxes a notebook covers highlighted.

    Parameters
    ----------
    s : musicgen_nb.MusicGen, optional
        A loaded model: its sizes (T5 width, decoder layers and width) are written
        in the boxes, and a melody model adds the melody row.
    highlight : str or list of str, optional
        Box keys drawn in orange: ``text``, ``t5``, ``proj``, ``decoder``, ``codes``,
        ``encodec``, ``audio``, ``melody``, ``chroma``, ``chroma_proj``.
    melody : bool, optional
        Draw the melody row (chroma as a prefix). Default: ``s.is_melody``, or
        True when a melody box is highlighted.

    Returns
    -------
    plotly.graph_objects.Figure

    Examples
    --------
    >>> from musicgen_nb import viz
    >>> fig = viz.pipeline(highlight="codes")
    >>> [a.text.split("<br>")[0] for a in fig.layout.annotations][:4]
    ['<b>text prompt</b>', 'notebook 00', '<b>T5 encoder</b>', 'notebook 06']
    """
    wanted = [highlight] if isinstance(highlight, str) else list(highlight or [])
    for key in wanted:
        if key not in KEYS:
            raise ValueError(f"highlight must name boxes in {list(KEYS)}, got {key!r}")
    if melody is None:
        melody = bool(getattr(s, "is_melody", False)) or any(
            k in wanted for k in ("melody", "chroma", "chroma_proj")
        )
    d = _Diagram(wanted, _sizes(s) if s is not None else {})
    top = 1.6 if melody else 0.0
    d.main_row(top, melody)
    if melody:
        d.melody_row(top)
    fig = go.Figure()
    width = len(BOXES) * (W + GAP) - GAP
    fig.update_xaxes(visible=False, range=[-0.1, width + 0.1], fixedrange=True)
    fig.update_yaxes(visible=False, range=[-0.45, top + H + 0.15], fixedrange=True)
    base_layout(
        fig,
        title="MusicGen, from text to audio" + (" (and melody)" if melody else ""),
        height=480 if melody else 290,
        shapes=d.shapes,
        annotations=d.notes,
    )
    fig.update_layout(margin=dict(l=10, r=10, t=50, b=10))
    return fig


class _Diagram:
    """The boxes (shapes) and texts and arrows (annotations) of the pipeline figure."""

    def __init__(self, wanted: list, sizes: dict):
        self.wanted, self.sizes = wanted, sizes
        self.shapes: list = []
        self.notes: list = []

    def box(self, key, title, what, books, x, y, dash="solid") -> None:
        on = key in self.wanted
        self.shapes.append(
            dict(type="rect", x0=x, x1=x + W, y0=y, y1=y + H, line=dict(color=EDGE_ON if on else EDGE, width=3 if on else 1.5, dash=dash),
                 fillcolor=FILL_ON if on else FILL, layer="below")
        )  # fmt: skip
        extra = f"<br><i>{esc(self.sizes[key])}</i>" if key in self.sizes else ""
        self.notes.append(
            dict(x=x + W / 2, y=y + H / 2, text=f"<b>{esc(title)}</b><br>{what}{extra}",
                 showarrow=False, font=dict(size=10.5))
        )  # fmt: skip
        self.notes.append(
            dict(x=x + W / 2, y=y - 0.08, text=f"notebook {books}", showarrow=False,
                 font=dict(size=10, color="#666"), yanchor="top")
        )  # fmt: skip

    def arrow(self, x0, y0, x1, y1, label="") -> None:
        self.notes.append(
            dict(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y", text="",
                 showarrow=True, arrowhead=2, arrowsize=1.2, arrowwidth=1.5, arrowcolor="#555")
        )  # fmt: skip
        if label:
            self.notes.append(
                dict(x=(x0 + x1) / 2 + 0.05, y=(y0 + y1) / 2, text=label, showarrow=False,
                     font=dict(size=10, color="#555"), xanchor="left")
            )  # fmt: skip

    def main_row(self, top: float, melody: bool) -> None:
        """Text to audio, left to right, at height ``top``."""
        for i, (key, title, what, books) in enumerate(BOXES):
            x = i * (W + GAP)
            if key == "decoder" and melody:
                what = MELODY_DECODER
            self.box(key, title, what, books, x, top)
            if i:
                self.arrow(x - GAP, top + H / 2, x, top + H / 2)

    def melody_row(self, top: float) -> None:
        """Melody to chroma to projection, feeding the decoder's prefix."""
        dec_x = 3 * (W + GAP)
        for i, (key, title, what, books) in enumerate(MELODY_BOXES):
            x = i * (W + GAP)
            self.box(key, title, what, books, x, 0.0, dash="dot")
            if i:
                self.arrow(x - GAP, H / 2, x, H / 2)
        self.arrow(2 * (W + GAP) + W, H / 2, dec_x + W / 2, top, "prefix")
        self.notes.append(
            dict(x=dec_x + W + 0.1, y=H / 2, xanchor="left", showarrow=False, font=dict(size=10),
                 text="melody models: the projected chroma and<br>the projected text are "
                 "<b>prepended</b> to the<br>decoder's input (a prefix); no cross-attention")
        )  # fmt: skip
