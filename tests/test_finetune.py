"""Fine-tuning on the offline ``tiny`` checkpoint: data, targets, training, adapters, resume.

One LoRA run (2 synthesized 1 s clips, 120 steps on the CPU) is shared by the
tests of the "Done when" list: accuracy from chance to >= 0.9, base weights
untouched, save -> load logits, guidance, and resume after an interrupt or a
``kill -9`` giving the very same adapter.
"""

from __future__ import annotations

import csv
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

import musicgen_nb as mg
from musicgen_nb import finetune as FT

pytest.importorskip("peft")

ROOT = Path(__file__).resolve().parents[1]
STEPS = 120
SHORT = 40  # the resume tests stop, or are killed, inside a run of this many steps
TRAIN = dict(steps=STEPS, lr=1e-2, batch_size=2, seed=0, progress=False, save_every=10)


@pytest.fixture(scope="module")
def s():
    return mg.load("tiny")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return FT.synth_dataset(tmp_path_factory.mktemp("data"), seconds=1.0)


@pytest.fixture(scope="module")
def data(folder, tmp_path_factory):
    return FT.dataset(folder, cache_dir=tmp_path_factory.mktemp("codes"))


@pytest.fixture(scope="module")
def base_state(s):
    return {k: v.clone() for k, v in s.model.state_dict().items()}


@pytest.fixture(scope="module")
def trained(s, data, base_state, tmp_path_factory):
    """The uninterrupted reference run, the accuracy before it, and its state at step SHORT.

    Steps are stateless given the seed and the lr is constant, so the weights of this run at
    step SHORT are those of an uninterrupted run of SHORT steps: the resume tests compare with them.
    """
    before = FT.token_accuracy(s, data)
    keep = tmp_path_factory.mktemp("at_short") / "trainable.safetensors"

    def snapshot(step, loss):
        if step == SHORT:  # the checkpoint of this step is written before the callback
            shutil.copy(out / FT.CHECKPOINT / "trainable.safetensors", keep)

    out = tmp_path_factory.mktemp("run")
    ft = FT.train(s, data, out=out, callback=snapshot, **TRAIN)
    return ft, before, keep


def _assert_same_weights(a, b):
    from safetensors.torch import load_file

    wa, wb = load_file(a), load_file(b)
    assert set(wa) == set(wb) and wa
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


# ---------------------------------------------------------------------------- data
def _write(path, seconds=1.5, sr=32000, amp=0.5):
    t = np.arange(int(seconds * sr)) / sr
    mg.audio.write(path, (amp * np.sin(2 * np.pi * 330 * t)).astype(np.float32), sr)


def test_lazy_attribute():
    assert mg.finetune is FT and "finetune" in dir(mg)


