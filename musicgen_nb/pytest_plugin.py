"""pytest plugin: test MusicGen notebooks and code offline, on stand-ins.

Registered through the ``pytest11`` entry point (name ``musicgen_nb``), so
installing musicgen-nb is enough. ``-p no:musicgen_nb`` turns it off.

- ``--musicgen-standin`` (or ``musicgen_standin = true`` in the pytest ini)
  sets ``MUSICGEN_NB_STANDIN=1`` for the run. Notebook kernels started by nbval
  or papermill inherit it, and a ``sitecustomize`` put on their ``PYTHONPATH``
  turns on the transformers-level stand-ins at interpreter start, so
  ``mg.load("facebook/musicgen-small")`` and, in a notebook that never imports
  musicgen-nb, ``MusicgenForConditionalGeneration.from_pretrained(...)``,
  ``AutoProcessor.from_pretrained(...)`` and ``pipeline("text-to-audio", ...)``
  load the offline stand-in (see :mod:`musicgen_nb.testing`).
- ``musicgen_standin_datasets`` (ini, one ``HUB_ID = FOLDER`` or
  ``HUB_ID = synthetic ...`` a line) makes ``datasets.load_dataset(HUB_ID)`` return
  that audio set under stand-ins
  (:mod:`musicgen_nb.checkpoints.dataset_standins`); it needs ``datasets``.
- With stand-ins on (or ``--musicgen-sanitize``) nbval compares outputs after
  musicgen-nb's sanitize rules (timings, progress bars, addresses, temp paths).
  A file given with ``--nbval-sanitize-with`` is applied too, after ours.
- Marker ``@pytest.mark.needs_weights`` skips a test while stand-ins are on. In a
  notebook, the cell tag ``needs-weights`` (or a ``# NEEDS_WEIGHTS`` line) does
  the same for one cell under nbval.
- Fixtures ``musicgen_tiny`` and ``musicgen_tiny_melody``: the offline models,
  loaded once per session.

Examples
--------
.. code-block:: console

    $ pytest --nbval-lax --musicgen-standin examples/tutorial/
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from . import testing

_SKIP_REASON = "needs real weights; MusicGen stand-ins are on (--musicgen-standin)"
_KINDS = dict(
    zip(("text", "melody", "stereo", "stereo melody"), testing.STANDINS.values(), strict=True)
)


def pytest_addoption(parser):
    """Add ``--musicgen-standin``, ``--musicgen-sanitize`` and the ``musicgen_standin`` ini option."""
    group = parser.getgroup("musicgen-nb", "MusicGen offline stand-ins (musicgen-nb)")
    group.addoption(
        "--musicgen-standin",
        action="store_true",
        default=False,
        help=f"load the offline stand-in of every real MusicGen checkpoint ({testing.ENV}=1, "
        "inherited by notebook kernels) and apply musicgen-nb's nbval sanitize rules",
    )
    group.addoption(
        "--musicgen-sanitize",
        action="store_true",
        default=False,
        help="apply musicgen-nb's nbval sanitize rules without stand-ins",
    )
    parser.addini("musicgen_standin", type="bool", default=False, help="same as --musicgen-standin")
    parser.addini(
        "musicgen_standin_datasets",
        type="linelist",
        default=[],
        help="under stand-ins, datasets.load_dataset(HUB_ID) returns a local folder or a "
        "synthetic audio set: one 'HUB_ID = FOLDER' or 'HUB_ID = synthetic [n=8] [seconds=5] "
        "[sampling_rate=32000] [LABEL=a,b]' a line (needs the 'datasets' package)",
    )


def standin_requested(config) -> bool:
    """Whether this run asked for stand-ins (flag or ini option).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> config = SimpleNamespace(getoption=lambda name: False, getini=lambda name: True)
    >>> standin_requested(config)
    True
    """
    return bool(config.getoption("musicgen_standin") or config.getini("musicgen_standin"))


@pytest.hookimpl(trylast=True)  # after nbval has turned --sanitize-with into its new name
def pytest_configure(config):
    """Register ``needs_weights``, turn stand-ins on if asked, and point nbval at our rules."""
    config.addinivalue_line(
        "markers",
        "needs_weights: the test's claims need real MusicGen weights; "
        "skipped while stand-ins are on (--musicgen-standin)",
    )
    try:
        testing.enabled()  # a bad MUSICGEN_NB_STANDIN value is a usage error, said once
    except ValueError as err:
        raise pytest.UsageError(str(err)) from None
    standin = standin_requested(config)
    if standin:
        _set_env(config, testing.ENV, "1")
        _kernels_get_standins(config)
        _standin_datasets(config)
    theirs = getattr(config.option, "nbval_sanitize_with", None)
    if theirs and not Path(theirs).is_file():  # nbval would fail later with an INTERNALERROR
        raise pytest.UsageError(
            f"--nbval-sanitize-with {theirs}: no such file; give an existing nbval sanitize "
            "file ([section], regex: and replace: lines)"
        )
    if (standin or config.getoption("musicgen_sanitize")) and hasattr(
        config.option, "nbval_sanitize_with"
    ):
        config.option.nbval_sanitize_with = _sanitize_with(config)


def _set_env(config, name: str, value: str) -> None:
    previous = os.environ.get(name)
    os.environ[name] = value
    config.add_cleanup(lambda: _restore(name, previous))


def _kernels_get_standins(config) -> None:
    """Give the stand-ins to this process and to every interpreter it starts (notebook kernels)."""
    import shutil

    from .checkpoints import hub_standins, standin_startup

    hub_standins.install()
    path = os.environ.get("PYTHONPATH")
    if standin_startup.startup_on_path(
        path
    ):  # xdist workers, or use_standins() before: one is enough
        return
    folder = standin_startup.startup_dir()
    config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))
    _set_env(config, "PYTHONPATH", os.pathsep.join([str(folder)] + ([path] if path else [])))


def _standin_datasets(config) -> None:
    """Pass the ini's ``musicgen_standin_datasets`` table to this process and to kernels."""
    import importlib.util
    import json

    from .checkpoints import dataset_standins

    lines = config.getini("musicgen_standin_datasets")
    if not lines:
        return
    where = f"musicgen_standin_datasets in {config.inipath or 'the pytest ini'}"
    root = Path(config.inipath).parent if config.inipath else Path(config.rootpath)
    try:
        table = dataset_standins.parse_table(lines, root=root, where=where)
    except ValueError as err:
        raise pytest.UsageError(str(err)) from None
    try:
        missing = importlib.util.find_spec("datasets") is None
    except (ImportError, ValueError):  # a broken or blocked install
        missing = True
    if missing:
        raise pytest.UsageError(
            f"{where} maps {len(table)} dataset(s), but the optional 'datasets' package is not "
            'installed: pip install "musicgen-nb[datasets]"'
        )
    _set_env(config, dataset_standins.ENV, json.dumps(table))


