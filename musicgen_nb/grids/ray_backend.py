"""The Ray backend of :func:`musicgen_nb.run_grid`: one model per actor.

Each actor loads the model once and runs whole batches with
:func:`musicgen_nb.grids.batch.generate_batch`, the function the local backend runs,
on the same batches, so both backends write the same files (same sha256).
Actors return the encoded audio; the driver writes the files and the
journal, so workers need no shared file system.

* GPU actors when the cluster has GPUs: ``gpus_per_worker`` GPUs each (1 by
  default, a fraction such as 0.5 to share a GPU), and never more actors than
  the GPUs hold, so no actor waits forever to be placed. A GPU request on a
  cluster without GPUs is refused at once. Else CPU actors (``num_cpus=1``
  each, one per CPU). Every actor takes one CPU, so ``workers`` above the
  cluster's CPUs is refused too.
* The model name is checked in the driver before any actor starts; an actor
  that dies anyway (e.g. a checkpoint missing on a worker) ends the run with
  one line naming the model.
* No address: a local Ray is started (or the one this process already
  started is used). With an address (``"auto"``, ``"ray://head:10001"``),
  the run joins that cluster.

Ray is an optional extra: ``pip install "musicgen-nb[scale]"``.
"""

from __future__ import annotations

from .batch import generate_batch


def _require_ray():
    try:
        import ray
    except ImportError:
        raise ImportError(
            "backend='ray' needs Ray: pip install 'musicgen-nb[scale]' (or pip install ray)"
        ) from None
    return ray


class GridWorker:
    """A Ray actor holding one loaded model (see :func:`run_batches`).

    Parameters
    ----------
    model : str
        A name for :func:`musicgen_nb.load`.
    load_kwargs : dict
        ``device``, ``precision`` and ``random_weights`` for :func:`musicgen_nb.load`.
    threads : int, optional
        Torch threads of this actor (CPU actors get one CPU each).

    Examples
    --------
    The class also works without Ray, which makes it easy to check:

    >>> import musicgen_nb as mg
    >>> w = GridWorker("tiny", {})
    >>> rows = mg.grid(["jazz"], seed=[1], duration=0.5).to_dict("records")
    >>> [r["clip_id"] for r in w.run(rows, "wav")] == [rows[0]["clip_id"]]
    True
    """

    def __init__(self, model: str, load_kwargs: dict, threads: int | None = None):
        import torch

        from ..models import load

        if threads:
            torch.set_num_threads(threads)
        self.s = load(model, **load_kwargs)

    def run(self, batch: list[dict], fmt: str) -> list[dict]:
        """The results of :func:`~musicgen_nb.grids.batch.generate_batch` for one batch."""
        return generate_batch(self.s, batch, fmt)


def check_gpus_per_worker(gpus_per_worker: float) -> float:
    """``gpus_per_worker`` checked: a fraction in (0, 1] or a whole number of GPUs.

    Examples
    --------
    >>> check_gpus_per_worker(0.5), check_gpus_per_worker(2)
    (0.5, 2.0)
    >>> check_gpus_per_worker(1.5)
    Traceback (most recent call last):
    ...
    ValueError: gpus_per_worker must be a fraction in (0, 1] or a whole number of GPUs, got 1.5
    """
    import math
    import numbers

    if isinstance(gpus_per_worker, bool) or not isinstance(gpus_per_worker, numbers.Real):
        raise TypeError(f"gpus_per_worker must be a number of GPUs, got {gpus_per_worker!r}")
    g = float(gpus_per_worker)
    if not math.isfinite(g) or g <= 0 or (g > 1 and not g.is_integer()):
        raise ValueError(
            "gpus_per_worker must be a fraction in (0, 1] or a whole number of GPUs, "
            f"got {gpus_per_worker!r}"
        )
    return g


