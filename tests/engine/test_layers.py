"""The compiled layer stack and the fast single linears."""

from __future__ import annotations

import pytest
import torch
from _engine import make_cond, tokens

from musicgen_nb.engine import Decoder, layers


def test_layers_run_compiled_and_equal_python(tiny):
    """The layers run through TorchScript here, with the same logits as the Python function."""
    assert isinstance(layers.compiled(), torch.jit.ScriptFunction)
    with torch.inference_mode():
        cond = make_cond(tiny)
        toks = tokens(tiny, cond.hidden.shape[0], 6)
        scripted, python = (
            Decoder(tiny.model, cond, max_len=8),
            Decoder(tiny.model, cond, max_len=8),
        )
        python.run = layers.run_layers
        assert scripted.run is not python.run
        for t in range(6):
            a = scripted.step(toks[:, :, t : t + 1])
            b = python.step(toks[:, :, t : t + 1])
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("rows", [1, 2, 5])
def test_linear_fn_matches_module(dtype, bias, rows):
    torch.manual_seed(0)
    lin = torch.nn.Linear(48, 80, bias=bias).to(dtype)
    x = torch.randn(rows, 48, dtype=dtype)
    fn = layers.linear_fn(lin)
    with torch.inference_mode():
        y = fn(x)
        assert y.is_contiguous()
        tol = 1e-5 if dtype == torch.float32 else 2e-2
        torch.testing.assert_close(y, lin(x), rtol=tol, atol=tol)
