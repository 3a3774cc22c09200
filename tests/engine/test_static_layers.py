"""The static step's layers: compiled and plain Python agree, the cache is written only at the
position tensor, and masked positions do not change the result."""

from __future__ import annotations

import torch

from musicgen_nb.engine.static_layers import LINEARS, compiled_static, run_static

DIM, HEADS, ROWS, T = 16, 4, 2, 8


def _weights(layers=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = []
    for _ in range(layers):
        w += [torch.randn(3 * DIM, DIM, generator=g) / 4] + [
            torch.randn(DIM, DIM, generator=g) / 4 for _ in range(LINEARS - 1)
        ]
    norms = [torch.ones(DIM), torch.zeros(DIM)] * 3 * layers
    return w, [None] * len(w), norms


def _run(fn, x, pos, open_upto, k, v, span=T):
    w, b, norms = _weights()
    bias = torch.full((1, T), torch.finfo(torch.float32).min)
    bias[0, : open_upto + 1] = 0
    cross_k = [torch.randn(ROWS, HEADS, 5, DIM // HEADS, generator=torch.Generator().manual_seed(i)) for i in range(2)]  # fmt: skip
    return fn(
        x, ROWS, HEADS, torch.tensor([pos]), bias[:, :span], span, w, b, norms, 1e-5, True, k, v,
        cross_k, cross_k, None,
    )  # fmt: skip


def _cache(seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(ROWS, HEADS, T, DIM // HEADS, generator=g) for _ in range(2)]


def test_compiled_and_python_agree_and_write_only_at_the_position():
    x = torch.randn(ROWS, DIM)
    k1, v1, k2, v2 = _cache(1), _cache(2), _cache(1), _cache(2)
    before = [t.clone() for t in k1]
    y1 = _run(run_static, x, 3, 3, k1, v1)
    y2 = _run(compiled_static(), x, 3, 3, k2, v2)
    torch.testing.assert_close(y1, y2, rtol=1e-6, atol=1e-6)
    for old, new in zip(before, k1, strict=True):
        changed = (old != new).any(-1).any(0).any(0)
        assert changed.tolist() == [i == 3 for i in range(T)]


def test_masked_positions_and_a_shorter_span_do_not_change_the_result():
    x = torch.randn(ROWS, DIM)
    k, v = _cache(1), _cache(2)
    full = _run(run_static, x, 3, 3, [t.clone() for t in k], [t.clone() for t in v])
    garbage = [t.clone() for t in k]
    for t in garbage:
        t[:, :, 4:] = 1e6  # anything finite past the open positions weighs 0
    masked = _run(run_static, x, 3, 3, garbage, [t.clone() for t in v])
    short = _run(run_static, x, 3, 3, [t.clone() for t in k], [t.clone() for t in v], span=4)
    torch.testing.assert_close(full, masked, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(full, short, rtol=1e-6, atol=1e-6)