def _restore(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _sanitize_with(config) -> str:
    """Our rules file, or a temporary file of our rules then the user's."""
    ours = testing.sanitize_file()
    theirs = config.option.nbval_sanitize_with
    if not theirs:
        return str(ours)
    try:
        text = testing.sanitize_rules() + "\n" + Path(theirs).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        why = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise pytest.UsageError(
            f"--nbval-sanitize-with {theirs}: cannot read that file ({why}); give an "
            "existing nbval sanitize file ([section], regex: and replace: lines)"
        ) from None
    fd, path = tempfile.mkstemp(prefix="musicgen-nb-sanitize-", suffix=".cfg")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    config.add_cleanup(lambda: Path(path).unlink(missing_ok=True))
    return path


def pytest_report_header(config):
    """One header line while stand-ins are on, naming what replaces what."""
    if testing.enabled():
        pairs = ", ".join(f"{k} -> {v}" for k, v in _KINDS.items())
        return f"musicgen-nb: stand-ins on ({testing.ENV}=1): {pairs}"
    return None


def needs_weights(item) -> bool:
    """Whether a test item is marked ``needs_weights``, or is an nbval cell tagged ``needs-weights``.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> cell = {"metadata": {"tags": ["needs-weights"]}, "source": "x = 1"}
    >>> needs_weights(SimpleNamespace(get_closest_marker=lambda name: None, cell=cell))
    True
    """
    if item.get_closest_marker("needs_weights") is not None:
        return True
    cell = getattr(item, "cell", None)  # nbval's IPyNbCell
    if cell is None or not hasattr(cell, "get"):
        return False
    tags = cell.get("metadata", {}).get("tags", [])
    if testing.NEEDS_WEIGHTS_TAG in tags:
        return True
    lines = (line.strip() for line in str(cell.get("source", "")).splitlines())
    return testing.NEEDS_WEIGHTS_COMMENT in lines


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Skip a ``needs_weights`` test or cell while stand-ins are on."""
    if needs_weights(item) and testing.enabled():
        pytest.skip(_SKIP_REASON)


@pytest.fixture(scope="session")
def musicgen_tiny():
    """The offline ``tiny`` text model (random weights, a 4 s window), loaded once."""
    from .models import load

    return load("tiny")


@pytest.fixture(scope="session")
def musicgen_tiny_melody():
    """The offline ``tiny-melody`` model (random weights, a 4 s window), loaded once."""
    from .models import load

    return load("tiny-melody")
