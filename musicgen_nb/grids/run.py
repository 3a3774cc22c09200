"""Run a grid: generate the rows a run folder lacks, on this machine or on Ray, then the metrics.

A clip is identified by a hash of its prompt, seed and parameters
(:func:`~musicgen_nb.grids.table.clip_id`), so the same row always gets the same
file, whatever the batch it ran in. Per-item seeds make each clip independent of
its batch-mates. :mod:`musicgen_nb.grids.journal` keeps the folder consistent
after an interrupt, a crash or ``kill -9``.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from .._util.checks import check_choice
from .batch import GridInterrupted, generate_batch
from .journal import MANIFEST_COLUMNS, RunFolder
from .table import batches, specs

if TYPE_CHECKING:
    import os
    import threading

    import pandas as pd

    from ..models import MusicGen

BACKENDS = ("local", "ray")


def run_grid(
    grid: pd.DataFrame | list[dict], *, model: str | MusicGen, out: str | os.PathLike, backend: str="local", batch_size: int=8, precision: str="auto", device: str="auto",
    random_weights: bool=False, fmt: str="wav", metrics: list | None=None, progress: bool=True, address: str | None=None, workers: int | None=None,
    adapter: str | os.PathLike | None=None, gpus_per_worker: float | None=None, stop: threading.Event | None=None,
) -> pd.DataFrame:  # fmt: skip
    """Generate every row of a grid; write one audio file per row and ``out/manifest.csv``.

    Parameters
    ----------
    grid : pandas.DataFrame or list of dict
        From :func:`grid` (or rows :func:`grid` accepts).
    model : str or MusicGen
        A name for :func:`musicgen_nb.load` (``"small"``, ``"tiny"``, a hub id or a
        directory). The local backend also takes a loaded session.
    out : path
        The run directory. Run again with the same ``out`` to finish an
        interrupted run: only the missing rows are generated. One directory holds
        clips of one model (same precision, adapter and stand-in): anything else is
        refused. The manifest holds the rows of this grid only, whatever other
        grids the directory holds.
    backend : {"local", "ray"}
        ``"local"`` runs in this process. ``"ray"`` runs one model per Ray actor
        (GPU actors when the cluster has GPUs, else CPU actors); see
        :mod:`musicgen_nb.grids.ray_backend`.
    batch_size : int
        Rows with the same parameters share a ``generate`` call, up to this many.
    precision, device, random_weights, adapter
        Passed to :func:`musicgen_nb.load`.
    fmt : {"wav", "flac"}
    metrics : list, optional
        Per-clip metric columns to fill (see :func:`musicgen_nb.metrics.row_metrics`):
        ``"clap_score"``, ``"loudness"`` or callables ``f(audio, sr, prompt) -> float``.
        Named ones run on the model's device (on CPU with ``backend="ray"``: they run
        in this process); their models are checked first. Each batch's clips get
        their metrics as soon as they are saved, so a failing metric stops the run
        after one batch.
    progress : bool
        One progress bar over clips.
    address : str, optional
        Ray only: the cluster to join (``"auto"``, ``"ray://host:10001"``...). None
        starts a local Ray (or uses the one already started in this process).
    workers : int, optional
        Ray only: number of actors (default: as many as the GPUs or CPUs hold).
    gpus_per_worker : float, optional
        Ray only: GPUs per actor, e.g. 0.5 for two actors per GPU (default 1 when
        the cluster has GPUs). See :func:`~musicgen_nb.grids.ray_backend.actor_options`.
    stop : threading.Event, optional
        Set it to stop the run: the clips in flight are not saved, and
        :class:`~musicgen_nb.grids.batch.GridInterrupted` is raised.

    Returns
    -------
    pandas.DataFrame
        The manifest: the row's parameters, ``path`` (relative to ``out``),
        ``sha256`` of the file, ``codes_sha256``, ``duration_s``, timings, the worker,
        ``model``, ``standin`` (the offline checkpoint that stood in for it, else
        None), ``precision``, ``adapter``, ``run_id`` of the run that made it,
        library versions and metric columns. Also written to ``out/manifest.csv``,
        and to ``out/manifest.parquet`` when pyarrow is installed.

    Raises
    ------
    GridInterrupted
        (a ``KeyboardInterrupt``) on Ctrl-C or ``stop``: the clips in flight are
        not journaled, and a rerun generates them.

    Examples
    --------
    >>> import musicgen_nb as mg, tempfile
    >>> g = mg.grid(["jazz", "rock"], seed=[1, 2], duration=0.5)
    >>> m = mg.run_grid(g, model="tiny", out=tempfile.mkdtemp(), progress=False)
    >>> len(m), m["sha256"].str.len().unique().tolist(), m["standin"].tolist()
    (4, [64], [None, None, None, None])
    """
    from ..metrics import row_metrics

    check_settings(backend=backend, batch_size=batch_size, fmt=fmt, address=address, workers=workers,
                   gpus_per_worker=gpus_per_worker)  # fmt: skip
    rows = specs(_grid_rows(grid))
    session, name = _model(model, backend)
    config = _config(session, name, precision, device, random_weights, fmt, adapter, backend)
    metric_fns = row_metrics(metrics, device=session.device if session else config["device"])
    _check_metric_names(metric_fns)
    run = RunFolder(out, {k: v for k, v in config.items() if k != "device"})
    order = [r["clip_id"] for r in rows]
    try:
        load_kwargs = dict(device=device, precision=precision, random_weights=random_weights,
                           adapter=config["adapter"])  # fmt: skip
        _generate(run, rows, name if session is None else session, load_kwargs, fmt=fmt,
                  batch_size=batch_size, progress=progress, backend=backend, address=address,
                  workers=workers, gpus=gpus_per_worker, stop=stop, metrics=metric_fns)  # fmt: skip
        _fill_metrics(run, order, metric_fns)
        return run.manifest(order)
    finally:
        run.release()


def _config(session, name, precision, device, random_weights, fmt, adapter, backend) -> dict:
    """The run's settings, checked before anything is written (``run.json`` holds them).

    A model name is checked as :func:`musicgen_nb.load` checks it (an unknown name
    raises here, not in a worker); the precision is the one a local load picks.
    With Ray the device is the workers' business: it is not resolved here (a CPU
    head node may drive GPU workers), and the metrics run on this process's CPU.
    """
    from ..checkpoints import standins
    from ..checkpoints.loading import resolve_device, resolve_source
    from ..models import resolve_precision
    from .batch import adapter_of

    if session is not None:
        if adapter is not None:
            raise ValueError("adapter= is for a model name; this session is loaded already")
        return dict(model=name, precision=session.precision, random_weights=random_weights,
                    fmt=fmt, standin=session.standin, adapter=adapter_of(session),
                    device=session.device)  # fmt: skip
    if not isinstance(random_weights, bool):
        raise TypeError(f"random_weights must be True or False, got {random_weights!r}")
    resolve_source(name, random_weights=random_weights)  # ValueError naming an unknown model
    standin = None if random_weights or not standins.enabled() else standins.standin_for(name)
    if adapter is not None:
        from pathlib import Path

        if not Path(adapter).is_dir():
            raise ValueError(f"adapter must be a fine-tune folder, got {str(adapter)!r}")
        adapter = str(Path(adapter).resolve())
    dev = resolve_device(device) if backend == "local" else None
    prec = resolve_precision(precision, dev) if dev is not None else precision
    return dict(model=name, precision=prec, random_weights=random_weights, fmt=fmt,
                standin=standin, adapter=adapter, device=dev or "cpu")  # fmt: skip


def _generate(
    run, rows, model, load_kwargs, *, fmt, batch_size, progress, backend, address, workers, gpus,
    stop, metrics,
):  # fmt: skip
    """Generate, write and journal the rows ``run`` lacks, in batches, with one progress bar.

    ``model`` is a loaded session (local backend) or a checkpoint name (loaded when needed).
    """
    todo = [r for r in rows if r["clip_id"] not in run.done]
    bar = _bar(len(rows), len(rows) - len(todo), progress)
    try:
        on_result = _committer(run, rows, bar, stop if backend == "ray" else None, metrics)
        work = batches(todo, batch_size)
        if work and backend == "local":
            session = _load(model, load_kwargs) if isinstance(model, str) else model
            for batch in work:
                on_result(generate_batch(session, batch, fmt, stop=stop))
        elif work:
            from .ray_backend import run_batches

            run_batches(work, model=model, load_kwargs=load_kwargs, fmt=fmt, address=address,
                        workers=workers, on_result=on_result, gpus_per_worker=gpus)  # fmt: skip
    finally:
        if bar is not None:
            bar.close()


def check_settings(
    *, backend: str = "local", batch_size: int = 8, fmt: str = "wav", address: str | None = None,
    workers: int | None = None, gpus_per_worker: float | None = None,
) -> None:  # fmt: skip
    """Check :func:`run_grid`'s run settings, before any work; errors name the setting.

    Examples
    --------
    >>> check_settings(backend="ray", workers=2)
    >>> check_settings(batch_size=0)
    Traceback (most recent call last):
    ...
    ValueError: batch_size must be an int >= 1, got 0
    """
    from ..audio import FORMATS

    check_choice(backend, "backend", BACKENDS)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    check_choice(fmt, "fmt", FORMATS)
    for name, value in (("address", address), ("workers", workers),
                        ("gpus_per_worker", gpus_per_worker)):  # fmt: skip
        if value is not None and backend != "ray":
            raise ValueError(f"{name}= is for backend='ray', got backend={backend!r}")
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise ValueError(f"workers must be None or an int >= 1, got {workers!r}")
    if gpus_per_worker is not None:
        from .ray_backend import check_gpus_per_worker

        check_gpus_per_worker(gpus_per_worker)


def _grid_rows(grid) -> list:
    """The rows of a grid given as a DataFrame or a list of rows."""
    import pandas as pd

    if isinstance(grid, pd.DataFrame):
        return grid  # specs reads its NaN cells as missing, as pandas fills them
    if isinstance(grid, (list, tuple)):
        return list(grid)
    raise TypeError(
        f"grid must be a DataFrame from mg.grid(...) or a list of rows, got {type(grid).__name__}"
    )


def _model(model, backend: str):
    """(session or None, checkpoint name) from ``model=``."""
    if isinstance(model, str):
        return None, model
    if hasattr(model, "generate") and hasattr(model, "name"):
        if backend == "ray":
            raise TypeError(
                "backend='ray' loads the model in each actor: pass model= as a name, not a session"
            )
        return model, model.name
    raise TypeError(
        f"model must be a checkpoint name or a MusicGen session, got {type(model).__name__}"
    )


def _load(name: str, load_kwargs: dict):
    from ..models import load

    return load(name, **load_kwargs)


def _committer(run: RunFolder, rows: list[dict], bar, stop=None, metrics=None):
    """``on_result(results)``: write and journal each clip, its metrics, the manifest; move the bar.

    After a batch, a set ``stop`` ends the run (the Ray backend's actors cannot see it).
    """
    run_id = uuid.uuid4().hex[:12]
    order = [r["clip_id"] for r in rows]
    by_id = {r["clip_id"]: r for r in rows}

    def commit(results):
        for res in results:
            run.commit(by_id[res["clip_id"]], res, run_id)
        _fill_metrics(run, [res["clip_id"] for res in results], metrics or {})
        run.manifest(order)
        if bar is not None:
            bar.update(len(results))
        if stop is not None and stop.is_set():
            raise GridInterrupted("stopped; the clips not yet saved are generated by a rerun")

    return commit


def _bar(total: int, done: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc="grid", unit="clip")


def _check_metric_names(fns: dict) -> None:
    """Refuse a metric named like a manifest column: it would never be computed."""
    taken = {*MANIFEST_COLUMNS, "data"}
    for name in fns:
        if name in taken or name.startswith("version_"):
            raise ValueError(
                f"metrics: {name!r} is a manifest column; give the metric another name "
                "(e.g. metrics={'my_name': f})"
            )


def _fill_metrics(run: RunFolder, order: list[str], fns: dict):
    """Compute each metric for the rows of this grid that lack it (read back from the files).

    A value that is there, NaN included (no value for that clip), is not computed again.
    """
    from ..audio import load

    for clip in order:
        rec = run.done[clip]
        todo = {n: f for n, f in fns.items() if n not in rec}
        if not todo:
            continue
        wav, sr = load(run.dir / rec["path"])
        run.add_metrics(
            clip, {n: _number(n, f(wav, sr, rec["prompt"]), rec) for n, f in todo.items()}
        )


def _number(name: str, value, rec: dict) -> float:
    """A metric's value as a float; anything else raises naming the metric and the clip."""
    import numbers

    import numpy as np

    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"metric {name!r} returned {type(value).__name__} {value!r:.60} for clip "
            f"{rec['clip_id']} ({rec['prompt']!r}, seed {rec['seed']}); a metric must return a "
            "real number (NaN for no value)"
        )
    return float(value)
