"""The fused C++ attention kernel against its PyTorch reference, and the engine on both paths."""

from __future__ import annotations

import shutil

import pytest
import torch
from _capped import on_small_disk

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
    """Decoding with the attention kernel and with the PyTorch fallback: the same logits, the
    same int8 cache, up to rounding flips: the int8 linears quantize their inputs, so a 1e-7
    difference in an attention output can move one input across a rounding boundary."""
    s = request.getfixturevalue(name)
    with torch.inference_mode():
        cond = G.conditioning(s, ["lo-fi beat", "jazz"], negative=None, guidance_scale=3.0)
        rows = cond.hidden.shape[0]
        g = torch.Generator().manual_seed(0)
        toks = torch.randint(0, s.codebook_size, (rows, s.num_codebooks, 12), generator=g)
        fast = Decoder(s.model, cond, max_len=14)
        slow = Decoder(s.model, cond, max_len=14, kernels=False)
        assert fast.kernels and not slow.kernels and fast.k_cache.dtype == torch.int8
        exact = 0
        for t in range(12):
            a = fast.step(toks[:, :, t : t + 1]).log_softmax(-1)
            b = slow.step(toks[:, :, t : t + 1]).log_softmax(-1)
            exact += bool(torch.allclose(a, b, rtol=1e-4, atol=1e-4))
            assert float((a.exp() * (a - b)).sum(-1).max()) < 1e-3
    assert exact >= 8, f"only {exact} of 12 steps gave the same logits"
    end = fast.offset + 12
    for x, y in ((fast.k_cache, slow.k_cache), (fast.v_cache, slow.v_cache)):
        x, y = x[:, :, :, :end], y[:, :, :, :end]
        assert (x == y).float().mean() > 0.999 and (x.int() - y.int()).abs().max() <= 8


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


def test_pack_round_trip():
    w = torch.randint(-127, 128, (13, 70), dtype=torch.int8)
    p = K.pack_int8(w)
    assert p.shape == (4, 3, 4, 32) and p.is_contiguous()
    assert torch.equal(K.unpack_int8(p, 13, 70), w)
    assert p.reshape(4, 3, 4, 32)[3, :, 1:].eq(0).all()  # padding rows are zeros


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
    monkeypatch.setattr(K, "load", lambda: False)
    assert torch.equal(
        K.linear_int8(x, K.pack_int8(w), scale), K.linear_int8_reference(x, w, scale)
    )


def test_engine_kernel_and_fbgemm_linears(monkeypatch, kernel):
    """The engine with our int8 linear and with fbgemm (the fallback): both close to fp32,
    the kernel closer (8-bit inputs with a scale per row, against fbgemm's one scale per
    call and 7-bit inputs on CPUs without VNNI)."""
    from musicgen_nb import quantize as Q

    if not Q.fbgemm_available():
        pytest.skip("fbgemm is not available in this PyTorch build")
    ours = mg.load("tiny", precision="int8")
    monkeypatch.setattr(Q, "kernel_available", lambda: False)
    fb = mg.load("tiny", precision="int8")
    fp32 = mg.load("tiny")
    assert ours.model.decoder.lm_heads[0].fused.backend == "kernel"
    assert fb.model.decoder.lm_heads[0].fused.backend == "fbgemm"
    logits = []
    with torch.inference_mode():
        for s in (fp32, ours, fb):
            cond = G.conditioning(s, ["lo-fi beat"], negative=None, guidance_scale=3.0)
            g = torch.Generator().manual_seed(0)
            toks = torch.randint(0, s.codebook_size, (2, s.num_codebooks, 10), generator=g)
            dec = Decoder(s.model, cond, max_len=12)
            assert dec.table.mode == {fp32: 1, ours: 4, fb: 0}[s]
            logits.append(torch.stack([dec.step(toks[:, :, t : t + 1]) for t in range(10)]))
    ref = logits[0].log_softmax(-1)
    kl = [float((ref.exp() * (ref - x.log_softmax(-1))).sum(-1).mean()) for x in logits[1:]]
    assert kl[0] < 0.01 and kl[1] < 0.01, kl
    assert kl[0] < kl[1], kl


