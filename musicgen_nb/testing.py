"""Offline stand-ins: test a notebook written for real checkpoints without their weights.

With ``MUSICGEN_NB_STANDIN=1`` in the environment (or after :func:`use_standins`),
every :func:`musicgen_nb.load` of a real checkpoint loads the offline checkpoint
of the same kind instead:

=====================  =========================
requested              stand-in
=====================  =========================
text models            ``standin``
melody models          ``standin-melody``
stereo text models     ``standin-stereo``
stereo melody models   ``standin-stereo-melody``
=====================  =========================

A stand-in is faithful where an author's code can tell: the real window (30 s
of positions, so a prompt or duration the real model takes in one window is
taken in one window), the 32 kHz rate, 50 frames/s, the codebooks (4, or 8 for
stereo) and the channels. Only its sizes are tiny (a few MB) and its weights
random. Its config carries the marker ``musicgen_nb_standin``.

The loaded model keeps the requested name (``s.name``) and says what replaced it
(``s.standin``, ``s.is_standin``). Every generation and every saved sidecar
records the stand-in, so its files can never pass for real output. The first
replacement in a process prints one notice on stdout (not stderr, which Jupyter
paints as an error); the sanitize rules drop it from compared outputs.

Code written against transformers gets the stand-ins too: with stand-ins on,
``from_pretrained`` of the MusicGen classes, ``AutoProcessor``, ``AutoTokenizer``,
``AutoFeatureExtractor``, ``AutoModelForTextToWaveform`` and
``pipeline("text-to-audio", name)`` resolve a MusicGen hub id to the stand-in's
folder (:mod:`musicgen_nb.checkpoints.hub_standins`). ``datasets.load_dataset``
returns the local or synthetic audio sets an author maps to hub ids
(:mod:`musicgen_nb.checkpoints.dataset_standins`).

Local directories, the offline checkpoints themselves and ``random_weights=True``
builds are never replaced. A hub id the toolkit does not know (a fine-tune) gets
the stand-in its name suggests (``melody``, ``stereo``), and the notice says so.

The pytest plugin (:mod:`musicgen_nb.pytest_plugin`) turns this on for a test run
with ``--musicgen-standin``; notebook kernels started by nbval or papermill
inherit it through the environment.

The stand-in API lives in :mod:`musicgen_nb.checkpoints.standins`; this module
re-exports it and adds the nbval sanitize rules (:func:`sanitize_file`).

Examples
--------
>>> import musicgen_nb as mg
>>> mg.testing.standin_for("facebook/musicgen-melody")
'standin-melody'
>>> with mg.testing.use_standins():
...     s = mg.load("facebook/musicgen-small")  # doctest: +SKIP
>>> s.name, s.standin, s.is_standin  # doctest: +SKIP
('facebook/musicgen-small', 'standin', True)
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .checkpoints.standins import (
    ENV,
    NEEDS_WEIGHTS_COMMENT,
    NEEDS_WEIGHTS_TAG,
    STANDINS,
    Standin,
    enabled,
    mark,
    notice,
    notify_once,
    resolve,
    standin_for,
    use_standins,
)

__all__ = [
    "ENV",
    "NEEDS_WEIGHTS_COMMENT",
    "NEEDS_WEIGHTS_TAG",
    "STANDINS",
    "Standin",
    "enabled",
    "mark",
    "notice",
    "notify_once",
    "resolve",
    "sanitize_file",
    "sanitize_rules",
    "standin_for",
    "use_standins",
]


def sanitize_file() -> Path:
    """The nbval sanitize rules shipped with the toolkit (``--nbval-sanitize-with`` takes it).

    ``musicgen-nb nbval-sanitize > file`` writes the same rules for other runners.

    Examples
    --------
    >>> sanitize_file().name
    'nbval_sanitize.cfg'
    """
    return Path(str(resources.files("musicgen_nb") / "nbval_sanitize.cfg"))


def sanitize_rules() -> str:
    """The text of :func:`sanitize_file`: ``[section]``, ``regex:`` and ``replace:`` lines.

    Examples
    --------
    >>> "[memory_addresses]" in sanitize_rules()
    True
    """
    return sanitize_file().read_text(encoding="utf-8")
