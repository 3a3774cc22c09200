"""The run folder: resumes after a crash or kill -9, holds its lock, keeps its settings."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
from _grids import ROOT, check_run, small_grid

import musicgen_nb as mg
from musicgen_nb.grids.journal import JOURNAL, MANIFEST, MANIFEST_CSV, RunFolder, read_config


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
        res = dict(clip_id=row["clip_id"], data=b"RIFF-data", worker="w", duration_s=0.5,
                   sample_rate=32000)  # fmt: skip
        assert not (tmp_path / "run.json").exists()  # written with the first clip
        rec = run.commit(row, res, "r1")
        assert (tmp_path / rec["path"]).read_bytes() == b"RIFF-data"
        assert rec["path"].startswith("audio/jazz_seed1_") and rec["run_id"] == "r1"
        run.add_metrics(row["clip_id"], {"loudness": -20.0})
        m = run.manifest([row["clip_id"]])
        assert m["loudness"].tolist() == [-20.0] and (tmp_path / MANIFEST).exists()
        assert (tmp_path / MANIFEST_CSV).exists() and (tmp_path / "run.json").exists()
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


def test_run_folder_never_journals_a_short_clip(tmp_path):
    row = mg.grid(["jazz"], seed=[1], duration=0.5).to_dict("records")[0]
    run = RunFolder(tmp_path, dict(model="tiny", fmt="wav"))
    try:
        short = dict(clip_id=row["clip_id"], data=b"RIFF", duration_s=0.46, sample_rate=32000)
        with pytest.raises(RuntimeError, match=r"is 0\.460 s of 0\.5 s \(interrupted\): not saved"):
            run.commit(row, short, "r1")
    finally:
        run.release()
    assert not (tmp_path / JOURNAL).exists() and not list((tmp_path / "audio").iterdir())


# --------------------------------------------------------------------------- damaged or hostile folders
def _journal_line(tmp_path, tiny, **change):
    """A run of one clip whose journal line is then changed; the journal's path."""
    mg.run_grid(small_grid().head(1), model=tiny, out=tmp_path, progress=False)
    journal = tmp_path / JOURNAL
    rec = json.loads(journal.read_text().splitlines()[0])
    journal.write_text(json.dumps(dict(rec, **change)) + "\n")
    return journal


@pytest.mark.parametrize("path", ["../outside.wav", "/etc/hostname", "audio/../../outside.wav",
                                  "audio/sub/x.wav", "outside.wav", "audio/link.wav"])  # fmt: skip
def test_journal_paths_outside_the_folder_are_refused(tiny, tmp_path, path):
    out = tmp_path / "run"  # "outside" is tmp_path itself: the test writes only under tmp_path
    outside = tmp_path / "outside.wav"
    outside.write_bytes(b"RIFF secret")
    (out / "audio").mkdir(parents=True)
    (out / "audio" / "link.wav").symlink_to(outside)
    journal = _journal_line(out, tiny, path=path, sha256=hashlib.sha256(b"RIFF secret").hexdigest())
    with pytest.raises(
        ValueError, match=rf"{re.escape(str(journal))}:1: path '{re.escape(path)}' points outside"
    ):
        mg.run_grid(small_grid().head(1), model=tiny, out=out, progress=False)
    assert not (out / ".lock").exists() and outside.read_bytes() == b"RIFF secret"


@pytest.mark.parametrize("name", ["audio", JOURNAL, "run.json"])
def test_symlinked_run_files_are_refused(tiny, tmp_path, name):
    out, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    leftover = elsewhere / ".x.wav.1.tmp"  # what a run's cleanup would delete in its audio/
    leftover.write_bytes(b"keep")
    target = elsewhere if name == "audio" else elsewhere / name
    if name == "run.json":
        target.write_text(json.dumps(dict(model="tiny", fmt="wav")))
    (out / name).symlink_to(target)
    before = sorted(p.name for p in elsewhere.iterdir())
    with pytest.raises(ValueError, match=rf"{re.escape(str(out / name))}' is a symlink"):
        mg.run_grid(small_grid().head(1), model=tiny, out=out, progress=False)
    assert (
        sorted(p.name for p in elsewhere.iterdir()) == before and leftover.read_bytes() == b"keep"
    )
    assert not (out / ".lock").exists()


