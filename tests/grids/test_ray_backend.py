"""The Ray backend: the same files as the local backend, actors sized to the cluster, joining by address."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
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
        # Ray gives its raylet a fixed 30 s to start: a busy machine can miss it.
        for attempt in range(3):
            try:
                ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                         object_store_memory=100 * 1024**2)  # fmt: skip
                break
            except Exception as exc:
                ray.shutdown()
                if attempt == 2 or "timed out during startup" not in str(exc):
                    raise
        yield ray
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def test_ray_backend_gives_the_local_sha256s(tiny, local_ray, tmp_path):
    """Done when: 2 prompts x 2 seeds x 2 guidance scales, local and Ray (2 workers) agree,
    bit for bit, although this process decodes with 2 threads and each actor with 1."""
    g = small_grid()
    ray_m = mg.run_grid(g, model="tiny", out=tmp_path / "ray", backend="ray", batch_size=2,
                        progress=False)  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        local = mg.run_grid(g, model=tiny, out=tmp_path / "local", batch_size=2, progress=False)
    finally:
        torch.set_num_threads(threads)
    check_run(tmp_path / "ray", ray_m)
    assert ray_m["sha256"].tolist() == local["sha256"].tolist()
    assert ray_m["codes_sha256"].tolist() == local["codes_sha256"].tolist()
    assert ray_m["worker"].nunique() == 2  # two actors, one model each
    assert local_ray.is_initialized()  # a Ray the caller started is left running


def test_actor_options():
    assert actor_options({"CPU": 16.0, "GPU": 4.0}, None) == ({"num_gpus": 1, "num_cpus": 1}, 4)
    assert actor_options({"CPU": 2.0}, None) == ({"num_cpus": 1}, 2)
    assert actor_options({"CPU": 8.0}, 3) == ({"num_cpus": 1}, 3)


@pytest.mark.parametrize(
    "gpus, workers, per_worker, want",
    [
        (4.0, None, None, ({"num_gpus": 1.0, "num_cpus": 1}, 4)),
        (4.0, 2, None, ({"num_gpus": 1.0, "num_cpus": 1}, 2)),
        (2.0, None, 0.5, ({"num_gpus": 0.5, "num_cpus": 1}, 4)),
        (1.0, 3, 0.3, ({"num_gpus": 0.3, "num_cpus": 1}, 3)),  # 3 x 0.3 fit one GPU
        (4.0, None, 2, ({"num_gpus": 2.0, "num_cpus": 1}, 2)),
    ],
)
def test_gpu_actors_are_capped_at_what_the_gpus_hold(gpus, workers, per_worker, want):
    assert actor_options({"CPU": 32.0, "GPU": gpus}, workers, per_worker) == want


def test_actors_are_capped_at_the_cpus_and_default_to_what_is_free():
    assert actor_options({"CPU": 2.0, "GPU": 4.0}, None) == ({"num_gpus": 1.0, "num_cpus": 1}, 2)
    assert actor_options({"CPU": 2.0, "GPU": 1.0}, None, 0.25)[1] == 2
    assert actor_options({"CPU": 8.0}, None, available={"CPU": 3.0}) == ({"num_cpus": 1}, 3)
    assert actor_options({"CPU": 8.0}, None, available={}) == ({"num_cpus": 1}, 1)  # all busy
    assert actor_options({"CPU": 8.0}, 6, available={"CPU": 1.0}) == ({"num_cpus": 1}, 6)


@pytest.mark.parametrize(
    "resources, workers, per_worker, exc, match",
    [
        ({"CPU": 8.0, "GPU": 2.0}, 3, None, ValueError, r"workers=3 with 1 GPU\(s\) each need 3 GPUs; the cluster has 2, room for 2"),
        ({"CPU": 8.0, "GPU": 1.0}, 4, 0.5, ValueError, "room for 2 such worker"),
        ({"CPU": 8.0, "GPU": 1.0}, None, 2, ValueError, "room for 0 such worker"),
        ({"CPU": 2.0}, None, 0.5, ValueError, "gpus_per_worker=0.5 asks for GPUs, but the Ray cluster has none"),
        ({"CPU": 2.0}, None, 1.5, ValueError, "a fraction in \\(0, 1\\] or a whole number"),
        ({"CPU": 2.0}, None, 0, ValueError, "a fraction in"),
        ({"CPU": 2.0}, None, float("nan"), ValueError, "a fraction in"),
        ({"CPU": 2.0}, None, "half", TypeError, "gpus_per_worker must be a number"),
        ({"CPU": 2.0}, 3, None, ValueError, r"workers=3 with 1 CPU each need 3 CPUs; the cluster has 2, room for 2"),
        ({"CPU": 2.0, "GPU": 4.0}, 3, None, ValueError, "need 3 CPUs; the cluster has 2, room for 2"),
        ({"CPU": 1.0, "GPU": 1.0}, 2, 0.5, ValueError, "need 2 CPUs; the cluster has 1, room for 1"),
        ({"GPU": 1.0}, None, None, ValueError, "the cluster has 0, room for 0"),
    ],
)  # fmt: skip
def test_gpu_requests_that_would_hang_are_refused(resources, workers, per_worker, exc, match):
    with pytest.raises(exc, match=match):
        actor_options(resources, workers, per_worker)


def test_a_gpu_request_on_a_cpu_cluster_is_refused_not_left_hanging(tiny, local_ray, tmp_path):
    assert local_ray.cluster_resources().get("GPU", 0) == 0
    with pytest.raises(
        ValueError, match="gpus_per_worker=0.5 asks for GPUs, but the Ray cluster has none"
    ):
        mg.run_grid(small_grid(), model="tiny", out=tmp_path, backend="ray", gpus_per_worker=0.5,
                    progress=False)  # fmt: skip
    assert not (tmp_path / "run.json").exists()
    with pytest.raises(
        ValueError, match="workers=3 with 1 CPU each need 3 CPUs; the cluster has 2"
    ):
        mg.run_grid(small_grid(), model="tiny", out=tmp_path, backend="ray", workers=3,
                    progress=False)  # fmt: skip
    assert not (tmp_path / "run.json").exists()
    with pytest.raises(ValueError, match="gpus_per_worker= is for backend='ray'"):
        mg.run_grid(small_grid(), model="tiny", out=tmp_path, gpus_per_worker=1, progress=False)


def test_an_unknown_model_is_refused_before_any_actor_starts(tmp_path):
    ray = pytest.importorskip("ray")
    was_up = ray.is_initialized()
    with pytest.raises(ValueError, match="unknown model 'nosuch'"):
        mg.run_grid(small_grid(), model="nosuch", out=tmp_path / "o", backend="ray", progress=False)
    assert not (tmp_path / "o").exists() and ray.is_initialized() == was_up  # Ray not even started


def test_the_driver_leaves_the_device_to_the_workers(local_ray, tmp_path):
    """A CPU head node may drive GPU workers: device="cuda" is not resolved in the driver.

    Here the workers have no CUDA either, so the error comes from the actor, not the driver.
    """
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the workers would run")
    with pytest.raises(RuntimeError, match=r"^a Ray worker running model 'tiny' died: .*CUDA"):
        mg.run_grid(small_grid().head(1), model="tiny", out=tmp_path, backend="ray", device="cuda",
                    workers=1, progress=False)  # fmt: skip
    assert not (tmp_path / "run.json").exists()


def test_workers_get_the_adapter_path_the_driver_resolved(tiny, local_ray, tmp_path, monkeypatch):
    """The actors run in another working directory: a relative adapter path is resolved first."""
    pytest.importorskip("peft")
    from musicgen_nb import finetune as FT

    data = FT.dataset(FT.synth_dataset(tmp_path / "data", seconds=1.0), cache_dir=tmp_path / "c")
    FT.train(tiny, data, out=tmp_path / "lora", steps=2, batch_size=2, seed=0, progress=False)
    monkeypatch.chdir(tmp_path)
    m = mg.run_grid(small_grid().head(1), model="tiny", adapter="lora", out=tmp_path / "run",
                    backend="ray", workers=1, progress=False)  # fmt: skip
    assert m["adapter"].tolist() == [str((tmp_path / "lora").resolve())]


def test_an_actor_that_dies_ends_the_run_in_one_line(local_ray, tmp_path):
    """A hub id passes the name check but is not there: the actor dies loading it."""
    with pytest.raises(
        RuntimeError, match=r"^a Ray worker running model 'nobody/musicgen-none' died: [^\n]*$"
    ):
        mg.run_grid(small_grid().head(1), model="nobody/musicgen-none", out=tmp_path, backend="ray",
                    workers=1, progress=False)  # fmt: skip
    assert not (tmp_path / "run.json").exists()


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
    m = pd.read_csv(tmp_path / "o" / "manifest.csv")
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
