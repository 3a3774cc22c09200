"""Grids of generations: a table of clips, run resumably on this machine or on Ray.

:func:`grid` builds the table (one row per clip). :func:`run_grid` generates
every row, writes one audio file per row and ``DIR/manifest.parquet``, and
picks up where it stopped when it is run again.

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

A clip is identified by a hash of its prompt, seed and parameters
(``clip_id``), so the same row always gets the same file, whatever the
batch it ran in. Per-item seeds make each clip independent of its batch-mates.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
import os
import socket
import time
import uuid

import numpy as np

#: Generation parameters a grid may vary, with the defaults of ``generate``.
PARAMS = dict(
    guidance_scale=3.0, temperature=1.0, top_k=250, top_p=0.0, do_sample=True, duration=8.0,
    negative_prompt=None, cfg_coef_beta=None, extend_stride=None,
)  # fmt: skip
_INT = ("seed", "top_k")
_FLOAT = ("guidance_scale", "temperature", "top_p", "duration", "cfg_coef_beta", "extend_stride")
BACKENDS = ("local", "ray")
JOURNAL = "journal.jsonl"
MANIFEST = "manifest.parquet"


# --------------------------------------------------------------------------- grid
def grid(prompts=None, *, seed=0, rows=None, **params):
    """A table of clips to generate: the full product of the values, or the rows given.

    Parameters
    ----------
    prompts : str, None or list of (str or None)
        Text prompts (None is unconditional).
    seed : int or list of int
        Seeds; every prompt is generated with every seed.
    rows : list of dict or pandas.DataFrame, optional
        Explicit rows instead of a product: each has ``prompt`` and ``seed`` and
        any of the parameters below. Do not combine with the other arguments.
    **params
        Lists (or single values) of any of ``guidance_scale``, ``temperature``,
        ``top_k``, ``top_p``, ``do_sample``, ``duration``, ``negative_prompt``,
        ``cfg_coef_beta``, ``extend_stride``. Missing ones take ``generate``'s
        defaults (:data:`PARAMS`), so every row is complete.

    Returns
    -------
    pandas.DataFrame
        One row per clip: ``clip_id`` (a hash of the row), ``prompt``, ``seed``
        and every parameter.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> g = mg.grid(["jazz", "rock"], seed=[1, 2], guidance_scale=[1.0, 3.0], duration=1.0)
    >>> len(g), list(g.columns[:4])
    (8, ['clip_id', 'prompt', 'seed', 'guidance_scale'])
    """
    import pandas as pd

    if rows is not None:
        if prompts is not None or params or seed != 0:
            raise ValueError(
                "rows= lists complete rows; do not combine it with prompts, seed or parameters"
            )
        specs = _specs(rows)
    else:
        if prompts is None or isinstance(prompts, str):
            prompts = [prompts]
        axes = {"prompt": _values("prompts", prompts), "seed": _values("seed", seed)}
        for key, value in params.items():
            if key not in PARAMS:
                raise ValueError(f"unknown grid parameter {key!r}; allowed: {', '.join(PARAMS)}")
            axes[key] = _values(key, value)
        specs = _unique(
            [
                _canon(dict(zip(axes, combo, strict=True)), where="grid")
                for combo in itertools.product(*axes.values())
            ]
        )
    df = pd.DataFrame(specs, columns=["clip_id", "prompt", "seed", *PARAMS])
    for col in ("prompt", "negative_prompt"):  # keep None (unconditional), not NaN
        df[col] = pd.Series([s[col] for s in specs], dtype=object)
    return df


def _specs(rows) -> list[dict]:
    """Complete, checked rows (dicts) from a list of dicts or a DataFrame."""
    import pandas as pd

    if isinstance(rows, pd.DataFrame):
        rows = rows.to_dict("records")
    if not isinstance(rows, (list, tuple)) or not all(isinstance(r, dict) for r in rows):
        raise TypeError(f"rows must be a list of dicts or a DataFrame, got {type(rows).__name__}")
    return _unique([_canon(r, where=f"rows[{i}]") for i, r in enumerate(rows)])


def _unique(specs: list[dict]) -> list[dict]:
    if not specs:
        raise ValueError("the grid is empty: give at least one row")
    seen = {}
    for i, spec in enumerate(specs):
        if spec["clip_id"] in seen:
            raise ValueError(
                f"rows {seen[spec['clip_id']]} and {i} are the same clip (prompt, seed and parameters): "
                f"{ {k: v for k, v in spec.items() if k != 'clip_id'} }"
            )
        seen[spec["clip_id"]] = i
    return specs


def _values(name, value) -> list:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise ValueError(f"{name} must list at least one value")
    return values


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _canon(row: dict, *, where: str) -> dict:
    """A complete, type-normalised row with its ``clip_id``; bad values raise here, not hours later."""
    from types import SimpleNamespace

    from .generation import validate

    allowed = ("clip_id", "prompt", "seed", *PARAMS)
    unknown = [k for k in row if k not in allowed]
    if unknown:
        raise ValueError(f"{where}: unknown column(s) {unknown}; allowed: {', '.join(allowed)}")
    if "seed" not in row or _missing(row["seed"]):
        raise ValueError(f"{where}: every row needs a seed (an int >= 0), got {row.get('seed')!r}")
    spec = {"prompt": None if _missing(row.get("prompt")) else row.get("prompt")}
    if spec["prompt"] is not None and not isinstance(spec["prompt"], str):
        raise TypeError(f"{where}: prompt must be a string or None, got {spec['prompt']!r}")
    for key, default in [("seed", None), *PARAMS.items()]:
        value = row.get(key, default)
        value = None if _missing(value) else value
        if isinstance(value, np.generic):
            value = value.item()
        if value is not None and key in _INT and isinstance(value, float) and value.is_integer():
            value = int(value)
        if (
            value is not None
            and key in _FLOAT
            and isinstance(value, int)
            and not isinstance(value, bool)
        ):
            value = float(value)
        spec[key] = value
    if not isinstance(spec["seed"], int) or isinstance(spec["seed"], bool) or spec["seed"] < 0:
        raise ValueError(f"{where}: seed must be an int >= 0, got {spec['seed']!r}")
    if spec["negative_prompt"] is not None and not isinstance(spec["negative_prompt"], str):
        raise TypeError(
            f"{where}: negative_prompt must be a string or None, got {spec['negative_prompt']!r}"
        )
    model = SimpleNamespace(is_melody=True, name="grid", max_duration=math.inf, frame_rate=50)
    try:  # the same checks as generate; model-specific ones wait for the model
        validate(model, seed=spec["seed"], **{k: spec[k] for k in PARAMS if k != "negative_prompt"})
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{where}: {exc}") from None
    spec["clip_id"] = clip_id(spec)
    if row.get("clip_id") not in (None, spec["clip_id"]) and not _missing(row.get("clip_id")):
        raise ValueError(
            f"{where}: clip_id {row['clip_id']!r} does not match the row ({spec['clip_id']})"
        )
    return spec


def clip_id(spec: dict) -> str:
    """A stable hash (16 hex digits) of a row's prompt, seed and parameters."""
    keys = ("prompt", "seed", *PARAMS)
    text = json.dumps({k: spec.get(k) for k in keys}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _batches(specs: list[dict], batch_size: int) -> list[list[dict]]:
    """Rows that can share a ``generate`` call (same parameters), in chunks of ``batch_size``."""
    groups: dict = {}
    for spec in specs:
        groups.setdefault(tuple(spec[k] for k in PARAMS), []).append(spec)
    out = []
    for rows in groups.values():
        out += [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    return out


# --------------------------------------------------------------------------- the work of one batch
def generate_batch(s, specs: list[dict], fmt: str = "wav") -> list[dict]:
    """Generate one batch of rows with session ``s``; return one result per row.

    Each result holds the encoded audio file (``data``, bytes) and what the
    manifest records. Both backends call this. Melody checkpoints attend to the
    padded text prefix, so their rows are sub-batched by prompt length (in
    tokens) to keep every clip independent of its batch-mates.
    """
    from .generation import versions

    groups = [specs]
    if s.is_melody:
        tok = s.processor.tokenizer
        by_len: dict = {}
        for spec in specs:
            by_len.setdefault(len(tok(spec["prompt"] or "").input_ids), []).append(spec)
        groups = list(by_len.values())
    host = f"{socket.gethostname()}:{os.getpid()}"
    vers = {f"version_{k}": v for k, v in versions().items()}
    out = []
    for rows in groups:
        params = {k: rows[0][k] for k in PARAMS}
        t0 = time.perf_counter()
        g = s.generate(
            [r["prompt"] for r in rows], seed=[r["seed"] for r in rows], progress=False, **params
        )
        wall = time.perf_counter() - t0
        for i, spec in enumerate(rows):
            out.append(
                dict(
                    clip_id=spec["clip_id"], data=encode_audio(g.audio[i], g.sample_rate, fmt),
                    codes_sha256=hashlib.sha256(np.ascontiguousarray(g.codes[i]).tobytes()).hexdigest(),
                    duration_s=g.audio.shape[-1] / g.sample_rate, sample_rate=g.sample_rate,
                    batch_size=len(rows), seconds=wall / len(rows),
                    text_encode_s=g.timings["text_encode_s"], decode_loop_s=g.timings["decode_loop_s"],
                    codec_decode_s=g.timings["codec_decode_s"], steps_per_s=g.timings["steps_per_s"],
                    worker=host, device=s.device.type, **vers,
                )
            )  # fmt: skip
    return out


def encode_audio(wav: np.ndarray, sr: int, fmt: str) -> bytes:
    """``[C, N]`` float audio as the bytes of a 16-bit file, as :func:`musicgen_nb.audio.write` stores it."""
    import soundfile as sf

    from .audio import FORMATS

    buf = io.BytesIO()
    sf_format, subtype = FORMATS[fmt]
    sf.write(buf, np.clip(wav, -1.0, 1.0).T, sr, format=sf_format, subtype=subtype)
    return buf.getvalue()


# --------------------------------------------------------------------------- the run directory
class _Run:
    """The output directory of a run: lock, journal, audio files and manifest."""

    def __init__(self, out, config: dict):
        from .generation import check_save

        # the same folder checks as Generation.save: a path, not a file, writable (made here)
        self.dir, _, _ = check_save(out, names={"directory": "out"})
        self.fmt = config["fmt"]
        (self.dir / "audio").mkdir(exist_ok=True)
        self.lock = self.dir / ".lock"
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
        if getattr(self, "journal", None) is not None:
            self.journal.close()
            self.journal = None
        self.lock.unlink(missing_ok=True)

    def _check_config(self, config: dict):
        path = self.dir / "run.json"
        if path.exists():
            old = json.loads(path.read_text())
            diff = {
                k: (old.get(k), v)
                for k, v in config.items()
                if old.get(k) != v
                and "auto" not in (old.get(k), v)  # "auto" matches what it picked
            }
            if diff:
                raise ValueError(
                    f"{str(self.dir)!r} holds a run with other settings "
                    f"({', '.join(f'{k}: {a!r} there, {b!r} now' for k, (a, b) in diff.items())}); "
                    "use another out= directory or the same settings"
                )
            return
        tmp = path.with_name(f".run.json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(config, indent=1))
        os.replace(tmp, path)

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
            if file.exists() and _sha256(file.read_bytes()) == rec["sha256"]:
                done[rec["clip_id"]] = rec
            else:
                done.pop(rec["clip_id"], None)
        if len(good) != sum(1 for line in lines if line.strip()):  # drop a truncated line for good
            tmp = path.with_name(f".{JOURNAL}.{os.getpid()}.tmp")
            tmp.write_text("".join(line + "\n" for line in good), encoding="utf-8")
            os.replace(tmp, path)
        return done

    def commit(self, spec: dict, result: dict, run_id: str) -> dict:
        """Write one clip's file, then journal it."""
        data = result.pop("data")
        name = f"{_slug(spec['prompt'])}_seed{spec['seed']}_{spec['clip_id']}.{self.fmt}"
        path = self.dir / "audio" / name
        tmp = path.with_name(f".{name}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # a file not in the journal is a killed run's leftover: replace it
        rec = dict(spec, path=f"audio/{name}", sha256=_sha256(data), **result)
        rec.update(run_id=run_id, finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        self._append(rec)
        self.done[spec["clip_id"]] = rec
        return rec

    def add_metrics(self, clip: str, values: dict):
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
        tmp = self.dir / f".{MANIFEST}.{os.getpid()}.tmp"
        df.to_parquet(tmp, index=False)
        os.replace(tmp, self.dir / MANIFEST)
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


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _slug(text) -> str:
    from .generation import _slug as slug

    return slug(text)[:32]


# --------------------------------------------------------------------------- run_grid
def run_grid(
    grid, *, model, out, backend="local", batch_size=8, precision="auto", device="auto",
    random_weights=False, fmt="wav", metrics=None, progress=True, address=None, workers=None,
):  # fmt: skip
    """Generate every row of a grid; write one audio file per row and ``out/manifest.parquet``.

    Parameters
    ----------
    grid : pandas.DataFrame or list of dict
        From :func:`grid` (or rows :func:`grid` accepts).
    model : str or MusicGen
        A name for :func:`musicgen_nb.load` (``"small"``, ``"tiny"``, a hub id or a
        directory). The local backend also takes a loaded session.
    out : path
        The run directory. Run again with the same ``out`` to finish an
        interrupted run: only the missing rows are generated.
    backend : {"local", "ray"}
        ``"local"`` runs in this process. ``"ray"`` runs one model per Ray actor
        (``num_gpus=1`` each when the cluster has GPUs, else CPU actors); see
        :mod:`musicgen_nb.grids_ray`.
    batch_size : int
        Rows with the same parameters share a ``generate`` call, up to this many.
    precision, device, random_weights
        Passed to :func:`musicgen_nb.load`.
    fmt : {"wav", "flac"}
    metrics : list, optional
        Per-clip metric columns to fill (see :func:`musicgen_nb.metrics.row_metrics`):
        ``"clap_score"``, ``"loudness"`` or callables ``f(audio, sr, prompt) -> float``.
    progress : bool
        One progress bar over clips.
    address : str, optional
        Ray only: the cluster to join (``"auto"``, ``"ray://host:10001"``...). None
        starts a local Ray (or uses the one already started in this process).
    workers : int, optional
        Ray only: number of actors (default: one per GPU, else one per CPU).

    Returns
    -------
    pandas.DataFrame
        The manifest: the row's parameters, ``path`` (relative to ``out``),
        ``sha256`` of the file, ``codes_sha256``, ``duration_s``, timings, the worker,
        ``run_id`` of the run that made it, library versions and metric columns.

    Examples
    --------
    >>> import musicgen_nb as mg, tempfile
    >>> g = mg.grid(["jazz", "rock"], seed=[1, 2], duration=0.5)
    >>> m = mg.run_grid(g, model="tiny", out=tempfile.mkdtemp(), progress=False)
    >>> len(m), m["sha256"].str.len().unique().tolist()
    (4, [64])
    """
    import pandas as pd

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    from .audio import FORMATS

    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {tuple(FORMATS)}, got {fmt!r}")
    for name, value in (("address", address), ("workers", workers)):
        if value is not None and backend != "ray":
            raise ValueError(f"{name}= is for backend='ray', got backend={backend!r}")
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise ValueError(f"workers must be None or an int >= 1, got {workers!r}")
    from .metrics import row_metrics

    metric_fns = row_metrics(metrics)
    try:
        import pyarrow  # noqa: F401  (pandas writes manifest.parquet with it)
    except ImportError:
        raise ImportError(
            "run_grid writes manifest.parquet with pyarrow: pip install 'musicgen-nb[scale]' (or pyarrow)"
        ) from None
    if isinstance(grid, pd.DataFrame):
        rows = grid.to_dict("records")
    elif isinstance(grid, (list, tuple)):
        rows = list(grid)
    else:
        raise TypeError(
            f"grid must be a DataFrame from mg.grid(...) or a list of rows, got {type(grid).__name__}"
        )
    specs = _specs(rows)
    session = None
    if isinstance(model, str):
        name = model
    elif hasattr(model, "generate") and hasattr(model, "name"):
        if backend == "ray":
            raise TypeError(
                "backend='ray' loads the model in each actor: pass model= as a name, not a session"
            )
        session, name = model, model.name
    else:
        raise TypeError(
            f"model must be a checkpoint name or a MusicGen session, got {type(model).__name__}"
        )
    config = dict(model=name, precision=precision, random_weights=random_weights, fmt=fmt)
    if session is not None:
        config["precision"] = session.precision
    run = _Run(out, config)
    run_id = uuid.uuid4().hex[:12]
    order = [s["clip_id"] for s in specs]
    by_id = {s["clip_id"]: s for s in specs}
    try:
        todo = [s for s in specs if s["clip_id"] not in run.done]
        bar = _bar(len(specs), len(specs) - len(todo), progress)
        try:
            batches = _batches(todo, batch_size)

            def commit(results):
                for res in results:
                    run.commit(by_id[res["clip_id"]], res, run_id)
                run.manifest(order)
                if bar is not None:
                    bar.update(len(results))

            if batches and backend == "local":
                if session is None:
                    from .models import load

                    session = load(
                        name, device=device, precision=precision, random_weights=random_weights
                    )
                for batch in batches:
                    commit(generate_batch(session, batch, fmt))
            elif batches:
                from .grids_ray import run_batches

                load_kwargs = dict(
                    device=device, precision=precision, random_weights=random_weights
                )
                run_batches(batches, model=name, load_kwargs=load_kwargs, fmt=fmt,
                            address=address, workers=workers, on_result=commit)  # fmt: skip
        finally:
            if bar is not None:
                bar.close()
        _fill_metrics(run, order, metric_fns)
        return run.manifest(order)
    finally:
        run.release()


def _bar(total: int, done: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc="grid", unit="clip")


def _fill_metrics(run: _Run, order: list[str], fns: dict):
    """Compute each metric for the rows of this grid that lack it (read back from the files)."""
    from . import audio as audio_io

    for clip in order:
        rec = run.done[clip]
        missing = {n: f for n, f in fns.items() if n not in rec or _missing(rec[n])}
        if not missing:
            continue
        wav, sr = audio_io.load(run.dir / rec["path"])
        run.add_metrics(clip, {n: float(f(wav, sr, rec["prompt"])) for n, f in missing.items()})
