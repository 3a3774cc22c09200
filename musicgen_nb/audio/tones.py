"""Test tones: note names to MIDI numbers, sine tones and simple melodies.

Examples
--------
>>> note_to_midi("A4")
69
>>> melody_tone(["C4", "E4", "G4"], 0.5, 16000).shape
(24000,)
"""

from __future__ import annotations

import numbers
import re
from typing import TYPE_CHECKING

import numpy as np

from .._util.checks import check_positive, check_sr

if TYPE_CHECKING:
    from collections.abc import Sequence

_NOTE_RE = re.compile(r"^([A-Ga-g])([#b]?)(-?\d+)$")
_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def note_to_midi(note: int | str) -> int:
    """MIDI number of a note name like ``"C4"`` (60), ``"F#3"`` or ``"Bb2"``; ints pass through.

    Examples
    --------
    >>> note_to_midi("A4"), note_to_midi("C#4"), note_to_midi(64)
    (69, 61, 64)
    """
    if isinstance(note, numbers.Integral) and not isinstance(note, bool):
        if not 0 <= note <= 127:
            raise ValueError(f"note must be a MIDI number in 0..127, got {note!r}")
        return int(note)
    match = _NOTE_RE.match(note) if isinstance(note, str) else None
    if match is None:
        raise ValueError(
            f"note must be a MIDI number (0..127) or a name like 'C4', 'F#3', 'Bb2', got {note!r}"
        )
    letter, accidental, octave = match.groups()
    accidental_shift = {"#": 1, "b": -1, "": 0}[accidental]
    midi = 12 * (int(octave) + 1) + _PC[letter.upper()] + accidental_shift
    return note_to_midi(midi)


def sine(freq: float, duration: float, sr: int, *, amplitude: float = 0.5) -> np.ndarray:
    """A sine tone, float32 ``[round(duration * sr)]``.

    Examples
    --------
    >>> x = sine(440.0, 0.5, 16000, amplitude=0.25)
    >>> x.shape, float(x.max()) <= 0.25
    ((8000,), True)
    """
    freq = check_positive(freq, "freq")
    duration = check_positive(duration, "duration")
    sr = check_sr(sr)
    if freq >= sr / 2:
        raise ValueError(f"freq must be below the Nyquist frequency {sr / 2} Hz, got {freq}")
    t = np.arange(int(round(duration * sr))) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def melody_tone(
    notes: Sequence[int | str], note_duration: float, sr: int, *, amplitude: float = 0.5
) -> np.ndarray:
    """A simple melody: each note is a tone with 3 harmonics and 10 ms fades.

    Parameters
    ----------
    notes : list of int or str
        MIDI numbers or names like ``"C4"``.
    note_duration : float
        Seconds per note.
    sr : int
    amplitude : float, keyword-only
        Peak amplitude.

    Returns
    -------
    np.ndarray
        float32 ``[len(notes) * round(note_duration * sr)]``.

    Examples
    --------
    >>> melody_tone(["C4", "E4", 67], 0.25, 16000).shape
    (12000,)
    """
    if isinstance(notes, (str, numbers.Number)) or not hasattr(notes, "__len__") or not notes:
        raise ValueError(f"notes must be a non-empty list of MIDI numbers or names, got {notes!r}")
    note_duration = check_positive(note_duration, "note_duration")
    sr = check_sr(sr)
    n = int(round(note_duration * sr))
    t = np.arange(n) / sr
    fade = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / max(1, 0.01 * sr))
    pieces = []
    for note in notes:
        f0 = 440.0 * 2.0 ** ((note_to_midi(note) - 69) / 12.0)
        tone = sum(
            w * np.sin(2 * np.pi * h * f0 * t)
            for h, w in ((1, 1.0), (2, 0.5), (3, 0.25))
            if h * f0 < sr / 2
        )
        pieces.append(tone * fade)
    out = np.concatenate(pieces)
    out *= amplitude / max(float(np.abs(out).max()), 1e-12)
    return out.astype(np.float32)
