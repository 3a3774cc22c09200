"""The files of a fine-tuning folder: their captions and the check of every file.

Captions come from an audiofolder ``metadata.csv``/``.jsonl`` (columns ``file_name``
and ``text``; UTF-8, with or without the byte-order mark Excel writes) or same-stem
``.txt`` files. A file that is missing, unreadable, too short, too long, silent, holds
NaN or infinite samples, or has no caption raises :class:`DataError` naming it; so does
a metadata line that is not UTF-8, has no ``file_name``, or repeats a file.

Guarantee: nothing outside the dataset folder is ever read. A name in the metadata that
is absolute, climbs out with ``..``, or resolves outside the folder through a symlink
(an audio file, a caption ``.txt`` or the metadata file itself) is refused with a
:class:`DataError` naming the metadata file, the line and the path, in strict and
non-strict mode alike.

Examples
--------
>>> AUDIO_EXTENSIONS[:2]
('.wav', '.flac')
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._util.files import sha256_file

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")
#: Default longest file, in seconds (``max_duration`` of :func:`~musicgen_nb.finetune.dataset`).
#: EnCodec encodes a file in one pass: about 44 MB of memory per second of audio for the
#: released checkpoints (1380 B per sample at 32 kHz), so 10 minutes needs about 26 GB.
MAX_FILE_SECONDS = 600.0


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


def inside(folder: Path, name: str, where: str) -> Path:
    """``folder / name``, or a :class:`DataError` if it leaves ``folder`` (absolute, ``..``, symlink).

    ``where`` names the source of ``name`` in the message (the metadata file and line).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> inside(d, "a.wav", "metadata.csv line 2") == d / "a.wav"
    True
    >>> inside(d, "../secret.wav", "metadata.csv line 3")
    Traceback (most recent call last):
    ...
    musicgen_nb.finetune.folder.DataError: metadata.csv line 3: '../secret.wav' is outside the dataset folder ...
    """
    root = folder.resolve()
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts:
        raise DataError(
            f"{where}: {name!r} is outside the dataset folder {root} (absolute paths and '..' "
            "are refused: give names relative to the folder)"
        )
    try:
        target = (folder / rel).resolve()
    except ValueError as err:  # a NUL byte ("embedded null byte")
        raise DataError(f"{where}: {name!r} is not a file name ({err})") from None
    if not target.is_relative_to(root):
        raise DataError(
            f"{where}: {name!r} resolves to {target}, outside the dataset folder {root} "
            "(through a symlink); copy the file into the folder instead"
        )
    return folder / rel


def _not_text(raw: bytes, err: UnicodeDecodeError) -> str:
    line = raw[: err.start].count(b"\n") + 1
    return f"line {line} is not UTF-8 text (byte 0x{raw[err.start]:02x}; save the file as UTF-8)"


def _csv_rows(meta: Path, raw: bytes, bad: list) -> list[tuple[int, dict]]:
    """(line, row) of a metadata.csv; rows with bytes that are not UTF-8 go to ``bad``."""
    reader = csv.DictReader(io.StringIO(raw.decode("utf-8-sig", "surrogateescape"), newline=""))
    fields = reader.fieldnames or []
    if not {"file_name", "text"} <= set(fields):
        raise ValueError(
            f"{meta} must have the columns 'file_name' and 'text' (the audiofolder "
            f"convention), got {sorted(fields)}"
        )
    rows = []
    for row in reader:
        try:
            "".join(str(v) for v in row.values()).encode("utf-8")
        except UnicodeEncodeError:
            bad.append((f"{meta.name} line {reader.line_num}",
                        "not UTF-8 text (save the file as UTF-8)"))  # fmt: skip
            continue
        rows.append((reader.line_num, row))
    return rows


def _jsonl_rows(meta: Path, raw: bytes, bad: list) -> list[tuple[int, dict]]:
    """(line, row) of a metadata.jsonl; lines that are not UTF-8 go to ``bad``."""
    rows = []
    for n, line in enumerate(raw.removeprefix(b"\xef\xbb\xbf").split(b"\n"), 1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            bad.append((f"{meta.name} line {n}", "not UTF-8 text (save the file as UTF-8)"))
            continue
        if text.strip():
            try:
                row = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(f"{meta}: line {n} is not JSON ({err})") from None
            rows.append((n, row))
    return rows


def _metadata(folder: Path, meta: Path, bad: list) -> dict[str, str | None]:
    """{file name: caption or None} of a metadata file; bad and repeated rows go to ``bad``."""
    inside(folder, meta.name, meta.name)
    raw = meta.read_bytes()
    read = _csv_rows if meta.suffix == ".csv" else _jsonl_rows
    captions, first = {}, {}
    for n, row in read(meta, raw, bad):
        where = f"{meta.name} line {n}"
        name = row.get("file_name") if isinstance(row, dict) else None
        if not isinstance(name, str) or not name.strip():
            bad.append((where, "no 'file_name' (each row needs 'file_name' and 'text')"))
            continue
        inside(folder, name.strip(), where)
        name = Path(name.strip()).as_posix()  # "./a.wav" is "a.wav"
        if name in first:
            bad.append((where, f"{name!r} is listed again (first on line {first[name]}); the "
                               "first row is kept"))  # fmt: skip
            continue
        first[name] = n
        text = row.get("text")
        captions[name] = text.strip() if isinstance(text, str) and text.strip() else None
    return captions


def _txt_caption(folder: Path, audio: Path, bad: list) -> str | None | bool:
    """The caption of ``audio`` from its same-stem ``.txt``; False (in ``bad``) if unreadable."""
    txt = audio.with_suffix(".txt")
    if not txt.exists():
        return None
    rel = txt.relative_to(folder).as_posix()
    inside(folder, rel, rel)
    raw = txt.read_bytes()
    try:
        return raw.decode("utf-8-sig").strip() or None
    except UnicodeDecodeError as err:
        bad.append((rel, _not_text(raw, err)))
        return False


def read_captions(folder: Path) -> tuple[str, dict[str, str | None], list[Path], list]:
    """(layout, {file name: caption or None}, audio files without an entry, bad entries).

    The layout is ``"metadata.csv"`` or ``"metadata.jsonl"`` (Hugging Face's audiofolder:
    columns ``file_name`` and ``text``) or ``"txt"`` (``song.wav`` captioned by ``song.txt``).
    Bad entries are ``(where, reason)``: a line or caption file that is not UTF-8, a row
    without ``file_name``, a repeated file. A path that leaves ``folder`` raises.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / "a.wav").touch(); (d / "a.txt").write_text("warm pad")
    8
    >>> read_captions(d)
    ('txt', {'a.wav': 'warm pad'}, [], [])
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
    bad: list = []
    if meta_csv.exists() or meta_jsonl.exists():
        meta = meta_csv if meta_csv.exists() else meta_jsonl
        captions = _metadata(folder, meta, bad)
        missing = [p for name, p in rel.items() if name not in captions]
        for name in (n for n in rel if n not in captions):  # read by the checks: no symlink out
            inside(folder, name, name)
        return meta.name, captions, missing, bad
    captions = {}
    for name, p in rel.items():
        inside(folder, name, name)
        text = _txt_caption(folder, p, bad)
        if text is not False:
            captions[name] = text
    return "txt", captions, [], bad


