"""Inline audio players and galleries for Jupyter (IPython display only).

Audio is embedded as a data URI, compressed as OGG Vorbis (16-bit WAV when
the local libsndfile cannot write OGG) and capped to ``max_seconds``, so a
notebook stays small. The HTML is deterministic: no uuids, no timestamps, and
the OGG stream serial number (random in libsndfile) is fixed.

Examples
--------
>>> import numpy as np
>>> from musicgen_nb.players import player
>>> p = player(np.zeros(32000, dtype=np.float32), 32000, label="silence")
>>> p.fmt in ("ogg", "wav") and "<audio" in p._repr_html_()
True
"""

from __future__ import annotations

import base64
import html
import json
from typing import TYPE_CHECKING

import numpy as np

from .._util.checks import check_int, check_positive, check_sr
from ..audio import one_item
from ..audio.ogg import encode_compressed

if TYPE_CHECKING:
    import pandas as pd
    from numpy.typing import ArrayLike

    from ..generation import Generation

FORMATS = ("ogg", "wav")
MIME = {"ogg": "audio/ogg", "wav": "audio/wav"}

_BOX = "border:1px solid #ddd;border-radius:6px;padding:8px;min-width:0;font-family:sans-serif"
_LABEL = "font-weight:600;font-size:13px;margin-bottom:4px;overflow-wrap:anywhere"
_NOTE = "font-size:11px;color:#666;margin-top:2px"
_META = "font-size:11px;border-collapse:collapse;margin-top:4px"
_CELL = "padding:1px 6px 1px 0;text-align:left;vertical-align:top;border:none"


# ----------------------------------------------------------------------------- inputs


def _is_generation(obj) -> bool:
    return all(hasattr(obj, a) for a in ("audio", "codes", "sample_rate", "prompts", "params"))


def _fmt_value(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, np.ndarray):
        return f"array{list(v.shape)}"
    if isinstance(v, (list, tuple, dict)):
        try:
            text = json.dumps(v, default=str)
        except TypeError:
            text = str(v)
        return text if len(text) <= 80 else text[:79] + "…"
    return str(v)


def _seconds(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".") + " s"


def _generation_meta(g, item: int) -> dict:
    meta = {"seed": g.seed[item] if isinstance(g.seed, list) else g.seed}  # per-item seeds
    if getattr(g, "model_name", ""):
        meta["model"] = g.model_name
    if getattr(g, "standin", None):
        meta["stand-in"] = f"{g.standin} (random weights)"
    if len(g.audio) > 1:
        meta["item"] = item
    for k, v in (g.params or {}).items():
        if v is None or v is False or k in ("seed", "progress", "trace", "attentions"):
            continue
        meta[k] = v
    return meta


def _generation_label(g, item: int) -> str:
    prompts = list(g.prompts or [])
    prompt = prompts[item] if item < len(prompts) else None
    return "(unconditional)" if prompt is None else str(prompt)


# ----------------------------------------------------------------------------- Player


class Player:
    """A labelled ``<audio controls>`` with embedded, compressed audio.

    Build one with :func:`player`. Attributes: ``label``, ``meta``,
    ``sample_rate``, ``channels``, ``duration`` (seconds of the input),
    ``seconds`` (seconds embedded), ``capped``, ``fmt`` (``"ogg"`` or
    ``"wav"``), ``data_uri`` and ``nbytes`` (size of the encoded audio).

    Examples
    --------
    >>> import numpy as np
    >>> p = player(np.zeros((2, 8000), dtype=np.float32), 8000, label="stereo silence")
    >>> p.channels, p.duration, p.capped
    (2, 1.0, False)
    """

    def __init__(
        self,
        audio: np.ndarray,
        sr: int,
        *,
        label: str | None,
        meta: dict | None,
        max_seconds: float | None,
        fmt: str,
    ) -> None:
        channels, n = audio.shape
        self.sample_rate = sr
        self.channels = channels
        self.duration = n / sr
        keep = n if max_seconds is None else min(n, max(1, int(round(max_seconds * sr))))
        self.capped = keep < n
        self.seconds = keep / sr
        samples = np.ascontiguousarray(np.clip(audio[:, :keep], -1.0, 1.0).T)
        data, self.fmt = encode_compressed(samples, sr, fmt)
        self.nbytes = len(data)
        self.data_uri = f"data:{MIME[self.fmt]};base64," + base64.b64encode(data).decode("ascii")
        self.label = None if label is None else str(label)
        self.meta = dict(meta) if meta else {}

    def __repr__(self) -> str:
        cap = f", first {_seconds(self.seconds)}" if self.capped else ""
        return (
            f"Player({self.label!r}, {_seconds(self.duration)} at {self.sample_rate} Hz, "
            f"{self.channels} ch, {self.fmt} {self.nbytes} bytes{cap})"
        )

    def _repr_html_(self) -> str:
        parts = [f'<div class="mgnb-player" style="{_BOX}">']
        if self.label is not None:
            parts.append(
                f'<div class="mgnb-label" style="{_LABEL}">{html.escape(self.label)}</div>'
            )
        parts.append(
            f'<audio controls preload="metadata" style="width:100%" src="{self.data_uri}"></audio>'
        )
        ch = {1: "mono", 2: "stereo"}.get(self.channels, f"{self.channels} ch")
        note = f"{_seconds(self.duration)}, {ch}, {self.sample_rate} Hz"
        if self.capped:
            note = f"first {_seconds(self.seconds)} of {_seconds(self.duration)}, {ch}, {self.sample_rate} Hz"
        parts.append(f'<div class="mgnb-note" style="{_NOTE}">{html.escape(note)}</div>')
        if self.meta:
            rows = "".join(
                f'<tr><th style="{_CELL}">{html.escape(str(k))}</th>'
                f'<td style="{_CELL}">{html.escape(_fmt_value(v))}</td></tr>'
                for k, v in self.meta.items()
            )
            parts.append(f'<table class="mgnb-meta" style="{_META}">{rows}</table>')
        parts.append("</div>")
        return "".join(parts)


