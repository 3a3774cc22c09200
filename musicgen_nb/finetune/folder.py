"""The files of a fine-tuning folder: their captions and the check of every file.

Captions come from an audiofolder ``metadata.csv``/``.jsonl`` (columns ``file_name``
and ``text``) or same-stem ``.txt`` files. A file that is missing, unreadable, too
short, silent or without a caption raises :class:`DataError` naming it.

Examples
--------
>>> AUDIO_EXTENSIONS[:2]
('.wav', '.flac')
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._util.files import sha256_file

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")


class DataError(ValueError):
    """A file of a fine-tuning dataset that cannot be used; the message names the file.

    Examples
    --------
    >>> issubclass(DataError, ValueError)
    True
    """


@dataclass
class Item:
    """One usable audio file and its caption.

    Examples
    --------
    >>> from pathlib import Path
    >>> Item(Path("a.wav"), "warm pad", "0" * 64, 2.0, 32000).text
    'warm pad'
    """

    file: Path
    text: str
    sha256: str
    duration: float
    sample_rate: int


def _read_rows(meta: Path) -> list[dict]:
    """The rows of a ``metadata.csv`` or ``metadata.jsonl``, checked for the two columns."""
    rows = []
    if meta.suffix == ".csv":
        with open(meta, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    else:
        for n, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{meta}: line {n} is not JSON ({err})") from None
    if rows and not {"file_name", "text"} <= set(rows[0]):
        raise ValueError(
            f"{meta} must have the columns 'file_name' and 'text' (the audiofolder "
            f"convention), got {sorted(rows[0])}"
        )
    return rows


def read_captions(folder: Path) -> tuple[str, dict[str, str | None], list[Path]]:
    """(layout, {relative file name: caption or None}, audio files without a caption entry).

    The layout is ``"metadata.csv"`` or ``"metadata.jsonl"`` (Hugging Face's audiofolder:
    columns ``file_name`` and ``text``) or ``"txt"`` (``song.wav`` captioned by ``song.txt``).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / "a.wav").touch(); (d / "a.txt").write_text("warm pad")
    8
    >>> read_captions(d)
    ('txt', {'a.wav': 'warm pad'}, [])
    """
    audio = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()
    )
    rel = {p.relative_to(folder).as_posix(): p for p in audio}
    meta_csv, meta_jsonl = folder / "metadata.csv", folder / "metadata.jsonl"
    if meta_csv.exists() and meta_jsonl.exists():
        raise ValueError(
            f"folder {str(folder)!r} holds both metadata.csv and metadata.jsonl; keep one"
        )
    if meta_csv.exists() or meta_jsonl.exists():
        meta = meta_csv if meta_csv.exists() else meta_jsonl
        captions = {}
        for row in _read_rows(meta):
            name = str(row["file_name"]).strip()
            text = row.get("text")
            captions[name] = text.strip() if isinstance(text, str) and text.strip() else None
        missing = [p for name, p in rel.items() if name not in captions]
        return meta.name, captions, missing
    captions = {}
    for name, p in rel.items():
        txt = p.with_suffix(".txt")
        text = txt.read_text(encoding="utf-8").strip() if txt.exists() else ""
        captions[name] = text or None
    return "txt", captions, []


def check_file(folder, name, text, *, min_duration, silence_db) -> Item:
    """The :class:`Item` of one file of ``folder``, or a :class:`DataError` naming what is wrong.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> check_file(d, "a.wav", "pad", min_duration=1.0, silence_db=-60.0)
    Traceback (most recent call last):
    ...
    musicgen_nb.finetune.folder.DataError: a.wav: listed in the metadata but there is no such file in ...
    """
    from .. import audio as audio_io

    path = folder / name
    if not path.exists():
        raise DataError(f"{name}: listed in the metadata but there is no such file in {folder}")
    if text is None:
        raise DataError(
            f"{name}: no caption (give it a 'text' in the metadata, or a {Path(name).stem}.txt)"
        )
    try:
        wav, sr = audio_io.load(path)
    except Exception as err:  # noqa: BLE001 - any reader failure is 'unreadable'
        raise DataError(f"{name}: unreadable audio ({err})") from None
    duration = wav.shape[-1] / sr
    if duration < min_duration:
        raise DataError(f"{name}: too short ({duration:.2f} s; min_duration is {min_duration:g} s)")
    peak = float(np.abs(wav).max())
    if not np.isfinite(peak) or peak <= 10.0 ** (silence_db / 20.0):
        level = -math.inf if peak == 0 else 20 * math.log10(peak)
        raise DataError(f"{name}: silent (peak {level:.1f} dBFS; the threshold is {silence_db:g})")
    return Item(path, text, sha256_file(path), duration, int(sr))


def check_items(folder, names, captions, *, min_duration, silence_db, strict):
    """(usable items, skipped (name, reason)); a bad file warns, or raises when ``strict``.

    Examples
    --------
    >>> import tempfile, pathlib, warnings
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     check_items(d, ["a.wav"], {"a.wav": "pad"}, min_duration=1.0, silence_db=-60.0,
    ...                 strict=False)
    ([], [('a.wav', 'listed in the metadata but there is no such file in ...')])
    """
    items, skipped = [], []
    for name in names:
        try:
            items.append(
                check_file(folder, name, captions.get(name), min_duration=min_duration,
                            silence_db=silence_db)
            )  # fmt: skip
        except DataError as err:
            if strict:
                raise
            warnings.warn(f"skipping {err}", stacklevel=3)
            skipped.append((name, str(err).split(": ", 1)[1]))
    return items, skipped
