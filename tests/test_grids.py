"""Grids and runs: the table, resumable runs (kill -9 included), the CLI, and the Ray backend."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import musicgen_nb as mg
from musicgen_nb import grids as G

ROOT = Path(__file__).resolve().parent.parent


def small_grid(**kw):
    kw.setdefault("duration", 0.5)
    return mg.grid(["jazz", "rock"], seed=[1, 2], guidance_scale=[1.0, 3.0], **kw)


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_run(out: Path, m: pd.DataFrame):
    """The manifest on disk equals the one returned; every file is there and matches its sha256."""
    on_disk = pd.read_parquet(out / "manifest.parquet")
    pd.testing.assert_frame_equal(on_disk.reset_index(drop=True), m.reset_index(drop=True))
    assert m["clip_id"].is_unique
    for rec in m.itertuples():
        assert sha(out / rec.path) == rec.sha256
    assert not list(out.rglob("*.tmp")), "no half-written file may stay"
    files = sorted(p.name for p in (out / "audio").iterdir())
    assert files == sorted(Path(p).name for p in m["path"])


# --------------------------------------------------------------------------- grid
def test_grid_is_the_full_product_with_defaults():
    g = small_grid()
    assert len(g) == 8
    assert list(g.columns) == ["clip_id", "prompt", "seed", *G.PARAMS]
    assert g["prompt"].tolist() == ["jazz"] * 4 + ["rock"] * 4
    assert g["seed"].tolist() == [1, 1, 2, 2] * 2
    assert g["guidance_scale"].tolist() == [1.0, 3.0] * 4
    assert (g["duration"] == 0.5).all() and (g["top_k"] == 250).all()
    assert g["clip_id"].is_unique
    # defaults are explicit, so an explicit default is the same clip
    assert mg.grid("jazz", seed=1, top_k=250)["clip_id"][0] == mg.grid("jazz", seed=1)["clip_id"][0]


def test_grid_from_rows_and_round_trip():
    rows = [dict(prompt="jazz", seed=3, guidance_scale=2), dict(prompt=None, seed=4)]
    g = mg.grid(rows=rows)
    assert g["guidance_scale"].tolist() == [2.0, 3.0] and g["prompt"].tolist() == ["jazz", None]
    again = mg.grid(rows=g)  # a grid is itself valid rows
    assert again["clip_id"].tolist() == g["clip_id"].tolist()


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(prompts="a", guidance=[1, 2]), ValueError, "unknown grid parameter 'guidance'"),
        (dict(prompts="a", seed=[1, 1]), ValueError, "rows 0 and 1 are the same clip"),
        (dict(prompts="a", seed=-1), ValueError, "seed must be an int >= 0, got -1"),
        (dict(prompts="a", guidance_scale=[0.5]), ValueError, "guidance_scale must be >= 1"),
        (dict(prompts="a", top_k=[1.5]), TypeError, "top_k must be an int"),
        (dict(prompts=[3]), TypeError, "prompt must be a string or None, got 3"),
        (dict(prompts="a", seed=[]), ValueError, "seed must list at least one value"),
        (dict(rows=[dict(prompt="a")]), ValueError, "every row needs a seed"),
        (dict(rows=[dict(prompt="a", seed=1, colour="red")]), ValueError, "unknown column"),
        (dict(rows=[dict(prompt="a", seed=1)], seed=2), ValueError, "do not combine"),
        (dict(rows="a"), TypeError, "rows must be a list of dicts"),
    ],
)
def test_grid_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        mg.grid(**kwargs)


def test_batches_group_rows_with_the_same_parameters():
    specs = small_grid().to_dict("records")
    batches = G._batches(specs, 3)
    assert [len(b) for b in batches] == [3, 1, 3, 1]
    for b in batches:
        assert len({r["guidance_scale"] for r in b}) == 1


# --------------------------------------------------------------------------- local runs
def test_run_grid_writes_files_and_manifest(tiny, tmp_path, capsys):
    g = small_grid()
    m = mg.run_grid(g, model=tiny, out=tmp_path, batch_size=4)
    check_run(tmp_path, m)
    assert m["clip_id"].tolist() == g["clip_id"].tolist()
    assert (m["duration_s"] == 0.5).all() and (m["sample_rate"] == 32000).all()
    assert m["batch_size"].tolist() == [4] * 8
    for col in ("text_encode_s", "decode_loop_s", "codec_decode_s", "steps_per_s", "seconds"):
        assert (m[col] > 0).all(), col
    assert m["version_musicgen_nb"].iloc[0] == mg.__version__
    assert m["version_torch"].iloc[0]
    # the file holds the clip generate() gives alone, as 16-bit PCM
    row = m.iloc[5]
    alone = tiny.generate(row.prompt, seed=int(row.seed), guidance_scale=row.guidance_scale,
                          duration=0.5, progress=False)  # fmt: skip
    wav, sr = mg.audio.load(tmp_path / row.path)
    np.testing.assert_allclose(wav, alone.audio[0], atol=1 / 32767)
    assert hashlib.sha256(alone.codes[0].tobytes()).hexdigest() == row.codes_sha256
    err = capsys.readouterr().err
    assert "grid" in err and "8/8" in err and "clip" in err  # one bar over clips


def test_sha256_does_not_depend_on_batch_size(tiny, tmp_path):
    g = small_grid()
    a = mg.run_grid(g, model=tiny, out=tmp_path / "a", batch_size=1, progress=False)
    b = mg.run_grid(g, model=tiny, out=tmp_path / "b", batch_size=8, progress=False)
    assert a["sha256"].tolist() == b["sha256"].tolist()
    assert a["codes_sha256"].tolist() == b["codes_sha256"].tolist()


def test_rerun_generates_only_missing_rows(tiny, tmp_path):
    g = small_grid()
    first = mg.run_grid(g.iloc[:5], model=tiny, out=tmp_path, batch_size=2, progress=False)
    again = mg.run_grid(g.iloc[:5], model=tiny, out=tmp_path, batch_size=2, progress=False)
    pd.testing.assert_frame_equal(first, again)  # nothing regenerated
    full = mg.run_grid(g, model=tiny, out=tmp_path, batch_size=2, progress=False)
    check_run(tmp_path, full)
    assert full["run_id"].iloc[:5].nunique() == 1 and full["run_id"].iloc[5:].nunique() == 1
    assert full["run_id"].iloc[0] != full["run_id"].iloc[-1]
    assert full["sha256"].iloc[:5].tolist() == first["sha256"].tolist()


def test_resume_repairs_what_a_crash_leaves(tiny, tmp_path):
    g = small_grid()
    m = mg.run_grid(g, model=tiny, out=tmp_path, batch_size=4, progress=False)
    journal = tmp_path / "journal.jsonl"
    lines = journal.read_text().splitlines()
    # A crash mid-way: the last 3 rows never journaled (the 3rd's file is an orphan), a line
    # cut short, a half-written temporary file, a stale lock of a dead process, and a
    # journaled file damaged on disk.
    lost = [json.loads(line) for line in lines[-3:]]
    journal.write_text("\n".join(lines[:-3]) + "\n" + lines[-3][:40])
    for rec in lost[1:]:  # lost[0]'s file stays: an orphan whose journal line was cut
        (tmp_path / rec["path"]).unlink()
    (tmp_path / "audio" / ".jazz_seed9_x.wav.tmp").write_bytes(b"RIFF")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".lock").write_text(f"{os.uname().nodename} {dead.pid}")
    damaged = tmp_path / m["path"].iloc[0]
    damaged.write_bytes(damaged.read_bytes()[:-10] + b"0123456789")
    again = mg.run_grid(g, model=tiny, out=tmp_path, batch_size=4, progress=False)
    check_run(tmp_path, again)
    assert again["sha256"].tolist() == m["sha256"].tolist()
    redone = again.loc[again["run_id"] != m["run_id"].iloc[0], "clip_id"].tolist()
    assert sorted(redone) == sorted([m["clip_id"].iloc[0], *(r["clip_id"] for r in lost)])
    assert not (tmp_path / ".lock").exists()


def test_kill_9_then_rerun_completes_without_duplicates(tiny, tmp_path):
    g = small_grid()
    g.to_parquet(tmp_path / "grid.parquet")
    out = tmp_path / "run"
    script = textwrap.dedent(
        f"""
        import pandas as pd, musicgen_nb as mg
        g = pd.read_parquet({str(tmp_path / "grid.parquet")!r})
        mg.run_grid(g, model="tiny", out={str(out)!r}, batch_size=1, progress=False)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], env=os.environ | {"PYTHONPATH": str(ROOT)}
    )
    journal = out / "journal.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if journal.exists() and journal.read_text().count("\n") >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    survived = [json.loads(x) for x in journal.read_text().splitlines() if x.strip()]
    assert 3 <= len(survived) < len(g)
    m = mg.run_grid(g, model=tiny, out=out, batch_size=1, progress=False)
    check_run(out, m)
    assert len(m) == len(g) and set(m["clip_id"]) == set(g["clip_id"])
    first_run = {r["clip_id"] for r in survived}
    kept = set(m.loc[m["run_id"] == survived[0]["run_id"], "clip_id"])
    assert kept == first_run  # rows done before the kill were not generated again
    clean = mg.run_grid(g, model=tiny, out=tmp_path / "clean", batch_size=4, progress=False)
    assert m["sha256"].tolist() == clean["sha256"].tolist()


