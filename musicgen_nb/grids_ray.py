"""The Ray backend of :func:`musicgen_nb.run_grid`: one model per actor.

Each actor loads the model once and runs whole batches with
:func:`musicgen_nb.grids.generate_batch`, the function the local backend runs,
on the same batches, so both backends write the same files (same sha256).
Actors return the encoded audio; the driver writes the files and the
journal, so workers need no shared file system.

* ``num_gpus=1`` per actor when the cluster has GPUs (one actor per GPU),
  else CPU actors (``num_cpus=1`` each, one per CPU).
* No address: a local Ray is started (or the one this process already
  started is used). With an address (``"auto"``, ``"ray://head:10001"``),
  the run joins that cluster.

Ray is an optional extra: ``pip install "musicgen-nb[scale]"``.
"""

from __future__ import annotations


def _require_ray():
    try:
        import ray
    except ImportError:
        raise ImportError(
            "backend='ray' needs Ray: pip install 'musicgen-nb[scale]' (or pip install ray)"
        ) from None
    return ray


class GridWorker:
    """A Ray actor holding one loaded model (see :func:`run_batches`)."""

    def __init__(self, model: str, load_kwargs: dict, threads: int | None = None):
        import torch

        from .models import load

        if threads:
            torch.set_num_threads(threads)
        self.s = load(model, **load_kwargs)

    def run(self, batch: list[dict], fmt: str) -> list[dict]:
        from .grids import generate_batch

        return generate_batch(self.s, batch, fmt)


def actor_options(resources: dict, workers: int | None) -> tuple[dict, int]:
    """Ray options of each actor and how many actors, from ``ray.cluster_resources()``.

    Examples
    --------
    >>> actor_options({"CPU": 8.0, "GPU": 4.0}, None)
    ({'num_gpus': 1, 'num_cpus': 1}, 4)
    >>> actor_options({"CPU": 2.0}, None)
    ({'num_cpus': 1}, 2)
    """
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return dict(num_gpus=1, num_cpus=1), workers or gpus
    cpus = max(1, int(resources.get("CPU", 1)))
    return dict(num_cpus=1), workers or cpus


def run_batches(batches, *, model, load_kwargs, fmt, address, workers, on_result):
    """Run ``batches`` on Ray actors; call ``on_result(results)`` in the driver as each finishes."""
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
        opts, n = actor_options(ray.cluster_resources(), workers)
        n = min(n, len(batches))
        threads = None if opts.get("num_gpus") else opts["num_cpus"]
        Worker = ray.remote(**opts)(GridWorker)
        actors = [Worker.remote(model, load_kwargs, threads) for _ in range(n)]
        pool = ray.util.ActorPool(actors)
        for results in pool.map_unordered(lambda a, b: a.run.remote(b, fmt), batches):
            on_result(results)
    finally:
        for a in actors:
            ray.kill(a)
        if started:
            ray.shutdown()
