"""The result of a fine-tune: the run folder, model card, provenance, merged models."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from _finetune import STEPS, TRAIN

import musicgen_nb as mg
from musicgen_nb import finetune as FT
from musicgen_nb._util.files import sha256_file
from musicgen_nb.checkpoints.adapter import (
    CARD_FILE,
    CHECKPOINT,
    CONFIG_FILE,
    HISTORY_FILE,
    LORA_WEIGHTS,
)
from musicgen_nb.finetune.result import model_card, write_history

pytest.importorskip("peft")


def test_save_load_gives_identical_logits(trained, s, data):
    ft, _, _ = trained
    wins = data.encode(s)
    codes, texts = [w.codes for w in wins], [w.text for w in wins]
    loaded = mg.load("tiny", adapter=ft.out)
    merged = ft.merge()
    got = FT.logits(loaded, codes, texts)
    assert torch.equal(got, FT.logits(merged, codes, texts))
    torch.testing.assert_close(got, FT.logits(ft, codes, texts), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(got, FT.logits(s, codes, texts), atol=1e-2)
    # Plain weights: no peft layer is left, and the engine runs the merged model.
    assert all(
        type(m).__module__.startswith(("torch", "transformers")) for m in merged.model.modules()
    )
    g = merged.generate(texts[0], duration=0.2, seed=3, progress=False)
    h = loaded.generate(texts[0], duration=0.2, seed=3, progress=False)
    np.testing.assert_array_equal(g.codes, h.codes)


def test_sidecars_name_the_adapter(trained, tmp_path):
    ft, _, _ = trained
    s2 = mg.load("tiny", adapter=ft.out)
    assert s2.provenance["adapter"]["path"] == str(ft.out.resolve())
    (path,) = s2.generate("x", duration=0.2, seed=1, progress=False).save(tmp_path)
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["adapter"]["sha256"] == sha256_file(ft.out / LORA_WEIGHTS)
    assert side["adapter"]["kind"] == "lora" and side["adapter"]["steps"] == STEPS
    plain = mg.load("tiny").generate("x", duration=0.2, seed=1, progress=False).provenance()
    assert "adapter" not in plain


def test_run_folder_holds_adapter_config_and_card(trained, data):
    ft, _, _ = trained
    names = {p.name for p in ft.out.iterdir()}
    assert {LORA_WEIGHTS, "adapter_config.json", CONFIG_FILE, CARD_FILE,
            HISTORY_FILE, CHECKPOINT} <= names  # fmt: skip
    cfg = json.loads((ft.out / CONFIG_FILE).read_text())
    assert cfg["steps_done"] == STEPS and cfg["data_files"] == 2 and cfg["base"] == "tiny"
    card = (ft.out / CARD_FILE).read_text()
    assert "`tiny`" in card and f"{STEPS} (batch size 2" in card and "2 files" in card
    assert f"{cfg['final_loss']:.4f}" in card
    assert len((ft.out / HISTORY_FILE).read_text().splitlines()) == STEPS + 1
    # Same folder, same run, no more steps: nothing is retrained.
    again = FT.train(ft.base, data, out=ft.out, **TRAIN)
    assert again.step == STEPS and len(again.history) == STEPS
    with pytest.raises(ValueError, match="differs in lr"):
        FT.train(ft.base, data, out=ft.out, **(TRAIN | dict(lr=1e-3)))


def test_merge_can_save_a_plain_checkpoint(trained, tmp_path):
    ft, _, _ = trained
    target = tmp_path / "merged"
    merged = ft.merge(target)
    again = mg.load(target, precision="int8")
    assert again.provenance["adapter"]["sha256"] == merged.provenance["adapter"]["sha256"]
    assert again.generate("x", duration=0.2, seed=0, progress=False).codes.shape == (1, 4, 10)
    with pytest.raises(FileExistsError, match="exists"):
        ft.merge(target)


def test_fine_tune_repr_frame_and_figure(trained):
    ft, _, _ = trained
    assert repr(ft).startswith(f"FineTune('tiny', LoRA r=16, {STEPS} steps, loss ")
    frame = ft.history_frame()
    assert list(frame.columns) == ["step", "loss", "accuracy"] and len(frame) == STEPS
    fig = ft.loss_figure()
    assert list(fig.data[0].y) == [r["loss"] for r in ft.history]
    assert ft.provenance["steps"] == STEPS


def test_history_file_round_trips_the_floats(tmp_path):
    rows = [dict(step=1, loss=0.1 + 0.2, accuracy=1 / 3), dict(step=2, loss=2.5, accuracy=0.5)]
    write_history(tmp_path, rows)
    lines = (tmp_path / HISTORY_FILE).read_text().splitlines()
    assert lines[0] == "step,loss,accuracy"
    step, loss, acc = lines[1].split(",")
    assert (int(step), float(loss), float(acc)) == (1, rows[0]["loss"], rows[0]["accuracy"])
    write_history(tmp_path, rows[:1])  # a later write replaces the file
    assert len((tmp_path / HISTORY_FILE).read_text().splitlines()) == 2
    assert [p.name for p in tmp_path.iterdir()] == [HISTORY_FILE]  # no temporary file left


def test_model_card_names_base_kind_data_and_loss():
    cfg = dict(base="small", checkpoint="facebook/musicgen-small", lora_rank=8, data_files=3,
               data_windows=7, data_seconds=21.5, steps_done=40, batch_size=4, lr=2e-4, seed=1,
               final_loss=None, condition_dropout=0.1, precision="bf16", finished="2024-01-01",
               captions=["warm pad", "fast drums"])  # fmt: skip
    card = model_card(cfg)
    assert card.startswith("# MusicGen fine-tune of `small`")
    assert "| kind | LoRA, rank 8 |" in card and "| final loss | n/a" in card
    assert "3 files, 7 windows, 21.5 s" in card and "40 (batch size 4, lr 0.0002, seed 1)" in card
    assert "- warm pad\n- fast drums" in card
    assert "mg.load('facebook/musicgen-small', adapter=" in card


def test_a_finished_run_stays_loadable_after_a_rerun_with_nothing_to_do(trained, data):
    ft, _, _ = trained
    before = (ft.out / CONFIG_FILE).read_text()
    again = FT.train(ft.base, data, out=ft.out, **(TRAIN | dict(steps=STEPS - 20)))
    assert again.step == STEPS and (ft.out / CONFIG_FILE).read_text() == before
    assert mg.load("tiny", adapter=ft.out).provenance["adapter"]["steps"] == STEPS


def test_merge_names_a_bad_directory(trained):
    ft, _, _ = trained
    with pytest.raises(
        TypeError,
        match="directory must be a folder path to save the merged model in, or None; got int 5",
    ):
        ft.merge(5)


def test_a_killed_runs_adapter_folder_is_removed_a_live_ones_kept(s, data, tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        FT.train(s, data, out=tmp_path, steps=1, progress=False)
        for pid in (live.pid, dead):
            (tmp_path / f".adapter.tmp{pid}").mkdir()
        FT.train(s, data, out=tmp_path, steps=2, progress=False)  # finishes: writes the adapter
        assert sorted(p.name for p in tmp_path.glob(".adapter.tmp*")) == [f".adapter.tmp{live.pid}"]
    finally:
        live.kill()
        live.wait()