def test_a_killed_runs_half_written_files_are_removed(tiny, tmp_path):
    """kill -9 can land while the manifest, the journal or a clip is being written: the next
    run (which holds the lock) removes those temporary files, wherever they are."""
    g = small_grid().head(2)
    out = tmp_path / "run"
    mg.run_grid(g, model=tiny, out=out, batch_size=1, progress=False)
    stale = [out / ".manifest.parquet.99999.tmp", out / ".journal.jsonl.99999.tmp",
             out / "audio" / ".x.wav.99999.tmp"]  # fmt: skip
    for p in stale:
        p.write_bytes(b"half")
    m = mg.run_grid(g, model=tiny, out=out, batch_size=1, progress=False)
    check_run(out, m)
    assert not any(p.exists() for p in stale)


def test_a_live_run_holds_the_directory(tiny, tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tmp_path.mkdir(exist_ok=True)
        (tmp_path / ".lock").write_text(f"{os.uname().nodename} {sleeper.pid}")
        with pytest.raises(RuntimeError, match="is in use by another run"):
            mg.run_grid(small_grid(), model=tiny, out=tmp_path, progress=False)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_directory_keeps_its_settings(tiny, tmp_path):
    g = small_grid().iloc[:1]
    mg.run_grid(g, model=tiny, out=tmp_path, progress=False)
    with pytest.raises(ValueError, match="fmt: 'wav' there, 'flac' now"):
        mg.run_grid(g, model=tiny, out=tmp_path, fmt="flac", progress=False)
    with pytest.raises(ValueError, match="model: 'tiny' there, 'tiny-melody' now"):
        mg.run_grid(g, model="tiny-melody", out=tmp_path, progress=False)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(backend="spark"), ValueError, "backend must be one of"),
        (dict(batch_size=0), ValueError, "batch_size must be an int >= 1, got 0"),
        (dict(fmt="mp3"), ValueError, "fmt must be one of"),
        (dict(address="auto"), ValueError, "address= is for backend='ray'"),
        (dict(workers=2), ValueError, "workers= is for backend='ray'"),
        (dict(backend="ray", workers=0), ValueError, "workers must be None or an int >= 1"),
        (dict(metrics=["fad"]), ValueError, "unknown metric 'fad'"),
        (dict(model=3), TypeError, "model must be a checkpoint name or a MusicGen session"),
    ],
)
def test_run_grid_bad_input(tmp_path, kwargs, exc, match):
    kwargs = dict(model="tiny", out=tmp_path, progress=False) | kwargs
    with pytest.raises(exc, match=match):
        mg.run_grid(small_grid(), **kwargs)


