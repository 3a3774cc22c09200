"""Fixtures of the fine-tuning tests: one LoRA run on the offline ``tiny`` checkpoint.

One LoRA run (2 synthesized 1 s clips, 120 steps on the CPU) is shared by the
tests of the "Done when" list: accuracy from chance to >= 0.9, base weights
untouched, save -> load logits, guidance, and resume after an interrupt or a
``kill -9`` giving the very same adapter. The fixtures are session-scoped so the
test modules of this folder share that one run (per test process).
"""

from __future__ import annotations

import shutil

import pytest
from _finetune import SHORT, TRAIN

import musicgen_nb as mg
from musicgen_nb import finetune as FT
from musicgen_nb.checkpoints.adapter import CHECKPOINT


@pytest.fixture(scope="session")
def s():
    return mg.load("tiny")


@pytest.fixture(scope="session")
def folder(tmp_path_factory):
    return FT.synth_dataset(tmp_path_factory.mktemp("data"), seconds=1.0)


@pytest.fixture(scope="session")
def data(folder, tmp_path_factory):
    return FT.dataset(folder, cache_dir=tmp_path_factory.mktemp("codes"))


@pytest.fixture(scope="session")
def base_state(s):
    return {k: v.clone() for k, v in s.model.state_dict().items()}


@pytest.fixture(scope="session")
def trained(s, data, base_state, tmp_path_factory):
    """The uninterrupted reference run, the accuracy before it, and its state at step SHORT.

    Steps are stateless given the seed and the lr is constant, so the weights of this run at
    step SHORT are those of an uninterrupted run of SHORT steps: the resume tests compare with them.
    """
    pytest.importorskip("peft")
    before = FT.token_accuracy(s, data)
    keep = tmp_path_factory.mktemp("at_short") / "trainable.safetensors"

    def snapshot(step, loss):
        if step == SHORT:  # the checkpoint of this step is written before the callback
            shutil.copy(out / CHECKPOINT / "trainable.safetensors", keep)

    out = tmp_path_factory.mktemp("run")
    ft = FT.train(s, data, out=out, callback=snapshot, **TRAIN)
    return ft, before, keep
