"""Front-end files of the widgets (the live player, the synced player, the studio).

The JavaScript and CSS live in the repository's ``widgets/`` folder and ship in
the wheel as the package data ``musicgen_nb._widgets``.

Examples
--------
>>> "shouldStart" in asset("live_player.js")
True
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["asset"]


def asset(name: str) -> str:
    """Text of a front-end file.

    Shipped in the wheel as ``musicgen_nb._widgets``, or read from the repository's
    ``widgets/`` folder in a checkout.

    Parameters
    ----------
    name : str
        The file's name, e.g. ``"live_player.js"``.

    Returns
    -------
    str

    Raises
    ------
    FileNotFoundError
        When the file is in neither place; the message names it.

    Examples
    --------
    >>> ".mgnb-live" in asset("live_player.css")
    True
    >>> asset("nothing.js")
    Traceback (most recent call last):
    ...
    FileNotFoundError: front-end file 'nothing.js' is missing from the musicgen_nb install
    """
    try:
        path = resources.files("musicgen_nb._widgets") / name
        if path.is_file():
            return path.read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        pass
    repo = Path(__file__).resolve().parents[2] / "widgets" / name
    if repo.is_file():
        return repo.read_text(encoding="utf-8")
    raise FileNotFoundError(f"front-end file {name!r} is missing from the musicgen_nb install")