def _duration_up_front(path: Path) -> float | None:
    """The file's duration from its header (nothing decoded), or None if soundfile cannot tell."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:  # noqa: BLE001 - not a soundfile format: the full read decides
        return None
    return info.frames / info.samplerate if info.samplerate > 0 else None


def check_file(folder, name, text, *, min_duration, silence_db, max_duration=MAX_FILE_SECONDS) -> Item:  # fmt: skip
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

    path = inside(folder, name, name)
    if not path.exists():
        raise DataError(f"{name}: listed in the metadata but there is no such file in {folder}")
    if text is None:
        raise DataError(
            f"{name}: no caption (give it a 'text' in the metadata, or a {Path(name).stem}.txt)"
        )
    long = f"max_duration is {max_duration:g} s: cut it into shorter files"
    duration = _duration_up_front(path)
    if duration is not None and duration > max_duration:
        raise DataError(f"{name}: too long ({duration:.0f} s; {long})")
    try:
        wav, sr = audio_io.load(path)
    except Exception as err:  # noqa: BLE001 - any reader failure is 'unreadable'
        raise DataError(f"{name}: unreadable audio ({err})") from None
    duration = wav.shape[-1] / sr
    if duration > max_duration:
        raise DataError(f"{name}: too long ({duration:.0f} s; {long})")
    if duration < min_duration:
        raise DataError(f"{name}: too short ({duration:.2f} s; min_duration is {min_duration:g} s)")
    finite = np.isfinite(wav)
    if not finite.all():
        raise DataError(
            f"{name}: invalid audio ({int((~finite).sum())} samples are NaN or infinite)"
        )
    peak = float(np.abs(wav).max())
    if peak <= 10.0 ** (silence_db / 20.0):
        level = -math.inf if peak == 0 else 20 * math.log10(peak)
        raise DataError(f"{name}: silent (peak {level:.1f} dBFS; the threshold is {silence_db:g})")
    return Item(path, text, sha256_file(path), duration, int(sr))


def check_items(folder, names, captions, *, min_duration, silence_db, strict, bad=(), max_duration=MAX_FILE_SECONDS):  # fmt: skip
    """(usable items, skipped (name, reason)); a bad file warns, or raises when ``strict``.

    ``bad`` are the ``(where, reason)`` entries of :func:`read_captions`: reported first.

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

    def skip(err: DataError) -> None:
        if strict:
            raise err
        warnings.warn(f"skipping {err}", stacklevel=4)
        skipped.append(tuple(str(err).split(": ", 1)))

    for where, reason in bad:
        skip(DataError(f"{where}: {reason}"))
    for name in names:
        try:
            items.append(
                check_file(folder, name, captions.get(name), min_duration=min_duration,
                           silence_db=silence_db, max_duration=max_duration)
            )  # fmt: skip
        except DataError as err:
            skip(err)
    return items, skipped