def player(
    audio: ArrayLike | Generation,
    sr: int | None = None,
    *,
    label: str | None = None,
    meta: dict | None = None,
    item: int | None = None,
    max_seconds: float | None = 30.0,
    fmt: str = "ogg",
) -> Player:
    """An inline audio player with the audio embedded, compressed and capped.

    Parameters
    ----------
    audio : array-like or Generation
        Samples ``[samples]``, ``[channels, samples]`` or ``[batch, channels, samples]``
        (numpy or torch; mono or stereo), or a :class:`~musicgen_nb.Generation`,
        whose sample rate, prompt (label) and seed and parameters (meta) are used.
    sr : int
        Sample rate in Hz (optional for a ``Generation``).
    label : str, optional
        Shown above the player (HTML-escaped), e.g. the prompt.
    meta : dict, optional
        Shown as a small table under the player, e.g. seed and parameters.
    item : int, optional
        Batch item, required when the audio holds more than one.
    max_seconds : float or None
        Embed at most the first ``max_seconds``; the player then says
        "first 30 s of 45 s". ``None`` embeds everything.
    fmt : {"ogg", "wav"}
        ``"ogg"`` (Vorbis, about 10x smaller than WAV) falls back to 16-bit
        WAV when OGG cannot be written.

    Returns
    -------
    Player
        Renders in Jupyter through ``_repr_html_``; ``data_uri`` and
        ``nbytes`` give the embedded audio.

    Examples
    --------
    >>> import numpy as np
    >>> from musicgen_nb.players import player
    >>> tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(45 * 8000) / 8000)
    >>> p = player(tone, 8000, label="A4", meta={"seed": 0})
    >>> p.capped, p.seconds
    (True, 30.0)
    """
    max_seconds = _check_options(max_seconds, fmt)
    if meta is not None and not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict or None, got {type(meta).__name__}")
    if _is_generation(audio):
        wav, sr, label, meta = _from_generation(audio, sr, item, label, meta)
    else:
        wav = one_item(audio, item, max_channels=8)
    if sr is None:
        raise TypeError("sr is required: pass the sample rate in Hz, e.g. player(audio, 32000)")
    sr = check_sr(sr)
    return Player(wav, sr, label=label, meta=meta, max_seconds=max_seconds, fmt=fmt)


