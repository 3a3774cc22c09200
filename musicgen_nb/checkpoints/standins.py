"""Offline stand-ins: which offline checkpoint replaces a real one, and when.

With ``MUSICGEN_NB_STANDIN=1`` (or inside :class:`use_standins`), a load of a real
checkpoint resolves to the offline checkpoint of the same kind (:data:`STANDINS`, keyed by
melody and stereo), keeps the requested name and records the replacement. The user-facing
description, with the table of replacements, is :mod:`musicgen_nb.testing`'s.

:mod:`musicgen_nb.testing` re-exports this API (``mg.testing.use_standins()``);
the pytest plugin (:mod:`musicgen_nb.pytest_plugin`) turns it on for a test run
with ``--musicgen-standin``; notebook kernels started by nbval or papermill
inherit it through the environment. This module imports no torch.

Examples
--------
>>> standin_for("facebook/musicgen-melody")
'standin-melody'
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .specs import OFFLINE, STANDIN_PRESETS, known, short_name

if TYPE_CHECKING:
    from typing import Any

#: The environment variable that turns stand-ins on (``1``) or off (``0`` or unset).
ENV = "MUSICGEN_NB_STANDIN"
#: The config attribute that marks a stand-in (its name), as loaded and as saved.
CONFIG_MARK = "musicgen_nb_standin"
#: The stand-in of each kind of checkpoint, keyed by (melody, stereo): the tiny layouts of
#: that kind with the real window (30 s), rates, codebooks and channels.
STANDINS = dict(
    zip([(False, False), (True, False), (False, True), (True, True)], STANDIN_PRESETS, strict=True)
)
_KIND_OF = {v: k for k, v in STANDINS.items()}
#: Tag (or comment line) that marks a notebook cell whose claims need real weights.
NEEDS_WEIGHTS_TAG = "needs-weights"
NEEDS_WEIGHTS_COMMENT = "# NEEDS_WEIGHTS"

_ON = ("1", "true", "yes", "on")
_OFF = ("", "0", "false", "no", "off")
_noticed = False


class Standin(NamedTuple):
    """One replacement: the name asked for, the offline checkpoint loaded instead.

    Examples
    --------
    >>> Standin("facebook/musicgen-small", "standin", False).standin
    'standin'
    """

    requested: str
    standin: str
    guessed: bool  # True when the kind was read from an unknown hub id's name


def enabled() -> bool:
    """Whether stand-ins are on: ``MUSICGEN_NB_STANDIN`` is ``1`` (or true/yes/on).

    Raises
    ------
    ValueError
        When the variable holds anything else than an on or off value.

    Examples
    --------
    >>> with use_standins():
    ...     enabled()
    True
    """
    value = os.environ.get(ENV, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ValueError(
        f"{ENV} must be 1 (stand-ins on) or 0 (off), got {os.environ[ENV]!r}; "
        f"also accepted: {', '.join(repr(v) for v in _ON + _OFF[1:])}"
    )


class use_standins:  # noqa: N801 - used like a function, and as a context manager
    """Turn stand-ins on (or off) for this process and the kernels it starts.

    It sets ``MUSICGEN_NB_STANDIN`` in ``os.environ`` and, when on, installs the
    transformers-level stand-ins (:func:`musicgen_nb.checkpoints.hub_standins.install`)
    and puts their ``sitecustomize`` on ``PYTHONPATH``, so kernels started from this
    process (``papermill.execute_notebook``) get them even if they never import musicgen-nb.
    Called plainly, the change lasts; used as a context manager, the previous value
    comes back on exit.

    Parameters
    ----------
    on : bool
        ``False`` turns stand-ins off.

    Examples
    --------
    >>> with use_standins():
    ...     enabled()
    True
    >>> with use_standins(False):
    ...     enabled()
    False
    """

    def __init__(self, on: bool = True) -> None:
        if not isinstance(on, bool):
            raise TypeError(f"on must be True or False, got {on!r}")
        self._previous = os.environ.get(ENV)
        self._path = os.environ.get("PYTHONPATH")
        os.environ[ENV] = "1" if on else "0"
        if on:  # transformers' from_pretrained and pipeline too (they check the switch per call)
            from .hub_standins import install
            from .standin_startup import shared_startup_dir, startup_on_path

            install()
            if not startup_on_path(self._path):  # kernels started from here run its sitecustomize
                folder = str(shared_startup_dir())
                os.environ["PYTHONPATH"] = os.pathsep.join(
                    [folder] + ([self._path] if self._path else [])
                )

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        for name, value in ((ENV, self._previous), ("PYTHONPATH", self._path)):
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _kind(name_or_path) -> tuple[bool, bool, bool] | None:
    """(melody, stereo, guessed) of a real checkpoint name, or None when nothing replaces it."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        return None  # load() raises its TypeError
    name = os.fspath(name_or_path)
    if name in OFFLINE or name in STANDIN_PRESETS:
        return None
    short = short_name(name)
    if short is not None:
        meta = known()[short]["meta"]
        return bool(meta["melody"]), bool(meta["stereo"]), False
    if Path(name).exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        return None  # a local directory, or not a hub id: load() decides
    repo = name.split("/")[1].lower()
    return "melody" in repo, "stereo" in repo, True


