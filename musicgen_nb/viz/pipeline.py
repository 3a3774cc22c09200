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
#: Vertical distance between rows: a box plus room for its "notebook NN" label and the arrow.
ROW = H + 0.6
#: Boxes per row: text to decoder left to right, then codes to audio right to left, so that
#: every box keeps about 1/4 of the figure's width and its text fits at 700 px.
COLUMNS = 4
#: The decoder of a melody model: no cross-attention, the conditions are a prefix.
MELODY_DECODER = "self-attn to the prefix<br>and past codes<br>guidance, sampling"


def _place(i: int) -> tuple[int, int]:
    """(column, row) of main box ``i``: a snake of two rows."""
    if i < COLUMNS:
        return i, 0
    return 2 * COLUMNS - 1 - i, 1


def _notes(dec, d_text, num_codebooks, frame_rate, codebook_size) -> dict:
    notes = {
        "t5": f"width {d_text}" if d_text else None,
        "proj": f"{d_text} -> {dec['hidden_size']}" if d_text else None,
        "decoder": f"{dec['num_hidden_layers']} layers x {dec['hidden_size']}",
        "codes": f"{num_codebooks} x {frame_rate:g}/s x {codebook_size}",
    }
    return {k: v for k, v in notes.items() if v}


def _sizes(s) -> tuple[dict, str | None]:
    """Per-box size notes, and the real checkpoint they describe when ``s`` is a stand-in.

    A stand-in's own sizes (2 layers, width 64) say nothing about the checkpoint it
    replaces, so the boxes show the real architecture's sizes from its stored spec
    (``musicgen_nb/checkpoints/configs``), labelled as such.
    """
    from ..checkpoints.specs import known, short_name

    if getattr(s, "is_standin", False):
        short = short_name(str(getattr(s, "name", "")))
        if short is not None:
            cfg = known()[short]["config"]
            dec, audio = cfg["decoder"], cfg["audio_encoder"]
            frame_rate = audio["sampling_rate"] / float(_hop(audio))
            notes = _notes(dec, cfg["text_encoder"].get("d_model"), dec["num_codebooks"],
                           frame_rate, audio["codebook_size"])  # fmt: skip
            return {k: f"{v} (spec)" for k, v in notes.items()}, s.name
    cfg = s.model.config
    dec = {
        "hidden_size": cfg.decoder.hidden_size,
        "num_hidden_layers": cfg.decoder.num_hidden_layers,
    }
    d_text = getattr(cfg.text_encoder, "d_model", None)
    return _notes(dec, d_text, s.num_codebooks, s.frame_rate, s.codebook_size), None


def _hop(audio: dict) -> int:
    hop = 1
    for r in audio.get("upsampling_ratios", [8, 5, 4, 4]):
        hop *= int(r)
    return hop


def _title(melody: bool, s, real: str | None) -> str:
    """Title and subtitle lines (short: the figure must read at 700 px)."""
    lines = ["MusicGen, from text to audio" + (" (and melody)" if melody else "")]
    if real is not None:
        lines.append(f"loaded: the offline stand-in '{esc(str(s.standin))}', random weights;")
        lines.append(f"sizes of the real {esc(real)}, from its spec")
    if melody:
        lines.append("melody models: chroma and text are prepended to the decoder's input")
    # Plain small lines (a <sup> raises its line, so the gaps between lines came out uneven).
    return "<br>".join(lines[:1] + [f'<span style="font-size:12px">{t}</span>' for t in lines[1:]])


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
    if s is not None and not hasattr(s, "model"):
        raise ValueError(
            f"s must be a loaded model (mg.load(...)) or None, got {s!r}; to highlight boxes, "
            f"pass highlight= with names in {list(KEYS)}"
        )
    wanted = [highlight] if isinstance(highlight, str) else list(highlight or [])
    for key in wanted:
        if key not in KEYS:
            raise ValueError(f"highlight must name boxes in {list(KEYS)}, got {key!r}")
    if melody is None:
        melody = bool(getattr(s, "is_melody", False)) or any(
            k in wanted for k in ("melody", "chroma", "chroma_proj")
        )
    sizes, real = _sizes(s) if s is not None else ({}, None)
    d = _Diagram(wanted, sizes)
    rows = 3 if melody else 2
    d.main_row(1, melody)
    if melody:
        d.melody_row(2)
    fig = go.Figure()
    width = COLUMNS * (W + GAP) - GAP
    fig.update_xaxes(visible=False, range=[-0.1, width + 0.1], fixedrange=True)
    fig.update_yaxes(visible=False, range=[-0.45, (rows - 1) * ROW + H + 0.1], fixedrange=True)
    title = _title(melody, s, real)
    base_layout(
        fig,
        title=title,
        height=110 + 175 * rows + 28 * title.count("<br>"),
        shapes=d.shapes,
        annotations=d.notes,
    )
    fig.update_layout(margin=dict(l=10, r=10, t=46 + 28 * title.count("<br>"), b=10))
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
        size = esc(self.sizes[key]) if key in self.sizes else ""
        extra = f'<br><i><span style="font-size:9.5px">{size}</span></i>' if size else ""
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

    def main_row(self, top_row: int, melody: bool) -> None:
        """Text to the decoder left to right on row ``top_row``, then codes to audio back."""
        prev = None
        for i, (key, title, what, books) in enumerate(BOXES):
            col, row = _place(i)
            x, y = col * (W + GAP), (top_row - row) * ROW
            if key == "decoder" and melody:
                what = MELODY_DECODER
            self.box(key, title, what, books, x, y)
            if prev is not None:
                px, py = prev
                if py == y:  # same row: from the side facing this box
                    x0, x1 = (px + W, x) if x > px else (px, x + W)
                    self.arrow(x0, y + H / 2, x1, y + H / 2)
                else:  # down to the next row; the label row sits under the box
                    self.arrow(px + W - 0.08, py, x + W - 0.08, y + H)
            prev = (x, y)

    def melody_row(self, top_row: int) -> None:
        """Melody to chroma to projection on the top row, feeding the decoder's prefix below."""
        y = top_row * ROW
        dec_x = 3 * (W + GAP)
        for i, (key, title, what, books) in enumerate(MELODY_BOXES):
            x = i * (W + GAP)
            self.box(key, title, what, books, x, y, dash="dot")
            if i:
                self.arrow(x - GAP, y + H / 2, x, y + H / 2)
        main_y = (top_row - 1) * ROW
        self.arrow(2 * (W + GAP) + W, y + H / 2, dec_x + W / 2, main_y + H, "prefix")