_STYLES = (
    ([60, 64, 67, 72], "bright rising arpeggio in C major, quick plucked notes"),
    ([57, 53, 50, 45], "dark falling arpeggio in A minor, slow low notes"),
)


def synth_dataset(
    folder: str | os.PathLike, *, seconds: float = 2.0, sr: int = 32000, per_style: int = 1
) -> Path:
    """Write a small captioned dataset of two "styles" of tunes (audiofolder layout).

    Style 0 is a bright rising arpeggio in C major, style 1 a low falling one in
    A minor; ``per_style`` tunes of each, transposed by a tone each time.

    Returns
    -------
    Path
        ``folder``, with ``tune<i>.wav`` files and a ``metadata.csv``.

    Examples
    --------
    >>> import tempfile
    >>> sorted(p.name for p in synth_dataset(tempfile.mkdtemp()).iterdir())
    ['metadata.csv', 'tune0.wav', 'tune1.wav']
    """
    from .. import audio as audio_io

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(per_style):
        for j, (notes, text) in enumerate(_STYLES):
            note = 0.125 if j == 0 else 0.25
            n = max(1, int(round(seconds / note)))
            seq = [notes[k % len(notes)] + 2 * i for k in range(n)]
            wav = audio_io.melody_tone(seq, note, sr)
            wav = np.pad(wav, (0, max(0, int(round(seconds * sr)) - wav.shape[-1])))
            name = f"tune{len(rows)}.wav"
            target = folder / name
            if target.exists():
                raise FileExistsError(f"{target} exists; give synth_dataset an empty folder")
            audio_io.write(target, wav[: int(round(seconds * sr))], sr)
            rows.append(dict(file_name=name, text=text))
    with open(folder / "metadata.csv", "x", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["file_name", "text"])
        w.writeheader()
        w.writerows(rows)
    return folder
