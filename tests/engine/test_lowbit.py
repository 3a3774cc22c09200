"""The building blocks of the int8 layers: fused parts, the 4-bit scale search, fbgemm."""

from __future__ import annotations

import torch
from torch import nn

from musicgen_nb import _kernels as K
from musicgen_nb.engine import lowbit
from musicgen_nb.engine import quantize as Q


def test_fused_parts_equal_separate_layers():
    torch.manual_seed(0)
    lins = [nn.Linear(32, 16, bias=False), nn.Linear(32, 8), nn.Linear(32, 16)]
    fused = Q.Int8Linear.fuse(lins)
    parts = [
        lowbit.Int8Part(fused, 0, 16),
        lowbit.Int8Part(fused, 16, 24),
        lowbit.Int8Part(fused, 24, 40),
    ]
    x = torch.randn(2, 5, 32)
    with torch.inference_mode():
        for lin, part in zip(lins, parts, strict=True):
            torch.testing.assert_close(part(x), Q.Int8Linear(lin)(x), rtol=0, atol=1e-6)


def test_part_memo_not_stale():
    torch.manual_seed(0)
    fused = Q.Int8Linear.fuse([nn.Linear(8, 4), nn.Linear(8, 4)])
    part = lowbit.Int8Part(fused, 0, 4)
    x = torch.randn(3, 8)
    a = part(x)
    x.mul_(2)  # same tensor, changed in place
    b = part(x)
    assert not torch.allclose(a, b)
    torch.testing.assert_close(part(x.clone()), b)


def test_int4_weights_never_worse_than_max_scaling():
    """The searched group scales: every group's squared error is at most max |w| / 7's."""
    w = torch.randn(16, 200, generator=torch.Generator().manual_seed(3))
    q, scale = lowbit.int4_weights(w)
    base_q, base = K.quantize_int4(w)
    assert q.dtype == torch.int8 and q.shape == w.shape and int(q.abs().max()) <= 7
    assert (
        scale.shape == base.shape and (scale <= base).all() and (scale >= 0.8 * base - 1e-9).all()
    )

    def err(qq, ss):
        deq = qq.float() * ss.repeat_interleave(K.GROUP, dim=1)[:, : w.shape[1]]
        pad = nn.functional.pad((deq - w) ** 2, (0, -w.shape[1] % K.GROUP))
        return pad.reshape(16, -1, K.GROUP).sum(-1)

    assert (err(q, scale) <= err(base_q, base) + 1e-7).all()


def test_prepack_and_vnni():
    assert isinstance(lowbit.has_vnni(), bool)
    if Q.fbgemm_available():
        packed = lowbit.prepack(torch.ones(2, 2, dtype=torch.int8), torch.ones(2), None)
        y = torch.ops.quantized.linear_dynamic(torch.ones(1, 2), packed, True)
        torch.testing.assert_close(y, torch.full((1, 2), 2.0), rtol=0.02, atol=0.02)
