"""The folder of a run: its lock, ``run.json``, the journal, the audio files and the manifest.

How a run stays consistent after an interrupt, a crash or ``kill -9``:

* each clip's file is written to a temporary name and moved into place;
* then one JSON line (its row, path, sha256, timings) is appended to
  ``DIR/journal.jsonl`` and flushed to disk. The journal is the record of
  what is done; a truncated last line (a kill mid-write) is ignored;
* ``manifest.parquet`` is rebuilt from the journal after every batch,
  atomically (temporary file, then rename);
* a rerun checks every journaled file against its sha256 and generates
  only the rows that are missing. A file that is not in the journal is
  the leftover of a killed run and is replaced.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import time

import numpy as np

from .._util.files import sha256_file, slug, write_atomic
from .table import PARAMS

JOURNAL = "journal.jsonl"
MANIFEST = "manifest.parquet"
CONFIG = "run.json"


class RunFolder:
    """The output folder of a run: lock, journal, audio files and manifest.

    Opening it checks the folder (as :meth:`Generation.save` does), takes the
    lock (or raises if a live run holds it), checks the settings against
    ``run.json``, removes a killed run's temporary files and reads the journal.
    Call :meth:`release` when done.

    Parameters
    ----------
    out : path
        The run folder (made if missing).
    config : dict
        The run's settings (``model``, ``precision``, ``random_weights``, ``fmt``).

    Examples
    --------
    >>> import tempfile
    >>> run = RunFolder(tempfile.mkdtemp(), dict(model="tiny", fmt="wav"))
    >>> run.done, (run.dir / "run.json").exists(), (run.dir / ".lock").exists()
    ({}, True, True)
    >>> run.release(); (run.dir / ".lock").exists()
    False
    """

    def __init__(self, out, config: dict):
        from ..generation import check_save

        # the same folder checks as Generation.save: a path, not a file, writable (made here)
        self.dir, _, _ = check_save(out, names={"directory": "out"})
        self.fmt = config["fmt"]
        (self.dir / "audio").mkdir(exist_ok=True)
        self.lock = self.dir / ".lock"
        self.journal = None
        self._take_lock()
        try:
            self._check_config(config)
            # a killed run's half-written files (clips, manifest, journal): we hold the lock,
            # so no live run is writing them
            for folder in (self.dir, self.dir / "audio"):
                for tmp in folder.glob(".*.tmp"):
                    tmp.unlink(missing_ok=True)
            self.done = self._read_journal()
        except BaseException:
            self.release()
            raise
        self.journal = open(self.dir / JOURNAL, "a", encoding="utf-8")  # noqa: SIM115

    def _take_lock(self):
        me = f"{socket.gethostname()} {os.getpid()}"
        for _ in range(2):
            try:
                fd = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                host, _, pid = self.lock.read_text().partition(" ")
                if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
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
        """Close the journal and remove the lock."""
        if getattr(self, "journal", None) is not None:
            self.journal.close()
            self.journal = None
        self.lock.unlink(missing_ok=True)

    def _check_config(self, config: dict):
        path = self.dir / CONFIG
        if not path.exists():
            write_atomic(path, json.dumps(config, indent=1), overwrite=True)
            return
        old = json.loads(path.read_text())
        diff = {
            k: (old.get(k), v)
            for k, v in config.items()
            if old.get(k) != v and "auto" not in (old.get(k), v)  # "auto" matches what it picked
        }
        if diff:
            raise ValueError(
                f"{str(self.dir)!r} holds a run with other settings "
                f"({', '.join(f'{k}: {a!r} there, {b!r} now' for k, (a, b) in diff.items())}); "
                "use another out= directory or the same settings"
            )

    def _read_journal(self) -> dict:
        """Journaled rows whose file is intact, by clip_id (a bad line or file is dropped)."""
        done: dict = {}
        path = self.dir / JOURNAL
        if not path.exists():
            return done
        lines = path.read_text(encoding="utf-8").split("\n")
        good = []
        for line in lines:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # empty, or cut short by a kill
            good.append(line)
            if "metrics" in rec:
                if rec["clip_id"] in done:
                    done[rec["clip_id"]].update(rec["metrics"])
                continue
            file = self.dir / rec["path"]
            if file.exists() and sha256_file(file) == rec["sha256"]:
                done[rec["clip_id"]] = rec
            else:
                done.pop(rec["clip_id"], None)
        if len(good) != sum(1 for line in lines if line.strip()):  # drop a truncated line for good
            write_atomic(path, "".join(line + "\n" for line in good), overwrite=True)
        return done

    def commit(self, spec: dict, result: dict, run_id: str) -> dict:
        """Write one clip's file (``result["data"]``), then journal it; return its record."""
        data = result.pop("data")
        name = f"{slug(spec['prompt'])[:32]}_seed{spec['seed']}_{spec['clip_id']}.{self.fmt}"
        # a file not in the journal is a killed run's leftover: replace it
        write_atomic(self.dir / "audio" / name, data, overwrite=True)
        rec = dict(spec, path=f"audio/{name}", sha256=hashlib.sha256(data).hexdigest(), **result)
        rec.update(run_id=run_id, finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        self._append(rec)
        self.done[spec["clip_id"]] = rec
        return rec

    def add_metrics(self, clip: str, values: dict):
        """Journal metric values of a done clip."""
        self._append(dict(clip_id=clip, metrics=values))
        self.done[clip].update(values)

    def _append(self, rec: dict):
        self.journal.write(json.dumps(rec, default=_json_default) + "\n")
        self.journal.flush()
        os.fsync(self.journal.fileno())

    def manifest(self, order: list[str]):
        """The manifest (rows of this grid first, in grid order), written atomically."""
        import pandas as pd

        rank = {c: i for i, c in enumerate(order)}
        recs = sorted(self.done.values(), key=lambda r: rank.get(r["clip_id"], len(rank)))
        df = pd.DataFrame(recs)
        if not len(df):
            df = pd.DataFrame(columns=["clip_id", "prompt", "seed", *PARAMS, "path", "sha256"])
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        write_atomic(self.dir / MANIFEST, buf.getvalue(), overwrite=True)
        return df


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"cannot store {type(v).__name__} in the journal")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