def test_both_layouts_read_the_same_captions(tmp_path):
    names = {"a.wav": "warm pad", "sub/b.wav": "fast drums"}
    for layout in ("csv", "jsonl", "txt"):
        d = tmp_path / layout
        for name, text in names.items():
            (d / name).parent.mkdir(parents=True, exist_ok=True)
            _write(d / name)
            if layout == "txt":
                (d / name).with_suffix(".txt").write_text(text + "\n")
        rows = [dict(file_name=n, text=t) for n, t in names.items()]
        if layout == "csv":
            with open(d / "metadata.csv", "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=["file_name", "text"])
                w.writeheader()
                w.writerows(rows)
        elif layout == "jsonl":
            (d / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
        data = FT.dataset(d)
        got = {i.file.relative_to(d).as_posix(): i.text for i in data.items}
        assert got == names, layout
        assert (
            data.layout == {"csv": "metadata.csv", "jsonl": "metadata.jsonl", "txt": "txt"}[layout]
        )


def test_bad_files_are_named_and_skipped_unless_strict(tmp_path):
    _write(tmp_path / "good.wav")
    (tmp_path / "broken.wav").write_bytes(b"not audio at all")
    _write(tmp_path / "quiet.wav", amp=0.0)
    _write(tmp_path / "short.wav", seconds=0.2)
    _write(tmp_path / "nocap.wav")
    for n in ("good", "broken", "quiet", "short"):
        (tmp_path / f"{n}.txt").write_text(f"{n} caption")
    with pytest.warns(UserWarning) as rec:
        data = FT.dataset(tmp_path)
    assert [i.file.name for i in data.items] == ["good.wav"]
    reasons = dict(data.skipped)
    assert reasons["broken.wav"].startswith("unreadable")
    assert reasons["quiet.wav"].startswith("silent")
    assert reasons["short.wav"].startswith("too short")
    assert reasons["nocap.wav"].startswith("no caption")
    assert len(rec) == 4 and all(any(n in str(w.message) for n in reasons) for w in rec)
    with pytest.raises(FT.DataError, match="broken.wav: unreadable"):
        FT.dataset(tmp_path, strict=True)
    (tmp_path / "good.wav").unlink()
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no usable file"):
        FT.dataset(tmp_path)


def test_metadata_errors_name_the_problem(tmp_path):
    _write(tmp_path / "a.wav")
    (tmp_path / "metadata.csv").write_text("path,caption\na.wav,x\n")
    with pytest.raises(ValueError, match="'file_name' and 'text'"):
        FT.dataset(tmp_path)
    (tmp_path / "metadata.csv").write_text("file_name,text\na.wav,x\nmissing.wav,y\n")
    with pytest.warns(UserWarning, match="missing.wav"):
        assert len(FT.dataset(tmp_path)) == 1
    with pytest.raises(ValueError, match="hop must be at most"):
        FT.dataset(tmp_path, window=1.0, hop=2.0)
    with pytest.raises(ValueError, match="folder must be a directory"):
        FT.dataset(tmp_path / "nope")


def test_encode_resamples_windows_and_caches(s, tmp_path):
    d, cache = tmp_path / "d", tmp_path / "cache"
    d.mkdir()
    sr = 16000
    wav = mg.audio.melody_tone(["C4", "E4", "G4"] * 2, 0.5, sr)  # 3 s at 16 kHz
    mg.audio.write(d / "x.wav", wav, sr)
    (d / "x.txt").write_text("tune")
    data = FT.dataset(d, window=1.0, hop=0.5, cache_dir=cache)
    wins = data.encode(s)
    full = s.encode(mg.audio.load(d / "x.wav", sr=s.sample_rate)[0], s.sample_rate)[0]
    assert full.shape[-1] == 150
    assert [w.start for w in wins] == [0, 25, 50, 75, 100]
    for w in wins:
        assert w.codes.shape == (4, 50) and w.text == "tune" and w.file == "x.wav"
        np.testing.assert_array_equal(w.codes, full[:, w.start : w.start + 50])
    cached = cache / FT.codec_key(s) / f"{data.items[0].sha256}.npy"
    assert cached.exists()
    stamp = cached.stat().st_mtime_ns
    again = FT.dataset(d, window=1.0, hop=0.7, cache_dir=cache).encode(s)  # read back, new hop
    assert cached.stat().st_mtime_ns == stamp
    assert [w.start for w in again] == [0, 35, 70, 100]
    np.testing.assert_array_equal(again[-1].codes, full[:, 100:])
    with pytest.raises(ValueError, match="at most the model's window"):
        FT.dataset(d, window=10.0, cache_dir=cache).encode(s)


# ---------------------------------------------------------------------------- targets
def test_targets_follow_the_delay_pattern_and_transformers_loss(s):
    rng = np.random.default_rng(0)
    codes = [rng.integers(0, 2048, (4, 7)), rng.integers(0, 2048, (4, 5))]
    inputs, labels = FT.sequences(s, codes)
    for b, c in enumerate(codes):
        p = mg.patterns.build("delay", 4, c.shape[-1])
        ref = mg.patterns.interleave(c, p, special_id=s.special_id)  # [K, T + K - 1]
        n = ref.shape[-1]
        np.testing.assert_array_equal(labels[b, :, :n].numpy(), ref)
        assert (labels[b, :, n:] == s.special_id).all()  # batch padding
    assert (inputs[:, :, 0] == s.special_id).all()  # BOS
    assert torch.equal(inputs[:, :, 1:], labels[:, :, :-1])
    texts = ["warm pad", None]
    states = FT._text_states(s, texts)
    h, m = FT._conditioning(states, texts, s.device)
    with torch.no_grad():
        lg = FT._forward(s.model.decoder, inputs, h, m)
        ours, _, count = FT.masked_loss(lg, labels, s.special_id)
        # transformers builds its inputs from the labels and masks the special token itself.
        theirs = s.model.decoder(
            labels=labels.transpose(1, 2), encoder_hidden_states=h,
            encoder_attention_mask=m.long(), use_cache=False,
        ).loss  # fmt: skip
    assert int(count) == 4 * (7 + 5)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


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


def test_sidecars_name_the_adapter(trained, tmp_path):
    ft, _, _ = trained
    s2 = mg.load("tiny", adapter=ft.out)
    assert s2.provenance["adapter"]["path"] == str(ft.out.resolve())
    (path,) = s2.generate("x", duration=0.2, seed=1, progress=False).save(tmp_path)
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["adapter"]["sha256"] == FT._sha256(ft.out / FT.LORA_WEIGHTS)
    assert side["adapter"]["kind"] == "lora" and side["adapter"]["steps"] == STEPS
    plain = mg.load("tiny").generate("x", duration=0.2, seed=1, progress=False).provenance()
    assert "adapter" not in plain


def test_run_folder_holds_adapter_config_and_card(trained, data):
    ft, _, _ = trained
    names = {p.name for p in ft.out.iterdir()}
    assert {FT.LORA_WEIGHTS, "adapter_config.json", FT.CONFIG_FILE, FT.CARD_FILE,
            FT.HISTORY_FILE, FT.CHECKPOINT} <= names  # fmt: skip
    cfg = json.loads((ft.out / FT.CONFIG_FILE).read_text())
    assert cfg["steps_done"] == STEPS and cfg["data_files"] == 2 and cfg["base"] == "tiny"
    card = (ft.out / FT.CARD_FILE).read_text()
    assert "`tiny`" in card and f"{STEPS} (batch size 2" in card and "2 files" in card
    assert f"{cfg['final_loss']:.4f}" in card
    assert len((ft.out / FT.HISTORY_FILE).read_text().splitlines()) == STEPS + 1
    # Same folder, same run, no more steps: nothing is retrained.
    again = FT.train(ft.base, data, out=ft.out, **TRAIN)
    assert again.step == STEPS and len(again.history) == STEPS
    with pytest.raises(ValueError, match="differs in lr"):
        FT.train(ft.base, data, out=ft.out, **(TRAIN | dict(lr=1e-3)))


def test_interrupt_then_resume_gives_the_same_adapter(trained, s, data, tmp_path):
    ft, _, at_short = trained
    run = TRAIN | dict(steps=SHORT)

    def stop_at(step, loss):
        if step == 25:
            raise KeyboardInterrupt

    with pytest.warns(UserWarning, match="stopped at step 25"):
        part = FT.train(s, data, out=tmp_path, callback=stop_at, **run)
    assert part.interrupted and part.step == 25
    assert json.loads((tmp_path / FT.CHECKPOINT / "state.json").read_text())["step"] == 25
    with pytest.raises(ValueError, match="unfinished run"):
        mg.load("tiny", adapter=tmp_path)
    done = FT.train(s, data, out=tmp_path, **run)
    assert done.step == SHORT and not done.interrupted
    _assert_same_weights(tmp_path / FT.CHECKPOINT / "trainable.safetensors", at_short)
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
    state = tmp_path / FT.CHECKPOINT / "state.json"
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
    assert 10 <= killed_at < SHORT and not (tmp_path / FT.LORA_WEIGHTS).exists()
    done = FT.train(s, data, out=tmp_path, **run)
    assert done.step == SHORT
    _assert_same_weights(tmp_path / FT.CHECKPOINT / "trainable.safetensors", at_short)


# ---------------------------------------------------------------------------- the rest
def test_full_fine_tune_round_trip(s, data, tmp_path, base_state):
    ft = FT.train(s, data, out=tmp_path, lora_rank=None, **(TRAIN | dict(steps=5, lr=1e-3)))
    assert (tmp_path / FT.FULL_WEIGHTS).exists()
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


def test_merge_can_save_a_plain_checkpoint(trained, tmp_path):
    ft, _, _ = trained
    target = tmp_path / "merged"
    merged = ft.merge(target)
    again = mg.load(target, precision="int8")
    assert again.provenance["adapter"]["sha256"] == merged.provenance["adapter"]["sha256"]
    assert again.generate("x", duration=0.2, seed=0, progress=False).codes.shape == (1, 4, 10)
    with pytest.raises(FileExistsError, match="exists"):
        ft.merge(target)


def test_bad_arguments_name_themselves(s, data, tmp_path):
    cases = [
        (dict(steps=0), "steps must be an int >= 1"),
        (dict(lora_rank=0), "lora_rank must be an int >= 1, or None"),
        (dict(condition_dropout=1.0), "condition_dropout must be in"),
        (dict(precision="fp16"), "precision must be one of"),
        (dict(lr=-1.0), "lr must be a finite number > 0"),
    ]
    for kw, msg in cases:
        with pytest.raises((ValueError, TypeError), match=msg):
            FT.train(s, data, out=tmp_path, progress=False, **kw)
    with pytest.raises(TypeError, match="data must be a Dataset"):
        FT.train(s, "folder", out=tmp_path)
    with pytest.raises(ValueError, match="precision='int8', which cannot be trained"):
        FT.train(mg.load("tiny", precision="int8"), data, out=tmp_path)
    from musicgen_nb import quantize

    if quantize.kernel_available():
        with pytest.raises(ValueError, match="precision='int4', which cannot be trained"):
            FT.train(mg.load("tiny", precision="int4"), data, out=tmp_path)
    with pytest.raises(ValueError, match="not a fine-tune folder"):
        mg.load("tiny", adapter=tmp_path)


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
