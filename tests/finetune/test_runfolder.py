"""The run folder of train(): claimed before anything is written, never someone else's."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from musicgen_nb.checkpoints.adapter import CHECKPOINT, CONFIG_FILE
from musicgen_nb.finetune.runfolder import (
    LOCK,
    MARKER,
    check_out,
    claim,
    compare_runs,
    has_checkpoint,
    mark_diverged,
    read_config,
    run_lock,
    write_config,
)


def test_a_folder_with_files_of_its_own_is_refused_untouched(tmp_path):
    mine = {"README.md": "# my notes", "history.csv": "a,b\n1,2\n", "adapter_config.json": "{}"}
    for name, text in mine.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(FileExistsError, match=r"did not write \(README.md, adapter_config.json, "
                                              r"history.csv\); nothing was changed"):  # fmt: skip
        check_out(tmp_path)
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == mine  # no marker either
    with pytest.raises(NotADirectoryError, match="is a file"):
        check_out(tmp_path / "README.md")


def test_new_empty_and_marked_folders_are_accepted(tmp_path):
    assert check_out(None) is None
    assert check_out(tmp_path / "new") == tmp_path / "new"
    assert check_out(tmp_path) == tmp_path
    run = claim(tmp_path / "new")
    assert (run / MARKER).is_file()
    (run / "README.md").write_text("ours to replace")
    assert check_out(run) == run
    temp = claim(None)
    assert (temp / MARKER).is_file() and temp.name.startswith("musicgen-finetune-")


def test_a_run_folder_from_before_the_marker_is_still_ours(tmp_path):
    cfg = dict(decoder_config={}, data="abc", status="done")
    (tmp_path / CONFIG_FILE).write_text(json.dumps(cfg))
    (tmp_path / "README.md").write_text("card")
    (tmp_path / CHECKPOINT).mkdir()
    assert check_out(tmp_path) == tmp_path
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt"):
        check_out(tmp_path)


def test_config_round_trip_and_damage_named(tmp_path):
    assert read_config(tmp_path) is None
    cfg = dict(
        status="training", lr=0.1, lora_rank=4, checkpoint="tiny", data="x", decoder_config={}
    )
    write_config(tmp_path, cfg)
    assert read_config(tmp_path) == cfg
    (tmp_path / CONFIG_FILE).write_text("{oops")
    with pytest.raises(ValueError, match=rf"{CONFIG_FILE} is damaged \(not JSON"):
        read_config(tmp_path)
    (tmp_path / CONFIG_FILE).write_text("[1]")  # the adapter reader's own check
    with pytest.raises(ValueError, match="is damaged \\(no lora_rank, checkpoint"):
        read_config(tmp_path)


def test_only_a_started_run_locks_its_settings(tmp_path):
    old, new = dict(lr=1.0, seed=0), dict(lr=2.0, seed=0)
    compare_runs(tmp_path, old, new, ("lr", "seed"), started=False)  # a failed start: replaced
    with pytest.raises(ValueError, match="differs in lr"):
        compare_runs(tmp_path, old, new, ("lr", "seed"), started=True)
    compare_runs(tmp_path, old | dict(status="diverged"), new, ("lr",), started=True)
    with pytest.raises(ValueError, match="differs in seed"):
        compare_runs(tmp_path, old | dict(status="diverged"), new | dict(seed=1),
                     ("lr", "seed"), started=True)  # fmt: skip
    assert not has_checkpoint(tmp_path)
    (tmp_path / f".{CHECKPOINT}.old").mkdir()
    assert has_checkpoint(tmp_path)


def test_mark_diverged_records_the_step_and_the_last_good_checkpoint(tmp_path):
    from types import SimpleNamespace

    (tmp_path / CHECKPOINT).mkdir()
    (tmp_path / CHECKPOINT / "state.json").write_text(json.dumps(dict(step=3, history=[])))
    ft = SimpleNamespace(
        out=tmp_path, config=dict(lr=0.5), history=[dict(step=1, loss=1.0, accuracy=0.0)]
    )
    err = mark_diverged(ft, "the loss is nan", 4)
    assert isinstance(err, FloatingPointError)
    assert str(err).startswith("training diverged at step 4: the loss is nan. Nothing was saved")
    assert "last good checkpoint (step 3)" in str(err) and "Lower lr (now 0.5)" in str(err)
    cfg = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert (cfg["status"], cfg["diverged_at"], cfg["last_good"]) == ("diverged", 4, 3)
    assert (tmp_path / "history.csv").read_text().splitlines()[1] == "1,1.0,0.0"


def test_claim_checks_again_and_two_claims_of_one_new_folder_do_not_both_win(tmp_path):
    out = tmp_path / "run"
    assert check_out(out) == out and check_out(out) == out  # two runs see a new folder
    claim(out)  # the first takes it
    with pytest.raises(FileExistsError, match="taken by another training run"):
        claim(out)  # the second is refused
    assert claim(out, marked=True) == out  # a run that found our marker resumes
    mine = tmp_path / "b"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt"):
        claim(mine, marked=True)  # check_out runs again in claim
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_a_step_0_checkpoint_counts_and_a_damaged_state_is_named(tmp_path):
    from types import SimpleNamespace

    (tmp_path / CHECKPOINT).mkdir()
    state = tmp_path / CHECKPOINT / "state.json"
    state.write_text(json.dumps(dict(step=0, history=[])))
    ft = SimpleNamespace(out=tmp_path, config=dict(lr=0.5), history=[])
    assert "the last good checkpoint (step 0) is kept" in str(mark_diverged(ft, "nan", 1))
    state.write_text("{oops")
    err = str(mark_diverged(ft, "nan", 1))
    assert f"{state} is damaged (JSONDecodeError)" in err


def test_one_run_at_a_time_holds_the_folder(tmp_path):
    with run_lock(tmp_path):
        with pytest.raises(
            RuntimeError, match=rf"in use by another training run \(.* pid {os.getpid()}\)"
        ):
            with run_lock(tmp_path):
                pass
        assert (tmp_path / LOCK).exists()
    assert not (tmp_path / LOCK).exists()
    # The lock of a killed run (its pid is gone) is taken over.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    (tmp_path / LOCK).write_text(f"{socket.gethostname()} {dead}")
    with run_lock(tmp_path):
        assert (tmp_path / LOCK).read_text() == f"{socket.gethostname()} {os.getpid()}"
