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
import io
import json
import struct

import numpy as np

from .audio import one_item

FORMATS = ("ogg", "wav")
MIME = {"ogg": "audio/ogg", "wav": "audio/wav"}
OGG_SERIAL = 0x6D676E62  # "mgnb": a fixed stream serial makes the bytes reproducible

_BOX = "border:1px solid #ddd;border-radius:6px;padding:8px;min-width:0;font-family:sans-serif"
_LABEL = "font-weight:600;font-size:13px;margin-bottom:4px;overflow-wrap:anywhere"
_NOTE = "font-size:11px;color:#666;margin-top:2px"
_META = "font-size:11px;border-collapse:collapse;margin-top:4px"
_CELL = "padding:1px 6px 1px 0;text-align:left;vertical-align:top;border:none"


# ----------------------------------------------------------------------------- OGG bytes


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    return table


_CRC = _crc_table()


def _ogg_crc(data: bytes) -> int:
    """The Ogg page checksum: CRC-32, polynomial 0x04c11db7, not reflected, init 0."""
    crc = 0
    table = _CRC
    for b in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[(crc >> 24) ^ b]
    return crc


def _fix_ogg_serial(data: bytes, serial: int = OGG_SERIAL) -> bytes:
    """Rewrite every page's stream serial number to ``serial`` and redo its checksum.

    libsndfile draws the serial from the clock, so the same audio would give
    different bytes (and notebook diffs) on every run.
    """
    out = bytearray(data)
    pos = 0
    while pos + 27 <= len(out):
        if out[pos : pos + 4] != b"OggS":
            raise ValueError("not an Ogg stream: page sync lost")
        n_seg = out[pos + 26]
        body = sum(out[pos + 27 : pos + 27 + n_seg])
        end = pos + 27 + n_seg + body
        struct.pack_into("<I", out, pos + 14, serial)
        struct.pack_into("<I", out, pos + 22, 0)
        struct.pack_into("<I", out, pos + 22, _ogg_crc(bytes(out[pos:end])))
        pos = end
    return bytes(out)


