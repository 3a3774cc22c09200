"""The C++ ops against their PyTorch references, and the Python entry points without them."""

from __future__ import annotations

import pytest
import torch

from musicgen_nb import _kernels as K
from musicgen_nb._kernels import build


def _filled(rows, heads, total, hd, pos, seed):
    g = torch.Generator().manual_seed(seed)
    kc = torch.zeros(rows, heads, total, hd, dtype=torch.int8)
    vc = torch.zeros_like(kc)
    ks, vs = torch.zeros(rows, heads, total), torch.zeros(rows, heads, total)
    for c, s in ((kc, ks), (vc, vs)):
        c[:, :, :pos] = torch.randint(
            -127, 128, (rows, heads, pos, hd), generator=g, dtype=torch.int8
        )
        s[:, :, :pos] = torch.rand(rows, heads, pos, generator=g) * 0.05
    return kc, ks, vc, vs


# hd 64: the AVX2 path (musicgen's head size); 12: the scalar path. Positions 0, and
# around the 8-wide blocks of the softmax.
# 600 positions: long enough for the heads to be split over two threads.
@pytest.mark.parametrize("hd", [64, 12])
@pytest.mark.parametrize("pos", [0, 1, 7, 8, 9, 70, 600])
def test_kernel_equals_reference(kernel, hd, pos):
    rows, heads = 2, 3
    caches = _filled(rows, heads, 610, hd, pos, seed=pos)
    copies = [c.clone() for c in caches]
    qkv = torch.randn(rows, 3 * heads * hd, generator=torch.Generator().manual_seed(1)) * 3
    q, k, v = qkv.split(heads * hd, dim=1)  # strided views, as the engine passes them
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out = kernel(q, k, v, *caches, pos, hd**-0.5)
    finally:
        torch.set_num_threads(threads)
    ref = K.attend_reference(q, k, v, *copies, pos, hd**-0.5)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(caches, copies, strict=True):  # the same int8 keys/values and scales written
        assert torch.equal(a, b)
    assert caches[1][:, :, pos].gt(0).all() and caches[1][:, :, pos + 1 :].eq(0).all()


def test_kernel_refuses_bad_input(kernel):
    kc, ks, vc, vs = _filled(1, 2, 4, 8, 0, 0)
    q = torch.zeros(1, 16)
    with pytest.raises(RuntimeError, match="pos 4 outside the cache"):
        kernel(q, q, q, kc, ks, vc, vs, 4, 1.0)
    with pytest.raises(RuntimeError, match="float32"):
        kernel(q.double(), q, q, kc, ks, vc, vs, 0, 1.0)
    with pytest.raises(RuntimeError, match="does not fit"):
        kernel(torch.zeros(1, 24), torch.zeros(1, 24), torch.zeros(1, 24), kc, ks, vc, vs, 0, 1.0)


# ---- the int8 linear -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "out", "inn"),
    # musicgen's shapes (batch 1 with guidance: 2 rows), odd shapes (padding, the scalar
    # tails), one row, and many rows (prefill: several tiles of rows).
    [(2, 3072, 1024), (2, 1024, 4096), (1, 5, 33), (3, 13, 70), (7, 64, 96), (300, 40, 1024)],
)
def test_linear_kernel_equals_reference(kernel, rows, out, inn):
    g = torch.Generator().manual_seed(rows + out)
    x = torch.randn(rows, inn, generator=g)
    w = torch.randint(-127, 128, (out, inn), generator=g, dtype=torch.int8)
    scale, bias = torch.rand(out, generator=g) / 100, torch.randn(out, generator=g)
    packed = K.pack_int8(w)
    op = torch.ops.musicgen_nb.linear_int8
    for b in (bias, None):
        assert torch.equal(op(x, packed, scale, b), K.linear_int8_reference(x, w, scale, b))
        # the GELU's erf is a polynomial in the kernel: within ~1e-7 of PyTorch's
        ref = K.linear_int8_reference(x, w, scale, b, gelu=True)
        torch.testing.assert_close(op(x, packed, scale, b, True), ref, rtol=1e-5, atol=1e-6)
    # rows that are a strided view (q, k, v slices of a fused output)
    wide = torch.randn(rows, 2 * inn, generator=g)
    view = wide[:, inn:]
    assert torch.equal(op(view, packed, scale, bias), K.linear_int8_reference(view, w, scale, bias))


def test_linear_kernel_edge_values(kernel):
    """Zero rows give the bias; rows at +-127 after rounding cannot saturate the int16 pairs."""
    w = torch.full((4, 64), -127, dtype=torch.int8)
    x = torch.zeros(2, 64)
    x[1] = -3.0  # quantizes to -127 everywhere: every pair is 2 * 127 * 127
    scale, bias = torch.ones(4), torch.arange(4.0)
    y = torch.ops.musicgen_nb.linear_int8(x, K.pack_int8(w), scale, bias)
    assert torch.equal(y[0], bias)
    assert torch.equal(y[1], K.linear_int8_reference(x, w, scale, bias)[1])
    assert y[1, 0].item() == pytest.approx(64 * 127 * 127 * (3.0 / 127))


