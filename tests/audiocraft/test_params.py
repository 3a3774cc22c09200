"""The argument checks and audiocraft's parameter names."""

from __future__ import annotations

import numpy as np
import pytest

from musicgen_nb.audiocraft.params import as_batch, check_int, check_number, engine_params

AUDIOCRAFT = {"use_sampling": True, "temp": 1.0, "top_k": 250, "top_p": 0.0, "cfg_coef": 3.0,
              "two_step_cfg": False, "cfg_coef_beta": None}  # fmt: skip


def test_engine_params_follow_audiocraft():
    assert engine_params(AUDIOCRAFT, 18.0) == dict(
        do_sample=True, top_k=250, top_p=0.0, temperature=1.0, guidance_scale=3.0,
        cfg_coef_beta=None, extend_stride=18.0,
    )  # fmt: skip
    assert engine_params(dict(AUDIOCRAFT, temp=0.0), 18.0)["do_sample"] is False
    assert engine_params(dict(AUDIOCRAFT, top_p=0.5), 18.0)["top_k"] == 0


def test_checks_name_the_argument():
    assert check_int(np.int32(5), "n") == 5
    with pytest.raises(ValueError, match="n must be an int >= 1, got 0"):
        check_int(0, "n")
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        check_int(True, "n")
    with pytest.raises(ValueError, match="t must be >= 0"):
        check_number(-1, "t", strict=False)
    with pytest.raises(ValueError, match=r"x must be \[B, C, T\]"):
        as_batch(np.zeros(3), "x")
