"""The folder of a run: its lock, ``run.json``, the journal, the audio files and the manifest.

How a run stays consistent after an interrupt, a crash or ``kill -9``:

* each clip's file is written to a temporary name and moved into place;
* then one JSON line (its row, path, sha256, timings) is appended to
  ``DIR/journal.jsonl`` and flushed to disk. The journal is the record of
  what is done; a last line cut short (a kill mid-write) is dropped, and
  any other bad line is an error naming the file and the line;
* a journaled path must be a file of ``DIR/audio`` (no ``..``, no absolute
  path, no symlink), and ``audio/``, ``journal.jsonl`` and ``run.json`` must not
  be symlinks: the run never reads, writes or deletes outside its folder;
* ``manifest.csv`` (and ``manifest.parquet`` when pyarrow is installed) is
  rebuilt from the journal after every batch, atomically (temporary file,
  then rename);
* a rerun checks every journaled file against its sha256 and generates
  only the rows that are missing. A file that is not in the journal is
  the leftover of a killed run and is replaced.
* ``run.json`` is written with the first clip, so a start that fails
  (a bad model name, a checkpoint that is not cached) locks nothing in.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import time
from pathlib import PurePosixPath

import numpy as np

from .._util.files import pid_alive, sha256_file, slug, write_atomic
from .batch import COLUMNS
from .table import PARAMS

JOURNAL = "journal.jsonl"
MANIFEST = "manifest.parquet"
MANIFEST_CSV = "manifest.csv"
CONFIG = "run.json"
#: Every column of a manifest before the metrics (and the ``version_*`` columns).
MANIFEST_COLUMNS = ("clip_id", "prompt", "seed", *PARAMS, "path", "sha256", *COLUMNS, "run_id",
                    "finished_at")  # fmt: skip
#: The files of a run folder that must be its own (not symlinks to elsewhere).
OWN = ("audio", JOURNAL, CONFIG)


class RunFolder:
    """The output folder of a run: lock, journal, audio files and manifest.

    Opening it checks the folder (as :meth:`Generation.save` does), takes the
    lock (or raises if a live run holds it), checks the settings against
    ``run.json``, removes a killed run's temporary files and reads the journal.
    ``run.json`` itself is written with the first clip. Call :meth:`release` when done.

    Parameters
    ----------
    out : path
        The run folder (made if missing).
    config : dict
        The run's settings (``model``, ``precision``, ``random_weights``, ``fmt``,
        ``standin``, ``adapter``).

    Examples
    --------
    >>> import tempfile
    >>> run = RunFolder(tempfile.mkdtemp(), dict(model="tiny", fmt="wav"))
    >>> run.done, (run.dir / "run.json").exists(), (run.dir / ".lock").exists()
    ({}, False, True)
    >>> run.release(); (run.dir / ".lock").exists()
    False
    """

    def __init__(self, out, config: dict):
        from ..generation import check_save

        # the same folder checks as Generation.save: a path, not a file, writable (made here)
        self.dir, _, _ = check_save(out, names={"directory": "out"})
        _check_own(self.dir)
        self.fmt = config["fmt"]
        self.config = dict(config)
        (self.dir / "audio").mkdir(exist_ok=True)
        self.lock = self.dir / ".lock"
        self.journal = None
        self._take_lock()
        try:
            self._written = self._check_config(config)
            # a killed run's half-written files (clips, manifest, journal): we hold the lock,
            # so no live run is writing them
            for folder in (self.dir, self.dir / "audio"):
                for tmp in folder.glob(".*.tmp"):
                    tmp.unlink(missing_ok=True)
            self.done = self._read_journal()
        except BaseException:
            self.release()
            raise

    def _take_lock(self):
        me = f"{socket.gethostname()} {os.getpid()}"
        for _ in range(2):
            try:
                fd = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                host, _, pid = self.lock.read_text(errors="replace").partition(" ")
                if host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid)):
                    self.lock.unlink(missing_ok=True)  # its run was killed: take over
                    continue
                raise RuntimeError(
                    f"{str(self.dir)!r} is in use by another run ({host} pid {pid}); wait for it, "
                    f"or delete {str(self.lock)!r} if that run is gone"
                ) from None
            with os.fdopen(fd, "w") as f:
                f.write(me)
            return
        raise RuntimeError(f"could not lock {str(self.dir)!r}")

    def release(self):
        """Close the journal and remove the lock.

        Examples
        --------
        >>> import tempfile
        >>> run = RunFolder(tempfile.mkdtemp(), dict(model="tiny", fmt="wav"))
        >>> run.release(); (run.dir / ".lock").exists(), run.journal
        (False, None)
        """
        if getattr(self, "journal", None) is not None:
            self.journal.close()
            self.journal = None
        self.lock.unlink(missing_ok=True)

    def _check_config(self, config: dict) -> bool:
        """Compare with ``run.json`` (if any); return whether it is written."""
        path = self.dir / CONFIG
        if not path.exists():
            return False
        old = read_config(path)
        diff = {
            k: (old.get(k), v)
            for k, v in config.items()
            if old.get(k) != v and not (k == "precision" and "auto" in (old.get(k), v))
        }
        if diff:
            raise ValueError(
                f"{str(self.dir)!r} holds a run with other settings "
                f"({', '.join(f'{k}: {a!r} there, {b!r} now' for k, (a, b) in diff.items())}); "
                "one folder never mixes runs: use another out= directory or the same settings"
            )
        return True

    def _read_journal(self) -> dict:
        """Journaled rows whose file is intact, by clip_id.

        A line cut short by a kill (the last one, with no newline) is dropped; any
        other bad line raises, naming the file and the line.
        """
        done: dict = {}
        path = self.dir / JOURNAL
        if not path.exists():
            return done
        *lines, tail = path.read_bytes().split(b"\n")
        recs = [(i, self._parse(line, i)) for i, line in enumerate(lines, 1) if line.strip()]
        if tail.strip():  # no newline after it: a write cut short by a kill
            try:
                recs.append((len(lines) + 1, self._parse(tail, len(lines) + 1)))
            except ValueError:
                pass
            keep = "".join(json.dumps(r, default=_json_default) + "\n" for _, r in recs)
            write_atomic(path, keep, overwrite=True)  # drop the cut line for good
        for _, rec in recs:
            if "metrics" in rec:
                if rec["clip_id"] in done:
                    done[rec["clip_id"]].update(rec["metrics"])
                continue
            file = self.dir / rec["path"]
            if file.is_file() and sha256_file(file) == rec["sha256"]:
                done[rec["clip_id"]] = rec
            else:
                done.pop(rec["clip_id"], None)
        return done

    def _parse(self, line: bytes, i: int) -> dict:
        """One journal record, checked; a bad one raises naming the file and the line."""
        where = f"{self.dir / JOURNAL}:{i}"
        try:
            rec = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(
                f"{where}: not a JSON record ({type(exc).__name__}: {exc}); the journal is "
                "damaged: fix or delete that line (its clip is then generated again)"
            ) from None
        if not isinstance(rec, dict) or not isinstance(rec.get("clip_id"), str):
            raise ValueError(f"{where}: a journal record must be an object with a clip_id")
        if "metrics" in rec:
            if not isinstance(rec["metrics"], dict):
                raise ValueError(
                    f"{where}: 'metrics' must be an object, got {rec['metrics']!r:.80}"
                )
            return rec
        lacking = [k for k in ("path", "sha256", "prompt", "seed") if k not in rec]
        if lacking:
            raise ValueError(f"{where}: the record lacks {lacking}; fix or delete that line")
        self._inside(rec["path"], where)
        return rec

    def _inside(self, path, where: str) -> None:
        """Refuse a journaled path that is not a plain file name in ``audio/``."""
        p = PurePosixPath(path) if isinstance(path, str) else None
        ok = (
            p is not None and not p.is_absolute() and len(p.parts) == 2 and p.parts[0] == "audio"
            and p.name not in ("", ".", "..") and "\\" not in path
            and not (self.dir / "audio" / p.name).is_symlink()
        )  # fmt: skip
        if not ok:
            raise ValueError(
                f"{where}: path {path!r} points outside the run folder's audio/ (or through a "
                "symlink); a run reads only its own files: delete that line or use another out="
            )

    def commit(self, spec: dict, result: dict, run_id: str) -> dict:
        """Write one clip's file (``result["data"]``), then journal it; return its record.

        Examples
        --------
        >>> import tempfile, musicgen_nb as mg
        >>> row = mg.grid(["jazz"], seed=[1], duration=0.5).to_dict("records")[0]
        >>> run = RunFolder(tempfile.mkdtemp(), dict(model="tiny", fmt="wav"))
        >>> res = dict(clip_id=row["clip_id"], data=b"RIFF", duration_s=0.5, sample_rate=32000)
        >>> rec = run.commit(row, res, "run1")
        >>> rec["path"].startswith("audio/jazz_seed1_"), (run.dir / "run.json").exists()
        (True, True)
        >>> run.release()
        """
        self._check_clip(spec, result)
        if not self._written:
            write_atomic(self.dir / CONFIG, json.dumps(self.config, indent=1), overwrite=True)
            self._written = True
        data = result.pop("data")
        name = f"{slug(spec['prompt'])[:32]}_seed{spec['seed']}_{spec['clip_id']}.{self.fmt}"
        # a file not in the journal is a killed run's leftover: replace it
        write_atomic(self.dir / "audio" / name, data, overwrite=True)
        rec = dict(spec, path=f"audio/{name}", sha256=hashlib.sha256(data).hexdigest(), **result)
        rec.update(run_id=run_id, finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        self._append(rec)
        self.done[spec["clip_id"]] = rec
        return rec

    def _check_clip(self, spec: dict, result: dict) -> None:
        """Never journal a short clip, nor one of another precision, adapter or stand-in.

        The clip is compared with the folder's settings (``run.json``, which every
        clip of the folder matched): ``"auto"`` precision is not compared.
        """
        want = round(spec["duration"] * result["sample_rate"])
        if round(result["duration_s"] * result["sample_rate"]) < want:
            raise RuntimeError(
                f"clip {spec['clip_id']} ({spec['prompt']!r}, seed {spec['seed']}) is "
                f"{result['duration_s']:.3f} s of {spec['duration']} s (interrupted): not saved"
            )
        have = self.config
        diff = [k for k in ("standin", "adapter", "precision") if k in have and k in result
                and have[k] != result[k] and not (k == "precision" and have[k] == "auto")]  # fmt: skip
        if diff:
            raise ValueError(
                f"{str(self.dir)!r} holds clips made with "
                f"{', '.join(f'{k}={have[k]!r}' for k in diff)}, and this one has "
                f"{', '.join(f'{k}={result[k]!r}' for k in diff)}; one folder never mixes "
                "them: use another out= directory"
            )

    def add_metrics(self, clip: str, values: dict):
        """Journal metric values of a done clip.

        Examples
        --------
        >>> import tempfile, musicgen_nb as mg
        >>> row = mg.grid(["jazz"], seed=[1], duration=0.5).to_dict("records")[0]
        >>> run = RunFolder(tempfile.mkdtemp(), dict(model="tiny", fmt="wav"))
        >>> _ = run.commit(row, dict(clip_id=row["clip_id"], data=b"RIFF", duration_s=0.5,
        ...                          sample_rate=32000), "run1")
        >>> run.add_metrics(row["clip_id"], {"loudness": -20.0})
        >>> run.done[row["clip_id"]]["loudness"]
        -20.0
        >>> run.release()
        """
        self._append(dict(clip_id=clip, metrics=values))
        self.done[clip].update(values)

    def _append(self, rec: dict):
        if self.journal is None:  # opened with the first record: a failed start leaves none
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(self.dir / JOURNAL, flags, 0o666)  # never through a symlink
            self.journal = os.fdopen(fd, "a", encoding="utf-8")
        self.journal.write(json.dumps(rec, default=_json_default) + "\n")
        self.journal.flush()
        os.fsync(self.journal.fileno())

    def manifest(self, order: list[str]):
        """The manifest of this grid's rows, in grid order, written atomically.

        ``manifest.csv`` always; ``manifest.parquet`` too when pyarrow is installed
        (else a stale one is removed: it is rebuilt from the journal next time).

        Examples
        --------
        >>> import tempfile
        >>> run = RunFolder(tempfile.mkdtemp(), dict(model="tiny", fmt="wav"))
        >>> m = run.manifest([])
        >>> len(m), (run.dir / "manifest.csv").exists(), "standin" in m.columns
        (0, True, True)
        >>> run.release()
        """
        import pandas as pd

        rank = {c: i for i, c in enumerate(order)}
        recs = sorted((r for r in self.done.values() if r["clip_id"] in rank),
                      key=lambda r: rank[r["clip_id"]])  # fmt: skip
        df = pd.DataFrame(recs)
        if not len(df):
            df = pd.DataFrame(columns=list(MANIFEST_COLUMNS))
        write_atomic(self.dir / MANIFEST_CSV, df.to_csv(index=False), overwrite=True)
        try:
            import pyarrow  # noqa: F401  (optional: the [scale] extra)
        except ImportError:
            (self.dir / MANIFEST).unlink(missing_ok=True)
            return df
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        write_atomic(self.dir / MANIFEST, buf.getvalue(), overwrite=True)
        return df


def read_config(path) -> dict:
    """The settings in a run's ``run.json``; a damaged file raises naming it (and the line).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "run.json"
    >>> _ = p.write_text('{"model": "tiny"}')
    >>> read_config(p)
    {'model': 'tiny'}
    >>> _ = p.write_text('{"model": ')
    >>> read_config(p)
    Traceback (most recent call last):
    ...
    ValueError: .../run.json:1: damaged (...); delete it to start the run again
    """
    try:
        old = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path}: damaged (not UTF-8: {exc}); delete it to start the run again"
        ) from None
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path}:{exc.lineno}: damaged ({exc.msg}); delete it to start the run again"
        ) from None
    if not isinstance(old, dict):
        raise ValueError(f"{path}: damaged (not a JSON object); delete it to start the run again")
    return old


def _check_own(folder) -> None:
    """Refuse a run folder whose ``audio/``, journal or ``run.json`` is a symlink (or leads out)."""
    for name in OWN:
        p = folder / name
        if p.is_symlink() or (p.exists() and p.resolve().parent != folder.resolve()):
            raise ValueError(
                f"{str(p)!r} is a symlink (or leads outside {str(folder)!r}); a run reads and "
                f"writes only its own folder: remove the link or use another out= directory"
            )


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"cannot store {type(v).__name__} in the journal")