def test_linear_kernel_refuses_bad_input(kernel):
    op = torch.ops.musicgen_nb.linear_int8
    w = torch.zeros(8, 64, dtype=torch.int8)
    x, scale = torch.zeros(2, 64), torch.ones(8)
    with pytest.raises(RuntimeError, match="packed int8"):
        op(x, w, scale, None)  # not packed
    with pytest.raises(RuntimeError, match="float32"):
        op(x.double(), K.pack_int8(w), scale, None)
    with pytest.raises(RuntimeError, match="w takes 64"):
        op(torch.zeros(2, 100), K.pack_int8(w), scale, None)
    with pytest.raises(RuntimeError, match="scales"):
        op(x, K.pack_int8(w), torch.ones(3), None)


def test_linear_fallback_is_the_reference(monkeypatch):
    """Without the kernel, _kernels.linear_int8 runs the reference on the unpacked weights."""
    w = torch.randint(-127, 128, (6, 40), dtype=torch.int8)
    x, scale = torch.randn(3, 40), torch.rand(6)
    monkeypatch.setattr(build, "load", lambda: False)
    assert torch.equal(
        K.linear_int8(x, K.pack_int8(w), scale), K.linear_int8_reference(x, w, scale)
    )


# ---- 4-bit weights ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "out", "inn"),
    # musicgen's shapes, odd ones (padding rows and inputs, a short last group), one row,
    # and many rows (several tiles).
    [(2, 3072, 1024), (2, 1024, 4096), (1, 5, 33), (3, 13, 70), (7, 64, 96), (300, 40, 1024)],
)
def test_int4_kernel_equals_reference(kernel, rows, out, inn):
    """Same integer dot products per group; the kernel adds the scaled groups in float32 in
    its own order, the reference in float64."""
    g = torch.Generator().manual_seed(rows + out)
    x = torch.randn(rows, inn, generator=g)
    q, scale = K.quantize_int4(torch.randn(out, inn, generator=g))
    bias, res = torch.randn(out, generator=g), torch.randn(rows, out, generator=g)
    ln = torch.rand(inn, generator=g) + 0.5, torch.randn(inn, generator=g)
    packed = K.pack_int4(q)
    op = torch.ops.musicgen_nb.linear_int8

    def close(y, ref):  # float32 sums of up to 64 groups: a few ulps of the largest output
        torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-6 * float(ref.abs().max()))

    for b in (bias, None):
        close(op(x, packed, scale, b), K.linear_int4_reference(x, q, scale, b))
    y = op(x, packed, scale, bias, True, ln[0], ln[1], 1e-5, res)
    close(y, K.linear_int4_reference(x, q, scale, bias, True, ln[0], ln[1], 1e-5, res))
    view = torch.randn(rows, 2 * inn, generator=g)[:, inn:]  # strided rows
    close(op(view, packed, scale, bias), K.linear_int4_reference(view, q, scale, bias))


def test_int4_extreme_values_are_exact(kernel):
    """Weights at -7 and 7 and inputs at +-127 (the largest int16 pairs of the offset trick):
    with power-of-two scales every sum is exact, so kernel and reference agree bit for bit."""
    q = torch.tensor([[-7] * 64 + [7] * 64, [7] * 128, [0] * 128, [-7] * 128], dtype=torch.int8)
    scale = torch.full((4, 2), 0.5)
    x = torch.stack([torch.full((128,), -3.0), torch.full((128,), 3.0)])
    y = torch.ops.musicgen_nb.linear_int8(x, K.pack_int4(q), scale, None)
    assert torch.equal(y, K.linear_int4_reference(x, q, scale))
    assert y[1].tolist() == [
        0.0,
        128 * 7 * 127 * 0.5 * (3 / 127),
        0.0,
        -128 * 7 * 127 * 0.5 * (3 / 127),
    ]


def test_int4_kernel_refuses_bad_input(kernel):
    op = torch.ops.musicgen_nb.linear_int8
    q, scale = K.quantize_int4(torch.randn(8, 128))
    p = K.pack_int4(q)
    with pytest.raises(RuntimeError, match=r"4-bit weights need contiguous float32 scales"):
        op(torch.zeros(2, 128), p, scale[:, :1].contiguous(), None)  # one scale per row
    with pytest.raises(RuntimeError, match=r"4-bit weights need"):
        op(torch.zeros(2, 128), p, scale.double(), None)
    with pytest.raises(RuntimeError, match="w takes 128"):
        op(torch.zeros(2, 64), p, scale, None)


def test_int4_fallback_is_the_reference(monkeypatch):
    q, scale = K.quantize_int4(torch.randn(6, 100))
    x = torch.randn(3, 100)
    monkeypatch.setattr(build, "load", lambda: False)
    assert torch.equal(
        K.linear_int8(x, K.pack_int4(q), scale), K.linear_int4_reference(x, q, scale)
    )
