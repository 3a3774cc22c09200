"""The run folder of :func:`~musicgen_nb.finetune.train`: claimed before anything is written.

Guarantee: training writes only into a folder that is new, empty, or marked as a
run folder of ours (a hidden ``.musicgen-nb-run`` file written when the folder is
claimed). A folder holding anything else (your own ``README.md``, ``history.csv``,
``adapter_config.json``, ...) is refused before training starts, naming the files,
and nothing in it is touched. Inside a folder of ours, only the files of the run
format are written (:mod:`musicgen_nb.checkpoints.adapter`), each atomically.

Examples
--------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "notes.txt").write_text("mine")
>>> check_out(d)
Traceback (most recent call last):
...
FileExistsError: out=... holds files that mg.finetune.train did not write (notes.txt); ...
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .._util.files import pid_alive, write_atomic
from ..checkpoints.adapter import CONFIG_FILE

#: The hidden file that marks a folder as a run folder of mg.finetune.train.
MARKER = ".musicgen-nb-run"
#: The hidden file a training run holds while it writes the folder ("host pid").
LOCK = ".musicgen-nb-run.lock"


def _ours_before_markers(out: Path, names: list[str]) -> bool:
    """A run folder written before the marker existed: our config and our files only."""
    from ..checkpoints.adapter import (
        CARD_FILE,
        CHECKPOINT,
        FULL_WEIGHTS,
        HISTORY_FILE,
        LORA_WEIGHTS,
    )

    known = {CONFIG_FILE, CARD_FILE, HISTORY_FILE, FULL_WEIGHTS, LORA_WEIGHTS, CHECKPOINT,
             "adapter_config.json"}  # fmt: skip
    if CONFIG_FILE not in names or not all(n in known or n.startswith(".") for n in names):
        return False
    try:
        cfg = json.loads((out / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and {"decoder_config", "data", "status"} <= set(cfg)


def check_out(out) -> Path | None:
    """``out`` as a Path (None stays None) if training may write there; else the error. Writes nothing.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> check_out(None) is None, check_out(pathlib.Path(tempfile.mkdtemp())).is_dir()
    (True, True)
    """
    if out is None:
        return None
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"out={str(out)!r} is a file; give a folder for the run")
    if not out.exists() or (out / MARKER).is_file():
        return out
    names = sorted(p.name for p in out.iterdir())
    if names and not _ours_before_markers(out, names):
        shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
        raise FileExistsError(
            f"out={str(out)!r} holds files that mg.finetune.train did not write ({shown}); "
            "nothing was changed. Give a new or empty folder for the run"
        )
    return out


def claim(out: Path | None, *, marked: bool = False) -> Path:
    """Make the run folder (a new temporary one for None) and mark it as ours.

    ``out`` is checked again (:func:`check_out`). ``marked`` says whether it held our
    marker when it was first checked (a run to resume); if not, the marker is written
    here only if no other run wrote it meanwhile: of two runs that claim one new
    folder, the second gets a FileExistsError and writes nothing.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = claim(pathlib.Path(tempfile.mkdtemp()) / "run")
    >>> (d / MARKER).is_file()
    True
    """
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="musicgen-finetune-"))
    check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    if not marked:
        try:
            write_atomic(out / MARKER, json.dumps(dict(written_by="musicgen_nb.finetune.train")))
        except FileExistsError:
            raise FileExistsError(
                f"out={str(out)!r} was taken by another training run meanwhile; give another folder"
            ) from None
    return out


@contextmanager
def run_lock(out: Path):
    """Hold ``out``'s :data:`LOCK` while training writes it; a second run there is refused.

    The lock of a process that is gone (killed) on this host is taken over.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with run_lock(d):
    ...     (d / LOCK).exists()
    True
    >>> (d / LOCK).exists()
    False
    """
    lock, me = out / LOCK, f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            break
        except FileExistsError:
            host, _, pid = lock.read_text(errors="replace").partition(" ")
            if host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid)):
                lock.unlink(missing_ok=True)  # its run was killed: take over
                continue
            raise RuntimeError(
                f"out={str(out)!r} is in use by another training run ({host} pid {pid}); wait "
                f"for it, or delete {str(lock)!r} if that run is gone"
            ) from None
    else:
        raise RuntimeError(f"could not lock out={str(out)!r}")
    with os.fdopen(fd, "w") as f:
        f.write(me)
    try:
        yield out
    finally:
        lock.unlink(missing_ok=True)


def read_config(out: Path) -> dict | None:
    """The ``training_config.json`` of a run folder, None if there is none; a damaged one is named.

    The reader is :func:`musicgen_nb.checkpoints.adapter.read_config`'s.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> read_config(pathlib.Path(tempfile.mkdtemp())) is None
    True
    """
    from ..checkpoints.adapter import read_config as read

    return read(out) if (out / CONFIG_FILE).exists() else None


def compare_runs(out: Path, old: dict, config: dict, keys: tuple, *, started: bool) -> None:
    """Refuse ``out`` when its run differs from ``config`` in one of ``keys``.

    A run that never saved a checkpoint (``started=False``) is not a run to resume:
    its config is replaced, so a failed start never locks out a corrected call. A
    run that diverged may resume from its last good checkpoint with another ``lr``.

    Examples
    --------
    >>> import pathlib
    >>> compare_runs(pathlib.Path("run"), dict(lr=1.0), dict(lr=2.0), ("lr",), started=True)
    Traceback (most recent call last):
    ...
    ValueError: out='run' holds a different run (it differs in lr); give a new folder, or delete this one to start over
    """
    if not started:
        return
    loose = ("lr",) if old.get("status") == "diverged" else ()
    differ = [k for k in keys if k not in loose and old.get(k) != config.get(k)]
    if differ:
        raise ValueError(
            f"out={str(out)!r} holds a different run (it differs in {', '.join(differ)}); "
            "give a new folder, or delete this one to start over"
        )


def check_run(out: Path | None, config: dict, keys: tuple) -> dict | None:
    """The config of the run in ``out`` (None: no run there); a different run is refused.

    A run with a checkpoint, or one that finished or diverged, is a run: another run
    (one that differs in ``keys``) may not replace it. One that never saved a
    checkpoint is replaced.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> check_run(pathlib.Path(tempfile.mkdtemp()), dict(lr=1.0), ("lr",)) is None
    True
    """
    old = read_config(out) if out is not None and out.exists() else None
    if old is not None:
        started = has_checkpoint(out) or old.get("status") != "training"
        compare_runs(out, old, config, keys, started=started)
    return old


def open_run(out: Path | None, config: dict, keys: tuple, *, marked: bool) -> Path:
    """The run folder, claimed (``out`` was checked by :func:`check_out`); another run is refused.

    ``marked``: ``out`` held our marker when it was checked (see :func:`claim`). A
    finished run with nothing more to train is returned as it is.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = open_run(pathlib.Path(tempfile.mkdtemp()) / "run", dict(steps=2), (), marked=False)
    >>> sorted(p.name for p in d.iterdir())
    ['.musicgen-nb-run', 'training_config.json']
    """
    old = check_run(out, config, keys)
    if old is not None:
        if old.get("status") == "done" and (old.get("steps_done") or 0) >= config["steps"]:
            return out  # finished, nothing more to train: the folder stays loadable as it is
    out = claim(out, marked=marked)
    write_config(out, config | dict(status="training"))
    return out


def write_config(out: Path, config: dict) -> None:
    """Write ``training_config.json`` atomically (the folder is ours: see :func:`claim`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> write_config(d, dict(status="training")); json.loads((d / CONFIG_FILE).read_text())["status"]
    'training'
    """
    write_atomic(out / CONFIG_FILE, json.dumps(config, indent=1), overwrite=True)


def has_checkpoint(out: Path) -> bool:
    """True when ``out`` holds a resumable checkpoint (also one caught between two renames).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> has_checkpoint(pathlib.Path(tempfile.mkdtemp()))
    False
    """
    from ..checkpoints.adapter import CHECKPOINT

    return (out / CHECKPOINT).is_dir() or (out / f".{CHECKPOINT}.old").is_dir()


def mark_diverged(ft, why: str, at: int) -> FloatingPointError:
    """Mark ``ft``'s run folder diverged (its last good checkpoint stays); return the error to raise.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from types import SimpleNamespace
    >>> ft = SimpleNamespace(out=pathlib.Path(tempfile.mkdtemp()), config=dict(lr=0.1), history=[])
    >>> str(mark_diverged(ft, "the loss is nan", 1))[:45]
    'training diverged at step 1: the loss is nan.'
    """
    from ..checkpoints.adapter import CHECKPOINT
    from .result import write_history

    state = ft.out / CHECKPOINT / "state.json"
    good, none = None, "no checkpoint was good enough to keep"
    try:
        good = int(json.loads(state.read_text())["step"]) if state.exists() else None
    except (OSError, ValueError, KeyError, TypeError) as err:
        none = f"the checkpoint's {state} is damaged ({type(err).__name__}), delete it"
    write_config(ft.out, ft.config | dict(status="diverged", diverged_at=at, last_good=good))
    write_history(ft.out, ft.history)
    kept = (f"the last good checkpoint (step {good}) is kept in {ft.out / CHECKPOINT}"
            if good is not None else none)  # fmt: skip
    return FloatingPointError(
        f"training diverged at step {at}: {why}. Nothing was saved as an adapter: {kept}, and "
        f"{ft.out} is marked diverged (mg.load refuses it). Lower lr (now {ft.config['lr']:g}) "
        "and call train() again with the same out= to resume from that checkpoint, or start "
        "over in a new folder"
    )