def test_a_journal_linked_after_the_start_is_not_followed(tmp_path):
    row = mg.grid(["jazz"], seed=[1], duration=0.5).to_dict("records")[0]
    outside = tmp_path / "outside.jsonl"
    outside.write_text("")
    run = RunFolder(tmp_path / "run", dict(model="tiny", fmt="wav"))
    try:
        (run.dir / JOURNAL).symlink_to(outside)  # swapped in while the run is going
        res = dict(clip_id=row["clip_id"], data=b"RIFF", duration_s=0.5, sample_rate=32000)
        with pytest.raises(OSError):
            run.commit(row, res, "r1")
    finally:
        run.release()
    assert outside.read_text() == ""


def test_a_clip_is_compared_with_the_folders_settings(tmp_path):
    row = mg.grid(["jazz"], seed=[1], duration=0.5).to_dict("records")[0]
    res = dict(clip_id=row["clip_id"], duration_s=0.5, sample_rate=32000, standin=None,
               adapter=None, precision="bf16")  # fmt: skip
    run = RunFolder(tmp_path / "a", dict(model="tiny", fmt="wav", precision="fp32", standin=None,
                                         adapter=None))  # fmt: skip
    try:  # the folder holds no clip yet: its settings still say what it takes
        with pytest.raises(ValueError, match="precision='fp32', and this one has precision='bf16'"):
            run.commit(row, dict(res, data=b"RIFF"), "r1")
        with pytest.raises(ValueError, match="standin=None, and this one has standin='tiny'"):
            run.commit(row, dict(res, data=b"RIFF", precision="fp32", standin="tiny"), "r1")
    finally:
        run.release()
    assert not (tmp_path / "a" / JOURNAL).exists()
    auto = RunFolder(tmp_path / "b", dict(model="tiny", fmt="wav", precision="auto"))
    try:  # "auto" (a Ray run on an unknown device) takes the precision the workers picked
        assert auto.commit(row, dict(res, data=b"RIFF"), "r1")["precision"] == "bf16"
    finally:
        auto.release()


def test_an_empty_manifest_has_every_column(tmp_path):
    run = RunFolder(tmp_path, dict(model="tiny", fmt="wav"))
    try:
        m = run.manifest([])
    finally:
        run.release()
    assert {"model", "standin", "precision", "adapter", "run_id"} <= set(m.columns)
    assert list(pd.read_csv(tmp_path / MANIFEST_CSV).columns) == list(m.columns)


@pytest.mark.parametrize(
    "line, match",
    [
        (b"\xff\xfe not utf-8", "not a JSON record \\(UnicodeDecodeError"),
        (b"{not json", "not a JSON record \\(JSONDecodeError"),
        (
            b'{"clip_id": "x", "prompt": "a", "seed": 1, "sha256": "0"}',
            r"the record lacks \['path'\]",
        ),
        (b"[1, 2]", "a journal record must be an object with a clip_id"),
        (b'{"clip_id": "x", "metrics": 3}', "'metrics' must be an object"),
    ],
)
def test_corrupt_journal_lines_name_the_file_and_line(tiny, tmp_path, line, match):
    journal = _journal_line(tmp_path, tiny)
    good = journal.read_bytes()
    journal.write_bytes(good + line + b"\n" + good)
    with pytest.raises(ValueError, match=rf"{re.escape(str(journal))}:2: {match}"):
        mg.run_grid(small_grid().head(1), model=tiny, out=tmp_path, progress=False)
    assert journal.read_bytes() == good + line + b"\n" + good  # left as it is, for the user


@pytest.mark.parametrize("text, match", [(b'{"model": ', r"run\.json:1: damaged"),
                                         (b"\xff", r"run\.json: damaged \(not UTF-8"),
                                         (b"[]", r"run\.json: damaged \(not a JSON object")])  # fmt: skip
def test_a_corrupt_run_json_names_the_file(tiny, tmp_path, text, match):
    mg.run_grid(small_grid().head(1), model=tiny, out=tmp_path, progress=False)
    (tmp_path / "run.json").write_bytes(text)
    with pytest.raises(ValueError, match=match):
        mg.run_grid(small_grid().head(1), model=tiny, out=tmp_path, progress=False)
    with pytest.raises(ValueError, match=match):
        read_config(tmp_path / "run.json")


