"""The Ray backend: the same files as the local backend, actors sized to the cluster, joining by address."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
from _grids import ROOT, check_run, small_grid

import musicgen_nb as mg
from musicgen_nb.grids import generate_batch
from musicgen_nb.grids.ray_backend import GridWorker, actor_options


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with 2 CPUs whose workers import this checkout; shut down afterwards."""
    ray = pytest.importorskip("ray")
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = path  # inherited by the Ray processes started here
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 object_store_memory=100 * 1024**2)  # fmt: skip
        yield ray
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def test_ray_backend_gives_the_local_sha256s(tiny, local_ray, tmp_path):
    """Done when: 2 prompts x 2 seeds x 2 guidance scales, local and Ray (2 workers) agree."""
    g = small_grid()
    ray_m = mg.run_grid(g, model="tiny", out=tmp_path / "ray", backend="ray", batch_size=2,
                        progress=False)  # fmt: skip
    local = mg.run_grid(g, model=tiny, out=tmp_path / "local", batch_size=2, progress=False)
    check_run(tmp_path / "ray", ray_m)
    assert ray_m["sha256"].tolist() == local["sha256"].tolist()
    assert ray_m["codes_sha256"].tolist() == local["codes_sha256"].tolist()
    assert ray_m["worker"].nunique() == 2  # two actors, one model each
    assert local_ray.is_initialized()  # a Ray the caller started is left running


def test_actor_options():
    assert actor_options({"CPU": 16.0, "GPU": 4.0}, None) == ({"num_gpus": 1, "num_cpus": 1}, 4)
    assert actor_options({"CPU": 2.0}, None) == ({"num_cpus": 1}, 2)
    assert actor_options({"CPU": 8.0}, 3) == ({"num_cpus": 1}, 3)


def test_ray_needs_a_model_name(tiny, tmp_path):
    with pytest.raises(TypeError, match="pass model= as a name"):
        mg.run_grid(small_grid(), model=tiny, out=tmp_path, backend="ray", progress=False)


def test_cli_joins_a_running_cluster_by_address(tiny, local_ray, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("model: tiny\nworkers: 1\nprompts: [jazz, rock]\nseed: 5\nduration: 0.5\n")
    address = local_ray.get_runtime_context().gcs_address
    cmd = [sys.executable, "-m", "musicgen_nb.cli", "grid", str(spec), "--out", str(tmp_path / "o"),
           "--backend", "ray", "--address", address, "--quiet"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=os.environ)
    assert done.returncode == 0, done.stderr[-2000:]
    m = pd.read_parquet(tmp_path / "o" / "manifest.parquet")
    ref = mg.run_grid(mg.grid(["jazz", "rock"], seed=5, duration=0.5), model=tiny,
                      out=tmp_path / "local", progress=False)  # fmt: skip
    assert m["sha256"].tolist() == ref["sha256"].tolist()
    assert local_ray.is_initialized()  # joining did not stop the cluster it joined


def test_grid_worker_runs_a_batch_without_ray(tiny):
    """The actor class is plain Python: its batches are generate_batch's, on its own model."""
    rows = mg.grid(["jazz"], seed=[1, 2], duration=0.5).to_dict("records")
    worker = GridWorker("tiny", {}, threads=None)
    got = worker.run(rows, "wav")
    want = generate_batch(tiny, rows, "wav")
    assert [r["data"] for r in got] == [r["data"] for r in want]
