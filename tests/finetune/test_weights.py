"""The trainable copy of the decoder and the resumable checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from musicgen_nb.checkpoints.adapter import CHECKPOINT
from musicgen_nb.finetune.weights import (
    load_checkpoint,
    save_checkpoint,
    trainable,
    trainable_decoder,
)


def _model_and_opt(seed=0):
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 2))
    m[1].bias.requires_grad_(False)
    opt = torch.optim.AdamW(trainable(m).values(), lr=0.1)
    m(torch.ones(1, 3)).sum().backward()
    opt.step()
    return m, opt


def test_checkpoint_round_trip_restores_weights_optimizer_and_history(tmp_path):
    m, opt = _model_and_opt(0)
    history = [dict(step=1, loss=1.5, accuracy=0.25)]
    save_checkpoint(tmp_path, m, opt, 1, history)
    assert sorted(p.name for p in (tmp_path / CHECKPOINT).iterdir()) == [
        "optimizer.pt", "state.json", "trainable.safetensors",
    ]  # fmt: skip
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT]  # no temporary folder left
    m2, opt2 = _model_and_opt(1)
    assert load_checkpoint(tmp_path, m2, opt2) == (1, history)
    for a, b in zip(m.parameters(), m2.parameters(), strict=True):
        if a.requires_grad:
            assert torch.equal(a, b)
    assert not torch.equal(m[1].bias, m2[1].bias)  # frozen weights are not in the checkpoint
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert all(torch.equal(s1[k]["exp_avg"], s2[k]["exp_avg"]) for k in s1)


def test_a_newer_checkpoint_replaces_the_older_one(tmp_path):
    m, opt = _model_and_opt()
    save_checkpoint(tmp_path, m, opt, 1, [])
    save_checkpoint(tmp_path, m, opt, 2, [])
    assert json.loads((tmp_path / CHECKPOINT / "state.json").read_text())["step"] == 2
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT]


def test_a_kill_between_the_renames_resumes_from_the_old_checkpoint(tmp_path):
    m, opt = _model_and_opt()
    save_checkpoint(tmp_path, m, opt, 7, [])
    (tmp_path / CHECKPOINT).rename(tmp_path / f".{CHECKPOINT}.old")
    assert load_checkpoint(tmp_path, m, opt)[0] == 7


def test_a_checkpoint_of_other_weights_is_refused(tmp_path):
    m, opt = _model_and_opt()
    save_checkpoint(tmp_path, m, opt, 1, [])
    other = torch.nn.Linear(3, 3)
    with pytest.raises(ValueError, match="does not match this model's trainable weights"):
        load_checkpoint(tmp_path, other, torch.optim.AdamW(other.parameters()))


def test_lora_copy_shares_the_frozen_base_weights(s):
    pytest.importorskip("peft")
    lora = trainable_decoder(s, 4, 4.0)
    full = trainable_decoder(s, None, None)
    base = {id(p) for p in s.model.decoder.parameters()}
    frozen = [p for p in lora.parameters() if not p.requires_grad]
    assert frozen and all(id(p) in base for p in frozen)  # LoRA does not copy the decoder
    assert all("lora_" in n for n in trainable(lora))
    assert all(p.requires_grad and id(p) not in base for p in full.parameters())
    assert len(trainable(full)) == len(list(s.model.decoder.parameters()))


def test_a_full_disk_leaves_no_temporary_checkpoint_folder(folder, data, tmp_path):
    from pathlib import Path

    from _capped import on_small_disk

    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys, json, pathlib\n"
        "import musicgen_nb as mg\n"
        "from musicgen_nb import finetune as FT\n"
        "out = pathlib.Path(sys.argv[1]) / 'run'\n"
        f"data = FT.dataset({str(folder)!r}, cache_dir={str(data.cache_dir)!r})\n"
        "try:\n"
        "    FT.train(mg.load('tiny'), data, out=out, steps=2, save_every=1, progress=False)\n"
        "except OSError as e:\n"
        "    print('ERR', e)\n"
        "print('LEFT', json.dumps(sorted(p.name for p in out.iterdir())))\n"
    )
    # 256 KiB: the marker and the config fit, the checkpoint (2 MB with the optimizer) does not.
    mnt, got = on_small_disk(tmp_path, "256k", code, env=f"PYTHONPATH={root}")
    assert got["ERR"] == f"no space left on device writing {mnt}/run/{CHECKPOINT}"
    assert json.loads(got["LEFT"]) == [".musicgen-nb-run", "training_config.json"]


def test_a_damaged_checkpoint_is_named(tmp_path):
    m, opt = _model_and_opt()
    save_checkpoint(tmp_path, m, opt, 1, [])
    (tmp_path / CHECKPOINT / "trainable.safetensors").write_bytes(b"\x00" * 7)
    with pytest.raises(ValueError, match=r"the checkpoint .* is damaged \(trainable.safetensors: "):
        load_checkpoint(tmp_path, m, opt)
    save_checkpoint(tmp_path, m, opt, 1, [])
    (tmp_path / CHECKPOINT / "state.json").write_text("{}")
    with pytest.raises(ValueError, match=r"is damaged \(state.json: KeyError"):
        load_checkpoint(tmp_path, m, opt)
    (tmp_path / f".{CHECKPOINT}.tmp999999").mkdir()  # left by a process that was killed
    save_checkpoint(tmp_path, m, opt, 2, [])
    assert load_checkpoint(tmp_path, m, opt)[0] == 2
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT]


def test_lora_keeps_the_base_weights_in_the_sessions_dtype_without_a_copy():
    pytest.importorskip("peft")
    import musicgen_nb as mg

    s = mg.load("tiny", precision="bf16")
    src = s.model.decoder
    base_bytes = sum(p.numel() * p.element_size() for p in src.parameters())
    lora = trainable_decoder(s, 4, 4.0)
    ptrs = {p.data_ptr() for p in [*src.parameters(), *src.buffers()]}
    frozen = [p for p in lora.parameters() if not p.requires_grad]
    assert frozen and all(p.data_ptr() in ptrs and p.dtype == torch.bfloat16 for p in frozen)
    new = [t for t in [*lora.parameters(), *lora.buffers()] if t.data_ptr() not in ptrs]
    assert new and all(t.dtype == torch.float32 and t.requires_grad for t in new)  # LoRA only
    new_bytes = sum(t.numel() * t.element_size() for t in new)
    assert new_bytes == sum(p.numel() * 4 for p in trainable(lora).values())
    assert new_bytes < base_bytes / 4  # the old fp32 copy added 2x base_bytes
    full = trainable_decoder(s, None, None)
    assert all(p.dtype == torch.float32 for p in full.parameters())  # a full fine-tune: fp32


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(s):
    pytest.importorskip("peft")
    import numpy as np

    from musicgen_nb.conditioning import stack_states, text_states
    from musicgen_nb.finetune.batches import forward, masked_loss, sequences

    codes = [np.random.default_rng(0).integers(0, 2048, (4, 30))]
    x, y = sequences(s, codes)
    h, m = stack_states(text_states(s, ["pad"]), ["pad"], s.device)
    result, kept = [], []
    for gc in (False, True):
        torch.manual_seed(0)
        model = trainable_decoder(s, 4, 4.0, gradient_checkpointing=gc).train()
        saved = []

        def pack(t, saved=saved):
            saved.append(t.numel() * t.element_size())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = masked_loss(forward(model, x, h, m), y, s.special_id)[0]
        loss.backward()
        result.append((loss.detach(), {n: p.grad.clone() for n, p in trainable(model).items()}))
        kept.append(sum(saved))
    assert kept[1] < kept[0]  # fewer activations kept for the backward pass
    (la, ga), (lb, gb) = result
    assert torch.equal(la, lb) and set(ga) == set(gb)
    for n in ga:
        torch.testing.assert_close(gb[n], ga[n], rtol=1e-5, atol=1e-7)
    assert model.get_base_model().is_gradient_checkpointing


def test_only_the_temporary_folders_of_dead_processes_are_removed(tmp_path):
    m, opt = _model_and_opt(0)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        for pid in (live.pid, dead):
            (tmp_path / f".{CHECKPOINT}.tmp{pid}").mkdir()
            (tmp_path / f".{CHECKPOINT}.tmp{pid}" / "state.json").write_text("{}")
        assert load_checkpoint(tmp_path, m, opt) == (0, [])
        left = sorted(p.name for p in tmp_path.iterdir())
        assert left == [f".{CHECKPOINT}.tmp{live.pid}"]  # another live run is still writing it
    finally:
        live.kill()
        live.wait()


def test_checkpoint_files_and_folders_are_fsynced(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    m, opt = _model_and_opt(0)
    save_checkpoint(tmp_path, m, opt, 1, [])
    tmp = str(tmp_path / f".{CHECKPOINT}.tmp{os.getpid()}")
    for name in ("trainable.safetensors", "optimizer.pt", "state.json"):
        assert any(p.startswith(f"{tmp}/.{name}.") for p in synced), (name, synced)
    assert tmp in synced and str(tmp_path) in synced  # its entries, then the rename
    assert load_checkpoint(tmp_path, m, opt)[0] == 1