@pytest.mark.parametrize("model, exc, match", [("nosuch", ValueError, "unknown model 'nosuch'"),
                                               ("nobody/musicgen-nothing", Exception, "nobody/musicgen-nothing")])  # fmt: skip
def test_a_failed_start_locks_nothing_in(tiny, tmp_path, model, exc, match):
    out = tmp_path / "run"
    with pytest.raises(exc, match=match):
        mg.run_grid(small_grid().head(1), model=model, out=out, progress=False)
    assert not (out / "run.json").exists() and not (out / JOURNAL).exists()
    m = mg.run_grid(
        small_grid().head(1), model="tiny", out=out, progress=False
    )  # the corrected call
    check_run(out, m)


def test_another_grid_into_the_same_out_never_returns_the_old_rows(tiny, tmp_path):
    first = mg.run_grid(small_grid().head(2), model=tiny, out=tmp_path, progress=False)
    other = mg.run_grid(small_grid().iloc[1:3], model=tiny, out=tmp_path, progress=False)
    assert other["clip_id"].tolist() == small_grid()["clip_id"].iloc[1:3].tolist()
    assert pd.read_csv(tmp_path / MANIFEST_CSV)["clip_id"].tolist() == other["clip_id"].tolist()
    assert other["sha256"].iloc[0] == first["sha256"].iloc[1]  # the shared row is not made again
    assert other["run_id"].iloc[0] == first["run_id"].iloc[0] != other["run_id"].iloc[1]
    again = mg.run_grid(small_grid().head(2), model=tiny, out=tmp_path, progress=False)
    pd.testing.assert_frame_equal(again, first)  # each grid gets exactly its own rows back


def test_precisions_never_mix_in_one_folder(tiny, tmp_path):
    g = small_grid().head(1)
    m = mg.run_grid(g, model="tiny", out=tmp_path, progress=False)
    assert m["precision"].tolist() == ["fp32"] and m["adapter"].isna().all()
    assert read_config(tmp_path / "run.json")["precision"] == "fp32"
    with pytest.raises(ValueError, match="precision: 'fp32' there, 'bf16' now"):
        mg.run_grid(g, model="tiny", precision="bf16", out=tmp_path, progress=False)
    with pytest.raises(ValueError, match="precision: 'fp32' there, 'bf16' now"):
        mg.run_grid(g, model=mg.load("tiny", precision="bf16"), out=tmp_path, progress=False)


def test_adapter_and_base_runs_never_mix(tiny, tmp_path):
    pytest.importorskip("peft")
    from musicgen_nb import finetune as FT

    data = FT.dataset(
        FT.synth_dataset(tmp_path / "data", seconds=1.0), cache_dir=tmp_path / "codes"
    )
    FT.train(tiny, data, out=tmp_path / "lora", steps=2, batch_size=2, seed=0, progress=False)
    g = small_grid().head(1)
    m = mg.run_grid(
        g, model="tiny", adapter=tmp_path / "lora", out=tmp_path / "run", progress=False
    )
    assert m["adapter"].tolist() == [str((tmp_path / "lora").resolve())]
    with pytest.raises(ValueError, match="adapter: '.*lora' there, None now"):
        mg.run_grid(g, model="tiny", out=tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="adapter: '.*lora' there, None now"):
        mg.run_grid(g, model=tiny, out=tmp_path / "run", progress=False)


def test_a_standin_run_says_so(tmp_path):
    from musicgen_nb.checkpoints.standins import standin_for, use_standins

    with use_standins():
        m = mg.run_grid(small_grid().head(1), model="small", out=tmp_path, progress=False)
        name = standin_for("small")  # the offline checkpoint that stands in for it
    assert name is not None
    assert m["model"].tolist() == ["small"] and m["standin"].tolist() == [name]
    assert read_config(tmp_path / "run.json")["standin"] == name
    assert pd.read_csv(tmp_path / MANIFEST_CSV)["standin"].tolist() == [name]
    with use_standins(False), pytest.raises(ValueError, match=f"standin: '{name}' there, None now"):
        mg.run_grid(small_grid().head(1), model="small", out=tmp_path, progress=False)