def test_melody_rows_are_batched_by_prompt_length(tiny_melody, tmp_path):
    g = mg.grid(["jazz", "epic orchestral choir with a long name"], seed=[1], duration=0.5)
    m = mg.run_grid(g, model=tiny_melody, out=tmp_path, batch_size=4, progress=False)
    assert m["batch_size"].tolist() == [1, 1]
    alone = tiny_melody.generate(g["prompt"][1], seed=1, duration=0.5, progress=False)
    assert hashlib.sha256(alone.codes[0].tobytes()).hexdigest() == m["codes_sha256"][1]


def test_metrics_fill_columns_and_are_added_on_rerun(tiny, tmp_path):
    g = mg.grid(["jazz", None], seed=[1], duration=0.5)
    m = mg.run_grid(g, model=tiny, out=tmp_path, metrics=["loudness"], progress=False)
    for rec in m.itertuples():
        wav, sr = mg.audio.load(tmp_path / rec.path)
        assert rec.loudness == pytest.approx(mg.audio.loudness(wav, sr))
    clap = mg.metrics.metric("clap_score", model="tiny-clap")
    m2 = mg.run_grid(g, model=tiny, out=tmp_path, metrics=[clap], progress=False)
    assert m2["run_id"].tolist() == m["run_id"].tolist()  # no clip generated again
    wav, sr = mg.audio.load(tmp_path / m2["path"][0])
    assert m2["clap_score"][0] == pytest.approx(
        mg.metrics.clap_score(wav, sr, ["jazz"], model="tiny-clap")[0]
    )
    assert np.isnan(m2["clap_score"][1])  # unconditional: no text to score
    assert m2["loudness"].tolist() == m["loudness"].tolist()


