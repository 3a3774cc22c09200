"""Training on the offline ``tiny`` checkpoint: accuracy, adapters at every precision, resume.

The shared LoRA run (``trained``, tests/finetune/conftest.py) backs the tests of the
"Done when" list.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _finetune import SHORT, STEPS, TRAIN, assert_same_weights

import musicgen_nb as mg
from musicgen_nb import finetune as FT
from musicgen_nb.checkpoints.adapter import CHECKPOINT, FULL_WEIGHTS, LORA_WEIGHTS
from musicgen_nb.finetune.weights import trainable

pytest.importorskip("peft")

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------- done when
def test_accuracy_rises_from_chance(trained, data):
    ft, before, _ = trained
    assert before < 0.02  # chance is 1/2048
    assert FT.token_accuracy(ft, data) >= 0.9
    assert ft.history[-1]["loss"] < ft.history[0]["loss"] / 5
    assert ft.step == STEPS and not ft.interrupted


def test_base_weights_unchanged(trained, s, base_state):
    state = s.model.state_dict()
    assert set(state) == set(base_state)
    for k, v in base_state.items():
        assert torch.equal(state[k], v), k
    assert all(type(m).__module__.startswith(("torch", "transformers")) for m in s.model.modules())


def test_guidance_still_changes_the_output(trained, data):
    ft, _, _ = trained
    s2 = mg.load("tiny", adapter=ft.out)
    text = data.items[0].text
    kw = dict(duration=0.5, seed=5, progress=False)
    guided = s2.generate(text, guidance_scale=3.0, **kw).codes
    plain = s2.generate(text, guidance_scale=1.0, **kw).codes
    assert (guided != plain).mean() > 0.1
    uncond = s2.generate(None, guidance_scale=1.0, **kw).codes
    assert (uncond != plain).mean() > 0.1  # the caption still matters


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_engine_runs_the_adapter_at_every_precision(trained, data, precision):
    ft, _, _ = trained
    text = data.items[0].text
    tuned = mg.load("tiny", adapter=ft.out, precision=precision)
    base = mg.load("tiny", precision=precision)
    kw = dict(duration=0.5, seed=2, progress=False)
    a, b = tuned.generate(text, **kw), base.generate(text, **kw)
    assert a.codes.shape == b.codes.shape == (1, 4, 25)
    assert (a.codes != b.codes).mean() > 0.1
    # The fine-tune learned its clip: greedy decoding on the adapter follows it.
    win = data.encode(ft.base)[0]
    greedy = tuned.generate(text, duration=0.4, do_sample=False, guidance_scale=1.0, progress=False)
    assert (greedy.codes[0] == win.codes[:, :20]).mean() > 0.6


def test_interrupt_then_resume_gives_the_same_adapter(trained, s, data, tmp_path):
    ft, _, at_short = trained
    run = TRAIN | dict(steps=SHORT)

    def stop_at(step, loss):
        if step == 25:
            raise KeyboardInterrupt

    with pytest.warns(UserWarning, match="stopped at step 25") as rec:
        part = FT.train(s, data, out=tmp_path, callback=stop_at, **run)
    assert rec[0].filename == __file__  # the warning points at the call of train()
    assert part.interrupted and part.step == 25
    assert json.loads((tmp_path / CHECKPOINT / "state.json").read_text())["step"] == 25
    with pytest.raises(ValueError, match="unfinished run"):
        mg.load("tiny", adapter=tmp_path)
    done = FT.train(s, data, out=tmp_path, **run)
    assert done.step == SHORT and not done.interrupted
    assert_same_weights(tmp_path / CHECKPOINT / "trainable.safetensors", at_short)
    assert [r["loss"] for r in done.history] == [r["loss"] for r in ft.history[:SHORT]]
    # Asking for more steps in the same folder continues the same run.
    more = FT.train(s, data, out=tmp_path, **(run | dict(steps=SHORT + 5)))
    assert more.step == SHORT + 5
    assert [r["loss"] for r in more.history] == [r["loss"] for r in ft.history[: SHORT + 5]]


def test_kill_9_then_resume_gives_the_same_adapter(trained, s, data, folder, tmp_path):
    _, _, at_short = trained
    run = TRAIN | dict(steps=SHORT, save_every=5)
    code = (
        "import musicgen_nb as mg\n"
        "from musicgen_nb import finetune as FT\n"
        f"data = FT.dataset({str(folder)!r}, cache_dir={str(data.cache_dir)!r})\n"
        f"FT.train(mg.load('tiny'), data, out={str(tmp_path)!r}, **{run!r})\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
    state = tmp_path / CHECKPOINT / "state.json"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if state.exists() and json.loads(state.read_text())["step"] >= 10:
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    killed_at = json.loads(state.read_text())["step"]
    assert 10 <= killed_at < SHORT and not (tmp_path / LORA_WEIGHTS).exists()
    done = FT.train(s, data, out=tmp_path, **run)
    assert done.step == SHORT
    assert_same_weights(tmp_path / CHECKPOINT / "trainable.safetensors", at_short)


# ---------------------------------------------------------------------------- the rest
def test_full_fine_tune_round_trip(s, data, tmp_path, base_state):
    ft = FT.train(s, data, out=tmp_path, lora_rank=None, **(TRAIN | dict(steps=5, lr=1e-3)))
    assert (tmp_path / FULL_WEIGHTS).exists()
    wins = data.encode(s)[:1]
    codes, texts = [w.codes for w in wins], [w.text for w in wins]
    loaded = mg.load("tiny", adapter=tmp_path)
    assert loaded.provenance["adapter"]["kind"] == "full"
    assert torch.equal(FT.logits(loaded, codes, texts), FT.logits(ft.merge(), codes, texts))
    assert torch.equal(s.model.decoder.lm_heads[0].weight, base_state["decoder.lm_heads.0.weight"])


def test_bf16_autocast_training_runs(s, data, tmp_path):
    ft = FT.train(s, data, out=tmp_path, precision="bf16", **(TRAIN | dict(steps=3)))
    assert ft.config["precision"] == "bf16" and all(np.isfinite(r["loss"]) for r in ft.history)
    assert ft.history[-1]["loss"] < ft.history[0]["loss"]


def test_bad_arguments_name_themselves(s, data, tmp_path):
    cases = [
        (dict(steps=0), "steps must be an int >= 1"),
        (dict(lora_rank=0), "lora_rank must be an int >= 1, or None"),
        (dict(condition_dropout=1.0), "condition_dropout must be in"),
        (dict(precision="fp8"), "precision must be one of"),
        (dict(lr=-1.0), "lr must be a positive number, got -1.0"),
    ]
    for kw, msg in cases:
        with pytest.raises((ValueError, TypeError), match=msg):
            FT.train(s, data, out=tmp_path, progress=False, **kw)
    with pytest.raises(TypeError, match="data must be a Dataset"):
        FT.train(s, "folder", out=tmp_path)
    with pytest.raises(ValueError, match="precision='int8', which cannot be trained"):
        FT.train(mg.load("tiny", precision="int8"), data, out=tmp_path)
    from musicgen_nb.engine import kernel_available

    if kernel_available():
        with pytest.raises(ValueError, match="precision='int4', which cannot be trained"):
            FT.train(mg.load("tiny", precision="int4"), data, out=tmp_path)
    with pytest.raises(ValueError, match="not a fine-tune folder"):
        mg.load("tiny", adapter=tmp_path)


def test_more_bad_arguments_name_themselves(s, data, tmp_path):
    cases = [
        (dict(batch_size=1.5), TypeError, "batch_size must be an int >= 1, got 1.5"),
        (dict(seed=-1), ValueError, "seed must be an int >= 0, got -1"),
        (dict(condition_dropout="0.1"), TypeError, "condition_dropout must be a number"),
        (dict(lora_rank=True), ValueError, "lora_rank must be an int >= 1, or None"),
    ]
    for kw, err, msg in cases:
        with pytest.raises(err, match=msg):
            FT.train(s, data, out=tmp_path, progress=False, **kw)
    with pytest.raises(TypeError, match="s must be a MusicGen"):
        FT.train("tiny", data, out=tmp_path)
    with pytest.raises(ValueError, match="is a melody model"):
        FT.train(mg.load("tiny-melody"), data, out=tmp_path)
    assert not any(tmp_path.iterdir())  # every check runs before the run folder is written


def test_bench_train_measures_both_modes():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_train
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    rows = [
        bench_train.measure("tiny", mode, seconds=0.5, batch_size=1, steps=1)
        for mode in ("lora", "full")
    ]
    lora, full = rows
    assert lora["trainable_params"] < full["trainable_params"] == full["decoder_params"]
    assert all(r["steps_per_s"] > 0 and r["peak_rss_gb"] > 0 for r in rows)


# ---------------------------------------------------------------------------- hardening
QUICK = dict(lr=1e-2, batch_size=2, seed=0, progress=False)


def test_every_argument_is_checked_before_anything_is_written(s, data, tmp_path):
    out = tmp_path / "run"
    bad = [dict(weight_decay=-1.0), dict(weight_decay=float("nan")), dict(callback=5),
           dict(lora_alpha=float("nan")), dict(lora_alpha=-5), dict(lora_alpha=0),
           dict(save_every=0), dict(gradient_checkpointing="yes")]  # fmt: skip
    for kw in bad:
        with pytest.raises((ValueError, TypeError), match=next(iter(kw))):
            FT.train(s, data, out=out, steps=2, **(QUICK | kw))
        assert not out.exists()
    ft = FT.train(s, data, out=out, steps=2, weight_decay=0.01, lora_alpha=8, **QUICK)
    assert ft.config["weight_decay"] == 0.01 and ft.config["lora_alpha"] == 8.0


def test_a_failed_start_does_not_lock_out_the_corrected_call(s, data, tmp_path):
    def boom(step, loss):
        raise RuntimeError("my callback failed")

    with pytest.raises(RuntimeError, match="my callback failed"):
        FT.train(s, data, out=tmp_path, steps=3, callback=boom, **QUICK)
    assert json.loads((tmp_path / "training_config.json").read_text())["status"] == "training"
    ft = FT.train(s, data, out=tmp_path, steps=2, **(QUICK | dict(lr=5e-3)))  # no checkpoint yet
    assert ft.step == 2 and ft.config["lr"] == 5e-3


def test_out_with_the_users_own_files_is_refused_before_training(s, data, tmp_path):
    mine = {"README.md": "# my project", "history.csv": "x\n", "adapter_config.json": "{}"}
    for name, text in mine.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(FileExistsError, match="README.md, adapter_config.json, history.csv"):
        FT.train(s, data, out=tmp_path, steps=1, **QUICK)
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == mine


def test_files_follow_the_umask(s, data, tmp_path):
    old = os.umask(0o027)
    try:
        FT.train(s, data, out=tmp_path, steps=2, save_every=1, **QUICK)
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {LORA_WEIGHTS, "trainable.safetensors", "README.md"}
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in files}
    assert set(modes.values()) == {"0o640"}, modes


class _BlowUp:
    """From ``at`` on, every LM head of the decoder outputs NaN: a run that diverges."""

    def __init__(self, at):
        self.at, self.on = at, False
        self.handle = torch.nn.modules.module.register_module_forward_hook(self.hook)

    def hook(self, module, args, output):
        if self.on and isinstance(module, torch.nn.Linear) and output.shape[-1] == 2048:
            return output * float("nan")
        return None

    def callback(self, step, loss):
        self.on = step >= self.at


def test_a_diverged_run_stops_and_keeps_its_last_good_checkpoint(s, data, tmp_path):
    blow = _BlowUp(at=3)
    try:
        with pytest.raises(FloatingPointError, match=r"diverged at step 4: the loss is nan") as err:
            FT.train(s, data, out=tmp_path, steps=10, save_every=1, callback=blow.callback, **QUICK)
    finally:
        blow.handle.remove()
    assert "the last good checkpoint (step 3) is kept" in str(err.value)
    cfg = json.loads((tmp_path / "training_config.json").read_text())
    assert (cfg["status"], cfg["diverged_at"], cfg["last_good"]) == ("diverged", 4, 3)
    assert json.loads((tmp_path / CHECKPOINT / "state.json").read_text())["step"] == 3
    assert not (tmp_path / LORA_WEIGHTS).exists()  # never saved as an adapter
    with pytest.raises(ValueError, match="diverged at step 4"):
        mg.load("tiny", adapter=tmp_path)
    # Resumed from step 3 with a lower lr, it finishes and the adapter generates.
    ft = FT.train(s, data, out=tmp_path, steps=5, **(QUICK | dict(lr=5e-3)))
    assert ft.step == 5 and [r["step"] for r in ft.history] == [1, 2, 3, 4, 5]
    tuned = mg.load("tiny", adapter=tmp_path)
    assert np.isfinite(tuned.generate("x", duration=0.2, seed=0, progress=False).audio).all()


def test_weights_that_blow_up_are_never_checkpointed(s, data, tmp_path):
    # lr 1e30: the first step's loss and gradients are finite, its new weights give NaN.
    with pytest.raises(
        FloatingPointError, match=r"diverged at step 1: its weights give a loss of"
    ) as err:
        FT.train(s, data, out=tmp_path, steps=3, save_every=1, **(QUICK | dict(lr=1e30)))
    assert "no checkpoint was good enough to keep" in str(err.value)
    assert not (tmp_path / CHECKPOINT).exists()
    assert json.loads((tmp_path / "training_config.json").read_text())["last_good"] is None
    # A gradient that is not finite stops the run before the weights change.
    with pytest.raises(FloatingPointError, match=r"diverged at step 1: the gradient norm is inf"):
        FT.train(s, data, out=tmp_path / "b", steps=3, lora_alpha=1e38, **QUICK)


def test_fp16_training_with_loss_scaling_runs(s, data, tmp_path):
    ft = FT.train(s, data, out=tmp_path, precision="fp16", **(TRAIN | dict(steps=12)))
    assert ft.config["precision"] == "fp16" and all(np.isfinite(r["loss"]) for r in ft.history)
    assert ft.history[-1]["loss"] < ft.history[0]["loss"]
    state = json.loads((tmp_path / CHECKPOINT / "state.json").read_text())
    assert state["scaler"]["scale"] > 0 and "_growth_tracker" in state["scaler"]  # for a resume
    assert np.isfinite(
        mg.load("tiny", adapter=tmp_path).generate("x", duration=0.2, progress=False).audio
    ).all()


def test_gradient_checkpointing_trains_the_same_run(s, data, tmp_path):
    a = FT.train(s, data, out=tmp_path / "a", steps=4, **QUICK)
    b = FT.train(s, data, out=tmp_path / "b", steps=4, gradient_checkpointing=True, **QUICK)
    assert b.config["gradient_checkpointing"] is True
    np.testing.assert_allclose([r["loss"] for r in b.history], [r["loss"] for r in a.history],
                               rtol=1e-5)  # fmt: skip
    from safetensors.torch import load_file

    wa, wb = load_file(tmp_path / "a" / LORA_WEIGHTS), load_file(tmp_path / "b" / LORA_WEIGHTS)
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=1e-6)


def test_lora_trains_on_a_bf16_session_without_an_fp32_copy(data, tmp_path):
    s16 = mg.load("tiny", precision="bf16")
    before = {k: v.clone() for k, v in s16.model.decoder.state_dict().items()}
    ft = FT.train(s16, data, out=tmp_path, steps=8, **QUICK)
    assert ft.config["base_dtype"] == "bfloat16" and ft.history[-1]["loss"] < ft.history[0]["loss"]
    assert all(p.dtype == torch.float32 for p in trainable(ft.model).values())
    assert all(torch.equal(v, before[k]) for k, v in s16.model.decoder.state_dict().items())
    tuned = mg.load("tiny", adapter=tmp_path, precision="bf16")
    assert tuned.generate("x", duration=0.2, seed=0, progress=False).codes.shape == (1, 4, 10)


def test_a_finished_run_without_its_checkpoint_is_not_overwritten_by_another(s, data, tmp_path):
    FT.train(s, data, out=tmp_path, steps=2, **QUICK)
    shutil.rmtree(tmp_path / CHECKPOINT)  # a finished adapter whose checkpoint was deleted
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(ValueError, match="holds a different run \\(it differs in lr, seed\\)"):
        FT.train(s, data, out=tmp_path, steps=2, **(QUICK | dict(lr=5e-2, seed=7)))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_different_run_is_refused_before_the_encoding(s, folder, data, tmp_path):
    FT.train(s, data, out=tmp_path / "run", steps=1, **QUICK)
    fresh = FT.dataset(folder, cache_dir=tmp_path / "codes")  # not encoded yet
    with pytest.raises(ValueError, match="differs in lr, batch_size"):
        FT.train(s, fresh, out=tmp_path / "run", steps=1, **(QUICK | dict(lr=1.0, batch_size=1)))
    assert not (tmp_path / "codes").exists() or not any((tmp_path / "codes").rglob("*"))


def test_an_interrupt_never_checkpoints_weights_that_give_nan(s, data, tmp_path):
    blow = _BlowUp(at=3)

    def stop(step, loss):
        blow.callback(step, loss)
        if step == 3:
            raise KeyboardInterrupt

    try:
        with pytest.warns(UserWarning, match="the weights of step 3 give a loss of nan: not saved"):
            ft = FT.train(s, data, out=tmp_path, steps=10, save_every=2, callback=stop, **QUICK)
    finally:
        blow.handle.remove()
    assert ft.interrupted and ft.step == 3
    assert json.loads((tmp_path / CHECKPOINT / "state.json").read_text())["step"] == 2


def test_fp16_steps_that_all_overflow_are_a_diverged_run(s, data, tmp_path):
    with pytest.raises(FloatingPointError, match="fp16 gradients overflowed 20 steps in a row"):
        FT.train(s, data, out=tmp_path, steps=30, precision="fp16", lora_alpha=1e38, **QUICK)
    cfg = json.loads((tmp_path / "training_config.json").read_text())
    assert cfg["status"] == "diverged" and not (tmp_path / LORA_WEIGHTS).exists()
