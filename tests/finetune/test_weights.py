"""The trainable copy of the decoder and the resumable checkpoint."""

from __future__ import annotations

import json

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