def _check_options(max_seconds, fmt):
    """Check ``fmt`` and ``max_seconds`` of :func:`player`; returns ``max_seconds``."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {list(FORMATS)}, got {fmt!r}")
    check_positive(max_seconds, "max_seconds", allow_none=True)
    return max_seconds


def _from_generation(g, sr, item, label, meta):
    """(audio ``[C, N]``, sr, label, meta) of one batch item of a Generation."""
    if item is None:
        item = 0 if len(g.audio) == 1 else None
    wav = one_item(g.audio, item, max_channels=8)
    item = item or 0
    sr = g.sample_rate if sr is None else sr
    label = _generation_label(g, item) if label is None else label
    meta = _generation_meta(g, item) if meta is None else meta
    return wav, sr, label, meta


# ----------------------------------------------------------------------------- Gallery


class Gallery:
    """A CSS grid of :class:`Player` objects, with an optional table under it.

    Build one with :func:`gallery`. Attributes: ``players``, ``table``,
    ``columns`` and ``nbytes`` (encoded audio of all players).

    Examples
    --------
    >>> import numpy as np
    >>> g = gallery([(np.zeros(8000), 8000, "a"), (np.zeros(8000), 8000, "b")], columns=2)
    >>> len(g), g[1].label, g.nbytes == g[0].nbytes + g[1].nbytes
    (2, 'b', True)
    """

    def __init__(self, players: list, table: pd.DataFrame | None, columns: int) -> None:
        self.players = players
        self.table = table
        self.columns = columns

    @property
    def nbytes(self) -> int:
        """Bytes of encoded audio held by all the players."""
        return sum(p.nbytes for p in self.players)

    def __len__(self) -> int:
        return len(self.players)

    def __getitem__(self, i: int) -> Player:
        return self.players[i]

    def __repr__(self) -> str:
        table = "" if self.table is None else f", table {self.table.shape[0]}x{self.table.shape[1]}"
        return f"Gallery({len(self)} players, {self.nbytes} bytes of audio{table})"

    def _repr_html_(self) -> str:
        grid = (
            f"display:grid;grid-template-columns:repeat({self.columns},minmax(0,1fr));"
            "gap:8px;align-items:start"
        )
        parts = [f'<div class="mgnb-gallery"><div class="mgnb-grid" style="{grid}">']
        parts.extend(p._repr_html_() for p in self.players)
        parts.append("</div>")
        if self.table is not None:
            parts.append('<div class="mgnb-table" style="margin-top:8px;overflow-x:auto">')
            parts.append(
                self.table.to_html(index=False, escape=True, border=0, classes="mgnb-table")
            )
            parts.append("</div>")
        parts.append("</div>")
        return "".join(parts)


def gallery(
    items: list,
    *,
    table: pd.DataFrame | None = None,
    columns: int = 3,
    max_seconds: float | None = 30.0,
    fmt: str = "ogg",
) -> Gallery:
    """A grid of players, e.g. one per generation, with an optional table.

    Parameters
    ----------
    items : list
        Each a :class:`~musicgen_nb.Generation` (one player per batch item), a
        :class:`Player`, or a tuple ``(audio, sr)``, ``(audio, sr, label)`` or
        ``(audio, sr, label, meta)``. A single Generation is accepted too.
    table : pandas.DataFrame, optional
        Shown under the grid (HTML-escaped), e.g. the settings of a sweep.
    columns : int
        Players per row.
    max_seconds, fmt
        As in :func:`player`.

    Returns
    -------
    Gallery
        Renders in Jupyter through ``_repr_html_``.

    Examples
    --------
    >>> import numpy as np
    >>> from musicgen_nb.players import gallery
    >>> t = np.arange(16000) / 16000
    >>> g = gallery([(np.sin(2 * np.pi * f * t), 16000, f"{f} Hz") for f in (220, 440)])
    >>> g._repr_html_().count("<audio")
    2
    """
    columns = check_int(columns, "columns", minimum=1)
    if table is not None:
        import pandas as pd

        if not isinstance(table, pd.DataFrame):
            raise TypeError(f"table must be a pandas.DataFrame or None, got {type(table).__name__}")
    if _is_generation(items) or isinstance(items, Player):
        items = [items]
    if not isinstance(items, (list, tuple)):
        raise TypeError(
            f"items must be a list of Generations, Players or (audio, sr, label) tuples, got {type(items).__name__}"
        )
    players = []
    for i, it in enumerate(items):
        players.extend(_item_players(i, it, max_seconds, fmt))
    return Gallery(players, table, columns)


def _item_players(i: int, it, max_seconds, fmt) -> list:
    """The players of ``items[i]``: one per batch item of a Generation."""
    if isinstance(it, Player):
        return [it]
    if _is_generation(it):
        return [player(it, item=b, max_seconds=max_seconds, fmt=fmt) for b in range(len(it.audio))]
    if isinstance(it, tuple) and 2 <= len(it) <= 4:
        audio, sr, *rest = it
        label = rest[0] if len(rest) > 0 else None
        meta = rest[1] if len(rest) > 1 else None
        return [player(audio, sr, label=label, meta=meta, max_seconds=max_seconds, fmt=fmt)]
    raise TypeError(
        f"items[{i}] must be a Generation, a Player or a tuple (audio, sr[, label[, meta]]), "
        f"got {type(it).__name__}" + (f" of length {len(it)}" if isinstance(it, tuple) else "")
    )


def render_generation(g: Generation) -> str:
    """The HTML a :class:`~musicgen_nb.Generation` shows in Jupyter: a gallery of its items.

    The top-level package registers this as the ``"generation"`` renderer of
    :mod:`musicgen_nb._util.display`, so the core never imports the players.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> from musicgen_nb.players import render_generation
    >>> g = mg.load("tiny").generate(["a", "b"], duration=1, seed=0, progress=False)
    >>> render_generation(g).count("<audio")
    2
    """
    return gallery([g])._repr_html_()