def _encode(samples: np.ndarray, sr: int, fmt: str) -> tuple[bytes, str]:
    """float32 ``[N, C]`` -> (file bytes, format actually used)."""
    import soundfile as sf

    if fmt == "ogg":
        try:
            buf = io.BytesIO()
            sf.write(buf, samples, sr, format="OGG", subtype="VORBIS")
            return _fix_ogg_serial(buf.getvalue()), "ogg"
        except Exception:  # libsndfile without Vorbis, or a rate Vorbis refuses
            pass
    buf = io.BytesIO()
    sf.write(buf, samples, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue(), "wav"


# ----------------------------------------------------------------------------- inputs


def _is_generation(obj) -> bool:
    return all(hasattr(obj, a) for a in ("audio", "codes", "sample_rate", "prompts", "params"))


def _check_sr(sr) -> int:
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer, float, np.floating)):
        raise TypeError(f"sr must be a positive integer sample rate in Hz, got {sr!r}")
    if not float(sr).is_integer() or sr <= 0:
        raise ValueError(f"sr must be a positive integer sample rate in Hz, got {sr!r}")
    return int(sr)


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
    """

    def __init__(self, audio: np.ndarray, sr: int, *, label, meta, max_seconds, fmt):
        channels, n = audio.shape
        self.sample_rate = sr
        self.channels = channels
        self.duration = n / sr
        keep = n if max_seconds is None else min(n, max(1, int(round(max_seconds * sr))))
        self.capped = keep < n
        self.seconds = keep / sr
        samples = np.ascontiguousarray(np.clip(audio[:, :keep], -1.0, 1.0).T)
        data, self.fmt = _encode(samples, sr, fmt)
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
    audio,
    sr=None,
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
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {list(FORMATS)}, got {fmt!r}")
    if max_seconds is not None:
        if isinstance(max_seconds, bool) or not isinstance(
            max_seconds, (int, float, np.integer, np.floating)
        ):
            raise TypeError(f"max_seconds must be a positive number or None, got {max_seconds!r}")
        if not np.isfinite(max_seconds) or max_seconds <= 0:
            raise ValueError(f"max_seconds must be a positive number or None, got {max_seconds!r}")
    if meta is not None and not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict or None, got {type(meta).__name__}")
    if _is_generation(audio):
        g = audio
        if item is None:
            item = 0 if len(g.audio) == 1 else None
        wav = one_item(g.audio, item, max_channels=8)
        item = item or 0
        sr = g.sample_rate if sr is None else sr
        label = _generation_label(g, item) if label is None else label
        meta = _generation_meta(g, item) if meta is None else meta
    else:
        wav = one_item(audio, item, max_channels=8)
    if sr is None:
        raise TypeError("sr is required: pass the sample rate in Hz, e.g. player(audio, 32000)")
    sr = _check_sr(sr)
    return Player(wav, sr, label=label, meta=meta, max_seconds=max_seconds, fmt=fmt)


# ----------------------------------------------------------------------------- Gallery


class Gallery:
    """A CSS grid of :class:`Player` objects, with an optional table under it.

    Build one with :func:`gallery`. Attributes: ``players``, ``table``,
    ``columns`` and ``nbytes`` (encoded audio of all players).
    """

    def __init__(self, players: list, table, columns: int):
        self.players = players
        self.table = table
        self.columns = columns

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.players)

    def __len__(self) -> int:
        return len(self.players)

    def __getitem__(self, i) -> Player:
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
    items,
    *,
    table=None,
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
    if isinstance(columns, bool) or not isinstance(columns, (int, np.integer)) or columns < 1:
        raise ValueError(f"columns must be an int >= 1, got {columns!r}")
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
        if isinstance(it, Player):
            players.append(it)
        elif _is_generation(it):
            for b in range(len(it.audio)):
                players.append(player(it, item=b, max_seconds=max_seconds, fmt=fmt))
        elif isinstance(it, tuple) and 2 <= len(it) <= 4:
            audio, sr, *rest = it
            label = rest[0] if len(rest) > 0 else None
            meta = rest[1] if len(rest) > 1 else None
            players.append(
                player(audio, sr, label=label, meta=meta, max_seconds=max_seconds, fmt=fmt)
            )
        else:
            raise TypeError(
                f"items[{i}] must be a Generation, a Player or a tuple (audio, sr[, label[, meta]]), "
                f"got {type(it).__name__}"
                + (f" of length {len(it)}" if isinstance(it, tuple) else "")
            )
    return Gallery(players, table, int(columns))


# ----------------------------------------------------------------------------- live


def live(stream, *, item: int = 0):
    """A live player for a stream: hear it while it is generated.

    Displaying it starts the stream in the background and plays the chunks back
    to back in the browser (Web Audio). Playback starts once the buffered audio
    will outlast the remaining generation time; if it ever runs dry the player
    says "buffering" and counts a stall. At the end it holds the final one-pass
    audio for replay and download. Its Stop button stops generation and keeps
    what was made. A stream displayed on its own renders this player.

    Parameters
    ----------
    stream : musicgen_nb.streaming.Stream
        From :meth:`MusicGen.stream`, not iterated yet.
    item : int
        Which batch item to play.

    Returns
    -------
    musicgen_nb.ui.live_player.LivePlayer

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> st = mg.load("tiny").stream("jazz", duration=1.0, seed=0)
    >>> p = mg.players.live(st)
    >>> g = p.play()             # in a notebook: just display p (or st)
    >>> p.stalls, g.audio.shape
    (0, (1, 1, 32000))
    """
    from .streaming import Stream
    from .ui.live_player import LivePlayer

    if not isinstance(stream, Stream):
        raise TypeError(
            f"stream must be a Stream from MusicGen.stream(...), got {type(stream).__name__}"
        )
    if stream._iter is not None:
        raise ValueError("stream was already iterated; make a new one with s.stream(...)")
    return LivePlayer(stream, item=item)
