"""The run folder: resumes after a crash or kill -9, holds its lock, keeps its settings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from _grids import ROOT, check_run, small_grid

import musicgen_nb as mg
from musicgen_nb.grids.journal import JOURNAL, MANIFEST, RunFolder


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


# --------------------------------------------------------------------------- RunFolder directly
def test_run_folder_commits_journals_and_writes_the_manifest(tmp_path):
    row = mg.grid(["jazz"], seed=[1], duration=0.5).to_dict("records")[0]
    run = RunFolder(tmp_path, dict(model="tiny", fmt="wav"))
    try:
        rec = run.commit(row, dict(clip_id=row["clip_id"], data=b"RIFF-data", worker="w"), "r1")
        assert (tmp_path / rec["path"]).read_bytes() == b"RIFF-data"
        assert rec["path"].startswith("audio/jazz_seed1_") and rec["run_id"] == "r1"
        run.add_metrics(row["clip_id"], {"loudness": -20.0})
        m = run.manifest([row["clip_id"]])
        assert m["loudness"].tolist() == [-20.0] and (tmp_path / MANIFEST).exists()
    finally:
        run.release()
    lines = (tmp_path / JOURNAL).read_text().splitlines()
    assert [json.loads(x).get("metrics") for x in lines] == [None, {"loudness": -20.0}]
    again = RunFolder(tmp_path, dict(model="tiny", fmt="wav"))  # the journal is read back
    try:
        assert again.done[row["clip_id"]]["loudness"] == -20.0
    finally:
        again.release()
    assert not (tmp_path / ".lock").exists() and not list(tmp_path.rglob("*.tmp"))
