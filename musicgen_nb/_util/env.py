"""Our environment variables, read one way: switches that say what they accept, a cache folder that is one.

:func:`env_switch` reads an on/off variable (``0/false/off/no`` or ``1/true/on/yes``, any
case) and refuses anything else by the variable's name. :func:`cache_root` is
``$MUSICGEN_NB_CACHE`` or ``~/.cache/musicgen_nb``, refused by name when it is a file.

Examples
--------
>>> import os
>>> os.environ["MY_SWITCH"] = "Off"
>>> env_switch("MY_SWITCH", default=True)
False
>>> del os.environ["MY_SWITCH"]
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["env_switch", "cache_root", "CACHE_ENV", "OFF", "ON"]

#: The variable naming our cache folder (offline checkpoints, built kernels, codes).
CACHE_ENV = "MUSICGEN_NB_CACHE"
#: The spellings of off and on that a switch accepts (compared lower-cased, stripped).
OFF = ("0", "false", "off", "no")
ON = ("1", "true", "on", "yes")


def env_switch(name: str, *, default: bool) -> bool:
    """The on/off value of environment variable ``name``; ``default`` when unset or empty.

    Raises
    ------
    ValueError
        For any other value, naming the variable and what it accepts.

    Examples
    --------
    >>> import os
    >>> os.environ["MY_SWITCH"] = "maybe"
    >>> try:
    ...     env_switch("MY_SWITCH", default=True)
    ... except ValueError as e:
    ...     print(str(e)[:43])
    MY_SWITCH must be 0/false/off/no or 1/true/
    >>> del os.environ["MY_SWITCH"]
    """
    raw = os.environ.get(name)
    value = (raw or "").strip().lower()
    if not value:
        return default
    if value in OFF:
        return False
    if value in ON:
        return True
    raise ValueError(
        f"{name} must be {'/'.join(OFF)} or {'/'.join(ON)} (any case), got {raw!r}; "
        f"unset it for the default ({'on' if default else 'off'})"
    )


def cache_root() -> Path:
    """Our cache folder: ``$MUSICGEN_NB_CACHE``, else ``~/.cache/musicgen_nb`` (maybe not yet made).

    Raises
    ------
    ValueError
        When the path exists and is not a folder (a file, say): names the variable.

    Examples
    --------
    >>> import os, tempfile
    >>> f = tempfile.NamedTemporaryFile()
    >>> os.environ["MUSICGEN_NB_CACHE"], old = f.name, os.environ.get("MUSICGEN_NB_CACHE")
    >>> try:
    ...     cache_root()
    ... except ValueError as e:
    ...     print("refused:", "MUSICGEN_NB_CACHE" in str(e))
    refused: True
    >>> os.environ["MUSICGEN_NB_CACHE"] = old or ""
    """
    raw = os.environ.get(CACHE_ENV)
    root = Path(raw) if raw else Path.home() / ".cache" / "musicgen_nb"
    if root.exists() and not root.is_dir():
        origin = f"{CACHE_ENV}={raw!r}" if raw else f"the default cache folder {str(root)!r}"
        raise ValueError(
            f"{origin} is a file, not a folder: point {CACHE_ENV} at a folder "
            "(it is created if missing) or remove that file"
        )
    return root
