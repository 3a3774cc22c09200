"""The PyTorch references: the int8 rounding and the dequantized attention."""

from __future__ import annotations

import torch

from musicgen_nb import _kernels as K


def test_reference_equals_fp32_attention():
    """Dequantized int8 attention is close to fp32 scaled_dot_product_attention."""
    g = torch.Generator().manual_seed(0)
    rows, heads, hd, n = 2, 4, 16, 30
    keys, values = torch.randn(2, rows, heads, n, hd, generator=g)
    caches = [torch.zeros(rows, heads, n, hd, dtype=torch.int8), torch.zeros(rows, heads, n)]
    caches += [torch.zeros(rows, heads, n, hd, dtype=torch.int8), torch.zeros(rows, heads, n)]
    flat = lambda x: x.transpose(1, 2).reshape(rows, heads * hd)  # noqa: E731
    for t in range(n):
        q = torch.randn(rows, heads * hd, generator=g)
        out = K.attend_reference(q, flat(keys[:, :, t : t + 1]), flat(values[:, :, t : t + 1]),
                                 *caches, t, hd**-0.5)  # fmt: skip
    qh = q.reshape(rows, heads, 1, hd)
    ref = torch.nn.functional.scaled_dot_product_attention(qh, keys, values)
    torch.testing.assert_close(out, flat(ref), rtol=0.02, atol=0.02)


def test_quantize_kv_round_trip():
    x = torch.randn(3, 5, 64, generator=torch.Generator().manual_seed(0))
    q, s = K.quantize_kv(x)
    assert q.dtype == torch.int8 and s.shape == (3, 5) and q.abs().max() == 127
    assert ((q * s[..., None] - x).abs() <= s[..., None] / 2 + 1e-7).all()
    q0, s0 = K.quantize_kv(torch.zeros(2, 4))
    assert q0.eq(0).all() and s0.gt(0).all()  # no division by zero