def actor_options(
    resources: dict,
    workers: int | None,
    gpus_per_worker: float | None = None,
    available: dict | None = None,
) -> tuple[dict, int]:
    """Ray options of each actor and how many actors, from ``ray.cluster_resources()``.

    Every actor takes one CPU, and a GPU actor ``g`` GPUs: ``floor(1 / g)`` actors
    per GPU for a fraction ``g``, ``GPUs // g`` for whole GPUs. Actors never
    outnumber what the cluster holds (more would never be placed and the run
    would hang), so an explicit ``workers`` above that is refused, as is a GPU
    request on a cluster without GPUs. The default count is what the cluster
    holds, lowered to what is free now (``available``, from
    ``ray.available_resources()``), and at least 1.

    Examples
    --------
    >>> actor_options({"CPU": 8.0, "GPU": 4.0}, None)
    ({'num_gpus': 1.0, 'num_cpus': 1}, 4)
    >>> actor_options({"CPU": 8.0, "GPU": 2.0}, None, 0.5)
    ({'num_gpus': 0.5, 'num_cpus': 1}, 4)
    >>> actor_options({"CPU": 2.0}, None), actor_options({"CPU": 8.0}, None, available={"CPU": 3.0})
    (({'num_cpus': 1}, 2), ({'num_cpus': 1}, 3))
    >>> actor_options({"CPU": 2.0}, 3)
    Traceback (most recent call last):
    ...
    ValueError: workers=3 with 1 CPU each need 3 CPUs; the cluster has 2, room for 2 worker(s)...
    >>> actor_options({"CPU": 2.0}, None, 0.5)
    Traceback (most recent call last):
    ...
    ValueError: gpus_per_worker=0.5 asks for GPUs, but the Ray cluster has none ...
    """
    g = _gpus_each(resources, gpus_per_worker)
    room = _room(resources, g)
    if not room or (workers or 0) > room:
        cpus = int(resources.get("CPU", 0) + 1e-9)
        if g is None or room == cpus:
            raise ValueError(
                f"workers={workers or 1} with 1 CPU each need {workers or 1} CPUs; the cluster has "
                f"{cpus}, room for {room} worker(s): lower workers (or add CPUs)"
            )
        raise ValueError(
            f"workers={workers or 1} with {g:g} GPU(s) each need {(workers or 1) * g:g} GPUs; the "
            f"cluster has {int(resources.get('GPU', 0) + 1e-9)}, room for {room} such worker(s): "
            "lower workers, or share GPUs with a fraction (e.g. gpus_per_worker=0.5)"
        )
    opts = dict(num_cpus=1) if g is None else dict(num_gpus=g, num_cpus=1)
    if workers:
        return opts, workers
    free = room if available is None else _room(available, g)
    return opts, max(1, min(room, free))


def _gpus_each(resources: dict, gpus_per_worker) -> float | None:
    """GPUs per actor (None: CPU actors), or an error for a GPU request without GPUs."""
    if gpus_per_worker is None:
        return 1.0 if resources.get("GPU", 0) >= 1 - 1e-9 else None
    g = check_gpus_per_worker(gpus_per_worker)
    if resources.get("GPU", 0) < 1 - 1e-9:
        raise ValueError(
            f"gpus_per_worker={gpus_per_worker!r} asks for GPUs, but the Ray cluster has none "
            f"(it reports {resources.get('GPU', 0)} GPUs); leave gpus_per_worker out for CPU actors"
        )
    return g


def _room(resources: dict, g: float | None) -> int:
    """How many actors ``resources`` hold: one CPU each, and ``g`` GPUs each."""
    cpus = int(resources.get("CPU", 0) + 1e-9)
    if g is None:
        return cpus
    gpus = int(resources.get("GPU", 0) + 1e-9)
    return min(cpus, gpus * int(1 / g + 1e-9) if g <= 1 else gpus // int(g))


def run_batches(
    batches, *, model, load_kwargs, fmt, address, workers, on_result, gpus_per_worker=None
):
    """Run ``batches`` on Ray actors; call ``on_result(results)`` in the driver as each finishes.

    Parameters
    ----------
    batches : list of list of dict
        Rows of a grid, one list per ``generate`` call.
    model : str
        The checkpoint each actor loads.
    load_kwargs : dict
        The rest of :func:`musicgen_nb.load`'s arguments.
    fmt : {"wav", "flac"}
    address : str or None
        The cluster to join; None starts a local Ray (or uses this process's).
    workers : int or None
        Number of actors (default from :func:`actor_options`).
    gpus_per_worker : float, optional
        GPUs per actor (see :func:`actor_options`).
    on_result : callable
        Called with the results of each batch (from
        :func:`~musicgen_nb.grids.batch.generate_batch`).

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> rows = mg.grid(["jazz", "rock"], seed=[1], duration=0.5).to_dict("records")
    >>> done = []
    >>> run_batches([rows], model="tiny", load_kwargs={}, fmt="wav", address=None,
    ...             workers=1, on_result=done.extend)  # doctest: +SKIP
    >>> len(done)  # doctest: +SKIP
    2
    """
    ray = _require_ray()
    started = False
    if not ray.is_initialized():
        kwargs = dict(address=address, include_dashboard=False, log_to_driver=False)
        if address is None:  # a local Ray sized to this machine
            kwargs["address"] = "local"
        ray.init(**kwargs)
        started = True
    actors = []
    try:
        opts, n = actor_options(ray.cluster_resources(), workers, gpus_per_worker,
                                available=ray.available_resources())  # fmt: skip
        n = min(n, len(batches))
        threads = None if opts.get("num_gpus") else opts["num_cpus"]
        Worker = ray.remote(**opts)(GridWorker)
        actors = [Worker.remote(model, load_kwargs, threads) for _ in range(n)]
        pool = ray.util.ActorPool(actors)
        try:
            for results in pool.map_unordered(lambda a, b: a.run.remote(b, fmt), batches):
                on_result(results)
        except ray.exceptions.RayActorError as exc:
            why = str(getattr(exc, "cause", None) or exc).strip().splitlines()
            raise RuntimeError(
                f"a Ray worker running model {model!r} died: {why[-1] if why else type(exc).__name__}"
            ) from None
    finally:
        for a in actors:
            ray.kill(a)
        if started:
            ray.shutdown()