def test_a_build_killed_midway_does_not_block_later_processes(kernel, tmp_path):
    """kill -9 during the first build leaves torch's `lock` file behind; before, every later
    process waited on it forever. Two processes started together now both load the kernel."""
    import os
    import subprocess
    import sys

    built = K._build_dir()
    copy = tmp_path / "kernels" / built.name
    shutil.copytree(built, copy)
    (copy / "lock").write_text("")  # what a build killed mid-way leaves
    env = dict(os.environ, MUSICGEN_NB_CACHE=str(tmp_path), OMP_NUM_THREADS="1")
    code = "from musicgen_nb import _kernels as K; print(K.load(), K.status()['reason'])"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for p in procs:
        out, _ = p.communicate(timeout=180)
        assert out.startswith("True") and str(copy) in out, out
    assert not (copy / "lock").exists()


FULL_DISK = """import os, sys
from musicgen_nb import _kernels as K
print("LOADED", K.load())
print("REASON", K.status()["reason"])
print("FILES", sorted(f for _, _, fs in os.walk(sys.argv[1]) for f in fs))
"""


def test_full_disk_falls_back_and_leaves_no_half_written_source(tmp_path):
    """The build's source copy does not fit: load() says why, fbgemm and PyTorch run instead,
    and no temporary copy is left."""
    _, lines = on_small_disk(tmp_path, "16k", FULL_DISK, env="MUSICGEN_NB_CACHE={mnt}")
    assert lines["LOADED"] == "False"
    assert "No space left on device" in lines["REASON"], lines["REASON"]
    assert eval(lines["FILES"]) == []  # no attend.cpp.<pid> half-written


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


def test_int4_pack_round_trip_and_layout():
    g = torch.Generator().manual_seed(0)
    q = torch.randint(-7, 8, (13, 70), generator=g, dtype=torch.int8)
    p = K.pack_int4(q)
    assert p.shape == (4, 2, 4, 32) and p.dtype == torch.uint8 and p.is_contiguous()
    assert torch.equal(K.unpack_int4(p, 13, 70), q)
    assert p[3, :, 1:].eq(8 | 8 << 4).all()  # padding rows hold zeros (stored as 8)
    assert p[0, 0, 0, 5].item() == (int(q[0, 5]) + 8) | (int(q[0, 37]) + 8) << 4
    with pytest.raises(ValueError, match=r"\[-7, 7\], got values up to 8 in magnitude"):
        K.pack_int4(torch.full((4, 64), -8, dtype=torch.int8))
    with pytest.raises(
        ValueError, match=r"int8 \[out, in\].*got float32 tensor of shape \(13, 70\)"
    ):
        K.pack_int4(q.float())
    with pytest.raises(ValueError, match="got list"):
        K.pack_int4([[1]])
    with pytest.raises(
        ValueError, match=r"float weights \[out, in\], got float32 tensor of shape \(5,\)"
    ):
        K.quantize_int4(torch.ones(5))
    with pytest.raises(ValueError, match="got int8 tensor"):
        K.quantize_int4(q)


def test_quantize_int4_groups():
    """A scale per 64 inputs: a row of small weights next to a large one keeps its precision."""
    w = torch.cat([torch.full((1, 64), 0.01), torch.full((1, 64), 7.0)], dim=1)
    q, scale = K.quantize_int4(w)
    assert scale.shape == (1, 2) and q.tolist() == [[7] * 128]
    torch.testing.assert_close(scale, torch.tensor([[0.01 / 7, 1.0]]))
    q, scale = K.quantize_int4(torch.ones(3, 65))  # a short last group
    assert q.shape == (3, 65) and scale.shape == (3, 2)


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
    monkeypatch.setattr(K, "load", lambda: False)
    assert torch.equal(
        K.linear_int8(x, K.pack_int4(q), scale), K.linear_int4_reference(x, q, scale)
    )
