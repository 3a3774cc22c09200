"""The arguments of train(), checked up front, and the training precisions."""

from __future__ import annotations

import math

import pytest
import torch

from musicgen_nb.finetune.options import (
    TRAIN_PRECISIONS,
    Precision,
    auto_precision,
    check_lora_alpha,
    check_session,
    check_train_args,
)

GOOD = dict(steps=10, lr=1e-3, batch_size=2, lora_rank=4, lora_alpha=None, condition_dropout=0.1,
            seed=0, precision="auto", weight_decay=0.0, save_every=5, progress=False, plot=False,
            callback=None, gradient_checkpointing=False, out=None)  # fmt: skip


@pytest.mark.parametrize(
    ("kw", "err", "msg"),
    [
        (dict(weight_decay=-1.0), ValueError, r"weight_decay must be a finite number >= 0, got -1.0"),
        (dict(weight_decay=math.nan), ValueError, r"weight_decay must be a finite number"),
        (dict(weight_decay="0.1"), TypeError, r"weight_decay must be a number"),
        (dict(callback=5), TypeError, r"callback must be a callable callback\(step, loss\) or None, got int 5"),
        (dict(lora_alpha=math.nan), ValueError, r"lora_alpha must be a finite number > 0.* got nan"),
        (dict(lora_alpha=-5), ValueError, r"lora_alpha must be a finite number > 0.* got -5"),
        (dict(lora_alpha=0), ValueError, r"lora_alpha must be a finite number > 0.* got 0"),
        (dict(lora_alpha=True), TypeError, r"lora_alpha must be"),
        (dict(save_every=0), ValueError, r"save_every must be an int >= 1, got 0"),
        (dict(save_every=2.5), TypeError, r"save_every must be an int >= 1"),
        (dict(gradient_checkpointing="yes"), TypeError, r"gradient_checkpointing must be True or False"),
        (dict(progress=1), TypeError, r"progress must be True or False"),
        (dict(plot="always"), TypeError, r"plot must be True or False"),
        (dict(out=5), TypeError, r"out must be a folder path or None, got int 5"),
        (dict(precision="fp8"), ValueError, r"precision must be one of \('auto', 'fp32', 'bf16', 'fp16'\)"),
        (dict(lora_rank=0), ValueError, r"lora_rank must be an int >= 1, or None"),
    ],
)  # fmt: skip
def test_every_argument_is_checked_by_name(kw, err, msg):
    with pytest.raises(err, match=msg):
        check_train_args(**(GOOD | kw))


def test_lora_alpha_defaults_to_the_rank_and_zero_is_not_replaced():
    assert check_train_args(**GOOD)["lora_alpha"] == 4.0
    assert check_lora_alpha(32, 16) == 32.0 and check_lora_alpha(None, 16) == 16.0
    assert check_lora_alpha(5, None) is None  # a full fine-tune has no LoRA scale
    with pytest.raises(ValueError, match="got 0"):
        check_lora_alpha(0, 16)


def test_check_session_names_what_cannot_be_trained():
    with pytest.raises(TypeError, match="s must be a MusicGen"):
        check_session("tiny", [])


def test_auto_precision_is_decided_in_one_place():
    assert TRAIN_PRECISIONS == ("auto", "fp32", "bf16", "fp16")
    assert auto_precision(torch.device("cpu")) == "fp32"


def test_fp16_scales_the_loss_and_skips_an_overflowing_step():
    cpu = torch.device("cpu")
    m = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    p = Precision("fp16", cpu)

    def step():
        opt.zero_grad()
        with p.autocast:
            out = m(torch.full((1, 4), 0.5))
        assert out.dtype == torch.float16
        p.backward(out.float().sum(), opt)
        before = m.weight.detach().clone()
        p.step(opt)
        return not torch.equal(m.weight, before)

    # The first scale (2**16) overflows fp16 gradients: the step is skipped, the scale halved.
    assert p.state_dict()["scale"] == 2.0**16
    assert not step() and p.state_dict()["scale"] == 2.0**15
    assert step()  # now it fits: the step is taken on true-scale gradients
    assert torch.equal(m.weight.grad, torch.full((1, 4), 0.5))  # unscaled before clipping
    again = Precision("fp16", cpu)
    again.load_state_dict(p.state_dict())
    assert again.state_dict()["scale"] == 2.0**15
    plain = Precision("fp32", cpu)
    assert plain.scaler is None and plain.state_dict() is None
    with Precision("bf16", cpu).autocast:
        assert m(torch.ones(1, 4)).dtype == torch.bfloat16


def test_auto_follows_the_session_policy_and_old_torch_gets_a_grad_scaler(monkeypatch):
    # "auto" is engine.precision's choice (T4, sm75: fp16 with loss scaling; Ampere: bf16).
    from musicgen_nb.engine.precision import fake_device

    for cap, want in (((7, 5), "fp16"), ((8, 0), "bf16")):
        with fake_device("cuda", capability=cap):
            assert auto_precision(torch.device("cuda")) == want
    # torch < 2.3: no torch.amp.GradScaler; fp16 builds its scaler from torch.cuda.amp's.
    monkeypatch.delattr(torch.amp, "GradScaler")
    p = Precision("fp16", torch.device("cpu"))
    assert isinstance(p.scaler, torch.cuda.amp.GradScaler)
