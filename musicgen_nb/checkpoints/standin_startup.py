"""The ``sitecustomize`` that gives stand-ins to interpreters that never import musicgen-nb.

nbval and papermill start notebook kernels as new interpreters. The pytest plugin
(and :func:`musicgen_nb.testing.use_standins`) puts a folder holding
:data:`SITECUSTOMIZE` on their ``PYTHONPATH``; at start it calls
:func:`musicgen_nb.checkpoints.hub_standins.install` when ``MUSICGEN_NB_STANDIN``
is on, then runs the ``sitecustomize`` it hides, if any. It runs once per
interpreter even when several such folders are on the path, and an interpreter
without musicgen-nb starts silently.

Examples
--------
>>> import tempfile
>>> with tempfile.TemporaryDirectory() as tmp:
...     startup_on_path(str(startup_dir(tmp)))
True
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["SITECUSTOMIZE", "shared_startup_dir", "startup_dir", "startup_on_path"]

#: The ``sitecustomize`` a kernel runs at start (:func:`startup_dir`): stand-ins on, then the
#: ``sitecustomize`` this one hides, if any.
SITECUSTOMIZE = '''\
"""musicgen-nb stand-ins for this interpreter (written by musicgen-nb's pytest plugin)."""
import importlib.machinery
import importlib.util
import os
import sys

# Run once per interpreter, however many of these folders are on sys.path (xdist workers,
# use_standins() then --musicgen-standin): a visited flag, and ours are never chained.
if not getattr(sys, "_musicgen_nb_sitecustomize", False):
    sys._musicgen_nb_sitecustomize = True
    if os.environ.get("MUSICGEN_NB_STANDIN", "").strip().lower() in ("1", "true", "yes", "on"):
        try:
            from musicgen_nb.checkpoints import hub_standins

            hub_standins.install()
        except ModuleNotFoundError as err:  # an interpreter without musicgen-nb: nothing to do
            if err.name != "musicgen_nb":
                print(f"musicgen-nb: stand-ins not installed in this process: {err}",
                      file=sys.stderr)
        except Exception as err:  # never break the interpreter's start
            print(f"musicgen-nb: stand-ins not installed in this process: {err}", file=sys.stderr)

    def _ours(folder):
        try:
            with open(os.path.join(folder or ".", "sitecustomize.py"), encoding="utf-8") as f:
                return "musicgen-nb stand-ins for this interpreter" in f.readline()
        except (OSError, ValueError):
            return False

    _rest = [p for p in sys.path if isinstance(p, str) and not _ours(p)]
    _spec = importlib.machinery.PathFinder.find_spec("sitecustomize", _rest)
    if _spec is not None and _spec.loader is not None:  # the sitecustomize this one hides
        _module = importlib.util.module_from_spec(_spec)
        _spec.loader.exec_module(_module)
'''


def startup_dir(root: str | os.PathLike | None = None) -> Path:
    """Write :data:`SITECUSTOMIZE` into a new folder and return it, for a kernel's ``PYTHONPATH``.

    Parameters
    ----------
    root : path, optional
        Where the folder is made (a temporary folder by default). The caller removes it.

    Examples
    --------
    >>> import shutil
    >>> folder = startup_dir()
    >>> (folder / "sitecustomize.py").is_file()
    True
    >>> shutil.rmtree(folder)
    """
    folder = Path(tempfile.mkdtemp(prefix="musicgen-nb-startup-", dir=root))
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    return folder


def startup_on_path(pythonpath: str | None) -> bool:
    """Whether a ``PYTHONPATH`` value already holds a folder with our ``sitecustomize``.

    The plugin and :func:`musicgen_nb.testing.use_standins` then leave it as it is
    (one startup folder is enough; xdist workers inherit the controller's).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     folder = startup_dir(tmp)
    ...     startup_on_path(str(folder)), startup_on_path(tmp)
    (True, False)
    """
    for entry in (pythonpath or "").split(os.pathsep):
        file = Path(entry or ".") / "sitecustomize.py"
        try:
            if file.is_file() and file.read_text(encoding="utf-8") == SITECUSTOMIZE:
                return True
        except (OSError, UnicodeDecodeError):
            continue
    return False


def shared_startup_dir(cache: str | os.PathLike | None = None) -> Path:
    """The folder of :data:`SITECUSTOMIZE` in the offline cache, written once (atomically).

    :func:`musicgen_nb.testing.use_standins` puts it on ``PYTHONPATH``.

    Parameters
    ----------
    cache : path, optional
        The cache folder; :func:`musicgen_nb.checkpoints.offline.cache_root` by default.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     (shared_startup_dir(tmp) / "sitecustomize.py").read_text() == SITECUSTOMIZE
    True
    """
    from .._util.files import write_atomic
    from .offline import cache_root

    folder = Path(cache if cache is not None else cache_root()) / "standin-startup"
    file = folder / "sitecustomize.py"
    if not file.is_file() or file.read_text(encoding="utf-8") != SITECUSTOMIZE:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(file, SITECUSTOMIZE, overwrite=True)
    return folder