# --------------------------------------------------------------------------- CLI
SPEC = """\
model: tiny
batch_size: 4
prompts: [jazz, rock]
seed: [1, 2]
guidance_scale: [1.0, 3.0]
duration: 0.5
"""


def test_cli_grid_matches_the_python_call(tiny, tmp_path):
    from musicgen_nb.cli import main

    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    assert main(["grid", str(spec), "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    m = pd.read_parquet(tmp_path / "cli" / "manifest.parquet")
    ref = mg.run_grid(small_grid(), model=tiny, out=tmp_path / "py", progress=False)
    assert m["sha256"].tolist() == ref["sha256"].tolist()


def test_cli_grid_errors_are_one_line(tmp_path, capsys):
    from musicgen_nb.cli import main

    spec = tmp_path / "spec.yaml"
    spec.write_text("model: tiny\nprompts: [a]\nguidance: [1, 2]\n")
    assert main(["grid", str(spec), "--out", str(tmp_path / "o")]) == 2
    assert "unknown grid parameter 'guidance'" in capsys.readouterr().err


# --------------------------------------------------------------------------- Ray
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
    from musicgen_nb.grids_ray import actor_options

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


@pytest.mark.parametrize(
    "out, exc, match",
    [
        (None, TypeError, "out must be a file path"),
        ("", ValueError, "out is an empty string"),
    ],
)
def test_run_grid_checks_out_like_save(out, exc, match):
    with pytest.raises(exc, match=match):
        mg.run_grid(mg.grid(["a"], seed=[1], duration=0.5), model="tiny", out=out, progress=False)


def test_run_grid_refuses_a_file_as_out(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(NotADirectoryError, match="out '.*afile' is a file, not a folder"):
        mg.run_grid(mg.grid(["a"], seed=[1], duration=0.5), model="tiny", out=afile, progress=False)
    assert afile.read_text() == ""