def standin_for(name_or_path: str | os.PathLike) -> str | None:
    """The offline checkpoint that stands in for ``name_or_path``, or None.

    This is the mapping alone: it holds whether or not stand-ins are on.

    Parameters
    ----------
    name_or_path : str or path
        A short name, a hub id or a local directory, as given to :func:`musicgen_nb.load`.

    Returns
    -------
    str or None
        ``"standin"``, ``"standin-melody"``, ``"standin-stereo"`` or
        ``"standin-stereo-melody"``; None for local directories, the offline
        checkpoints themselves and names that are not hub ids.

    Examples
    --------
    >>> standin_for("small"), standin_for("stereo-melody-large")
    ('standin', 'standin-stereo-melody')
    >>> standin_for("tiny") is None
    True
    """
    kind = _kind(name_or_path)
    return None if kind is None else STANDINS[kind[:2]]


def resolve(
    name_or_path: str | os.PathLike, *, random_weights: bool = False
) -> tuple[object, Standin | None]:
    """What :func:`musicgen_nb.load` should load: ``(name or folder, standin)``.

    When stand-ins are off, or nothing replaces ``name_or_path``, it comes back
    unchanged with ``None``. Otherwise the stand-in's folder comes back (built
    once, offline), with a :class:`Standin` for :func:`mark`, and the first
    replacement of the process prints the notice.

    Raises
    ------
    ValueError
        With stand-ins on, for a name that is neither a known checkpoint, a hub id
        (``owner/name``) nor an existing folder: it is unknown, and the message lists
        the known names.

    Examples
    --------
    >>> with use_standins(False):
    ...     resolve("small")
    ('small', None)
    """
    if random_weights or not enabled():
        return name_or_path, None
    kind = _kind(name_or_path)
    if kind is None:
        _check_known(name_or_path)
        return name_or_path, None
    standin = Standin(os.fspath(name_or_path), STANDINS[kind[:2]], kind[2])
    _notify(standin)
    from .offline import offline_checkpoint

    return os.fspath(offline_checkpoint(standin.standin)), standin


def _check_known(name_or_path) -> None:
    """Refuse, by name, what no stand-in replaces and nothing else can load (stand-ins on)."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        return  # load() raises its TypeError
    name = os.fspath(name_or_path)
    if name in OFFLINE or name in STANDIN_PRESETS or Path(name).exists():
        return
    if name.startswith((".", "/", "~")) or not name.strip():
        return  # load() names the missing folder or the empty name
    names = ", ".join(repr(n) for n in known())
    raise ValueError(
        f"unknown model {name!r}: it is not a known checkpoint, a hub id (owner/name) or an "
        f"existing folder, so no stand-in replaces it ({ENV}=1). Known names: {names}, their "
        f"hub ids (facebook/musicgen-...); offline presets: {', '.join(map(repr, OFFLINE))}"
    )


def mark(s: Any, standin: Standin | None) -> Any:
    """Label a loaded model with its stand-in (keep the requested name); return it.

    With ``standin=None``, a model whose config carries the stand-in marker
    (``musicgen_nb_standin``: a folder written from a stand-in by ``save_pretrained``
    or :func:`musicgen_nb.audiocraft.export_checkpoint`) is labelled with it too.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> s = mark(SimpleNamespace(name="x", meta={}), Standin("small", "standin", False))
    >>> s.name, s.standin, s.meta
    ('small', 'standin', {'name': 'small', 'standin': 'standin'})
    """
    if standin is None:  # a folder saved from a stand-in (save_pretrained, export) is one too
        marker = getattr(getattr(getattr(s, "model", None), "config", None), CONFIG_MARK, None)
        if isinstance(marker, str) and marker:
            s.standin = marker
            s.meta = dict(s.meta, standin=marker)
        return s
    s.name = standin.requested
    s.standin = standin.standin
    s.meta = dict(s.meta, name=standin.requested, standin=standin.standin)
    return s


def notice(standin: Standin) -> str:
    """The one-line notice printed at the first replacement of a process.

    Examples
    --------
    >>> notice(Standin("someone/musicgen-melody-jazz", "standin-melody", True))
    "musicgen-nb: stand-in: MUSICGEN_NB_STANDIN=1, so 'someone/musicgen-melody-jazz' is replaced by ... (kind guessed from the name: melody): ..."
    """
    guessed = ""
    if standin.guessed:
        melody, stereo = _KIND_OF[standin.standin]
        kind = " ".join(["stereo"] * stereo + ["melody"] * melody) or "text"
        guessed = f" (kind guessed from the name: {kind})"
    return (
        f"musicgen-nb: stand-in: {ENV}=1, so {standin.requested!r} is replaced by the offline "
        f"stand-in {standin.standin!r}{guessed}: random weights, its audio is noise. Every real "
        "checkpoint loaded in this process is replaced by the stand-in of its kind (same "
        "window, rates, codebooks and channels)."
    )


def _notify(standin: Standin) -> None:
    global _noticed
    if not _noticed:
        _noticed = True
        notify_once(notice(standin))


_told: set = set()


def notify_once(message: str) -> None:
    """Print a stand-in notice on stdout, once per process for each distinct message.

    On stdout, not stderr: Jupyter paints stderr as an error, and a notice is not
    one. The nbval sanitize rules (:func:`musicgen_nb.testing.sanitize_file`) drop
    the line, so a checked cell's output is the same with stand-ins and without.

    Examples
    --------
    >>> notify_once("musicgen-nb: stand-in: a doctest notice")  # doctest: +ELLIPSIS
    musicgen-nb: stand-in: a doctest notice
    """
    if message not in _told:
        _told.add(message)
        print(message, file=sys.stdout, flush=True)
