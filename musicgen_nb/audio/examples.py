"""Real music shipped with the package: a few seconds of real instruments, offline.

``example("minuet")`` is the first eight bars of the Minuet in G major, BWV Anh. 114
(Christian Petzold, 1725; public domain), piano melody over a cello bass, rendered with
fluidsynth and the FluidR3_GM General MIDI soundfont (MIT licence) at 32 kHz, 10 s, mono.
Where it comes from and how to rebuild it: ``provenance("minuet")`` and
``tools/render_music.py``.

Examples
--------
>>> x, sr = example("minuet")
>>> x.shape, sr
((320000,), 32000)
"""

from __future__ import annotations

import json
from importlib import resources

import numpy as np

from .._util.checks import check_sr
from .io import load

EXAMPLES = ("minuet",)


def _data_file(name: str):
    """The shipped file ``name`` in ``musicgen_nb/audio/data``."""
    return resources.files("musicgen_nb.audio").joinpath("data", name)


def _check_name(name: str) -> str:
    if not isinstance(name, str) or name not in EXAMPLES:
        raise ValueError(f"name must be one of {list(EXAMPLES)}, got {name!r}")
    return name


def example(
    name: str = "minuet", *, sr: int | None = None, seconds: float | None = None
) -> tuple[np.ndarray, int]:
    """A shipped piece of real music as mono float32 ``[N]`` and its sample rate.

    Parameters
    ----------
    name : str
        One of :data:`EXAMPLES` (``"minuet"``).
    sr : int, optional, keyword-only
        Resample to this rate; None keeps the file's 32 kHz (MusicGen's rate).
    seconds : float, optional, keyword-only
        Keep only the first ``seconds`` (at most the clip's 10 s); None keeps all of it.

    Returns
    -------
    audio : np.ndarray
        float32 ``[N]``, peak at -1 dBFS.
    sr : int
        The sample rate of ``audio``.

    Examples
    --------
    >>> x, sr = example("minuet", sr=16000, seconds=2.5)
    >>> x.shape, sr, x.dtype
    ((40000,), 16000, dtype('float32'))
    """
    _check_name(name)
    if sr is not None:
        sr = check_sr(sr)
    if seconds is not None:
        ok = isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
        if not ok or not 0 < seconds <= 10:
            raise ValueError(f"seconds must be a number in (0, 10] or None, got {seconds!r}")
    with resources.as_file(_data_file(f"{name}.ogg")) as path:
        audio, rate = load(path, sr=sr, mono=True)
    audio = audio[0]
    if seconds is not None:
        audio = audio[: round(seconds * rate)]
    return np.ascontiguousarray(audio, dtype=np.float32), rate


def provenance(name: str = "minuet") -> dict:
    """Where a shipped example comes from: score, licence, soundfont, renderer, command, sha256.

    Parameters
    ----------
    name : str
        One of :data:`EXAMPLES`.

    Returns
    -------
    dict
        The example's entry of ``musicgen_nb/audio/data/PROVENANCE.json``.

    Examples
    --------
    >>> p = provenance("minuet")
    >>> p["score"]["title"]
    'Minuet in G major, BWV Anh. 114, bars 1-8'
    >>> p["soundfont"]["licence"].split()[0]
    'MIT'
    """
    _check_name(name)
    return json.loads(_data_file("PROVENANCE.json").read_text(encoding="utf-8"))[name]
