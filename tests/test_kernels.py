"""The fused C++ attention kernel against its PyTorch reference, and the engine on both paths."""

from __future__ import annotations

import shutil

import pytest
import torch

import musicgen_nb as mg
from musicgen_nb import _kernels as K
from musicgen_nb import generation as G
from musicgen_nb.engine import Decoder


@pytest.fixture(scope="module")
def kernel():
    """The C++ kernel: it must build wherever a C++ compiler exists."""
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler here: only the PyTorch path runs")
    assert K.load(), K.status()
    return torch.ops.musicgen_nb.attend_int8


@pytest.fixture(scope="module")
def tiny_int8():
    return mg.load("tiny", precision="int8")


@pytest.fixture(scope="module")
def melody_int8():
    return mg.load("tiny-melody", precision="int8")


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


def test_kernel_refuses_bad_input(kernel):
    kc, ks, vc, vs = _filled(1, 2, 4, 8, 0, 0)
    q = torch.zeros(1, 16)
    with pytest.raises(RuntimeError, match="pos 4 outside the cache"):
        kernel(q, q, q, kc, ks, vc, vs, 4, 1.0)
    with pytest.raises(RuntimeError, match="float32"):
        kernel(q.double(), q, q, kc, ks, vc, vs, 0, 1.0)
    with pytest.raises(RuntimeError, match="does not fit"):
        kernel(torch.zeros(1, 24), torch.zeros(1, 24), torch.zeros(1, 24), kc, ks, vc, vs, 0, 1.0)


def test_quantize_kv_round_trip():
    x = torch.randn(3, 5, 64, generator=torch.Generator().manual_seed(0))
    q, s = K.quantize_kv(x)
    assert q.dtype == torch.int8 and s.shape == (3, 5) and q.abs().max() == 127
    assert ((q * s[..., None] - x).abs() <= s[..., None] / 2 + 1e-7).all()
    q0, s0 = K.quantize_kv(torch.zeros(2, 4))
    assert q0.eq(0).all() and s0.gt(0).all()  # no division by zero


@pytest.mark.parametrize("name", ["tiny_int8", "melody_int8"])
def test_engine_kernel_and_pytorch_paths_agree(request, kernel, name):
    """Decoding with the kernel and with the PyTorch fallback: same logits, same int8 cache."""
    s = request.getfixturevalue(name)
    with torch.inference_mode():
        cond = G.conditioning(s, ["lo-fi beat", "jazz"], negative=None, guidance_scale=3.0)
        rows = cond.hidden.shape[0]
        g = torch.Generator().manual_seed(0)
        toks = torch.randint(0, s.codebook_size, (rows, s.num_codebooks, 12), generator=g)
        fast = Decoder(s.model, cond, max_len=14)
        slow = Decoder(s.model, cond, max_len=14, kernels=False)
        assert fast.kernels and not slow.kernels and fast.k_cache.dtype == torch.int8
        for t in range(12):
            a = fast.step(toks[:, :, t : t + 1])
            b = slow.step(toks[:, :, t : t + 1])
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    end = fast.offset + 12
    assert torch.equal(fast.k_cache[:, :, :, :end], slow.k_cache[:, :, :, :end])
    assert torch.equal(fast.v_cache[:, :, :, :end], slow.v_cache[:, :, :, :end])


def test_engine_kernel_steps_after_a_chunk(tiny_int8, kernel):
    """Kernel steps read the int8 keys/values a chunk (PyTorch path) wrote, and vice versa."""
    s = tiny_int8
    with torch.inference_mode():
        cond = G.conditioning(s, ["lo-fi beat"], negative=None, guidance_scale=3.0)
        g = torch.Generator().manual_seed(2)
        toks = torch.randint(0, s.codebook_size, (2, s.num_codebooks, 12), generator=g)
        out = []
        for kernels in (True, False):
            dec = Decoder(s.model, cond, max_len=14, kernels=kernels)
            dec.step(toks[:, :, :1])
            dec.step(toks[:, :, 1:6])  # a causal chunk: always the PyTorch path
            dec.step(toks[:, :, 6:7])
            out.append(dec.step(toks[:, :, 7:12]))
    torch.testing.assert_close(out[0], out[1], rtol=1e-4, atol=1e-4)


def test_kernels_flag_is_checked(tiny):
    cond = G.conditioning(tiny, ["a"], negative=None, guidance_scale=3.0)
    with pytest.raises(ValueError, match="kernels=True needs an int8 model"):
        Decoder(tiny.model, cond, max_len=4, kernels=True)
    assert not Decoder(tiny.model, cond, max_len=4).kernels  # fp32: fp32 cache, no kernel


def test_turned_off_by_environment(monkeypatch):
    monkeypatch.setenv("MUSICGEN_NB_KERNELS", "0")
    K.load.cache_clear()
    try:
        assert K.load() is False and "MUSICGEN_NB_KERNELS=0" in K.status()["reason"]
    finally:
        monkeypatch.delenv("MUSICGEN_NB_KERNELS")
        K.load.cache_clear()
    K.load()
