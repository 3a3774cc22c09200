"""The decoder layers as one function that TorchScript compiles, and fast single linears.

A decode step with batch 1 is bound by memory bandwidth, and calls ~30 small
ops per layer. :func:`run_layers` runs every layer of the weight table
(:mod:`musicgen_nb.engine.table`) with no ``nn.Module`` calls and no Python
between the ops once :func:`compiled` has scripted it. Its helpers are plain
functions that TorchScript compiles and inlines with it.

The linear mode of a table (``mode``) is written as a literal in the helpers
(TorchScript reads no global constants): 0 fbgemm int8, 1 fp32 ``W @ x.T``,
2 ``F.linear``, 3 int8 weights dequantized at each call, 4 our C++ int8 linear
(the names are in :mod:`musicgen_nb.engine.table`).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .._kernels import quantize_kv
from .quantize import Int8Linear
from .static_layers import script_or_python

__all__ = ["fast_mm_ok", "linear_fn", "run_layers", "compiled"]


def fast_mm_ok(weight: torch.Tensor) -> bool:
    """True where ``W @ x.T`` beats ``F.linear`` for a few rows: fp32 on the CPU.

    On the 2-core AMD EPYC (AVX2) this engine was tuned on, MKL ran ``x @ W.T``
    with 2-8 rows as a small GEMM at 7-10 GB/s and ``W @ x.T`` (x row-major) on
    its matrix-vector path at 30+ GB/s, near the memory bandwidth a decode step is
    bound by. (bf16 is the other way round: ``F.linear`` reads 17-20 GB/s there,
    ``W @ x.T`` 10.) The choice depends on the CPU: on a 2-core Intel Xeon
    (AVX-512) with the same torch, ``F.linear`` read 28 GB/s a thread and
    ``W @ x.T`` 13, so there the static step (``step="static"``, always
    ``F.linear``) decodes fp32 1.6x faster. The dynamic step keeps one form
    everywhere, so a seed gives the same tokens on every run of a machine.

    Examples
    --------
    >>> import torch
    >>> fast_mm_ok(torch.zeros(2, 2)), fast_mm_ok(torch.zeros(2, 2, dtype=torch.bfloat16))
    (True, False)
    """
    return weight.device.type == "cpu" and weight.dtype == torch.float32


def linear_fn(module):
    """A fast callable ``f(x2d) -> y2d`` equivalent to ``module(x2d)``.

    Examples
    --------
    >>> import torch
    >>> lin = torch.nn.Linear(3, 2)
    >>> x = torch.randn(2, 3)
    >>> torch.allclose(linear_fn(lin)(x), lin(x), atol=1e-6)
    True
    """
    if isinstance(module, Int8Linear) and module.backend == "kernel":
        q, scale, bias = module.qweight, module.scale, module.bias
        kernel = torch.ops.musicgen_nb.linear_int8
        return lambda x: kernel(x.contiguous(), q, scale, bias, False)
    if isinstance(module, Int8Linear) and module.packed is not None:
        packed, reduce_range = module.packed, module.reduce_range
        op = torch.ops.quantized.linear_dynamic
        return lambda x: op(x, packed, reduce_range)
    if type(module) is torch.nn.Linear:
        w, b = module.weight, module.bias
        if not fast_mm_ok(w):
            return lambda x: F.linear(x, w, b)
        if b is None:
            return lambda x: torch.mm(w, x.contiguous().t()).t().contiguous()
        col = b[:, None]
        return lambda x: torch.addmm(col, w, x.contiguous().t()).t().contiguous()
    return module


def _linear(
    x: torch.Tensor,
    i: int,
    mode: int,
    packed: list[torch.classes.quantized.LinearPackedParamsBase],
    weights: list[torch.Tensor],
    biases: list[torch.Tensor | None],
    scales: list[torch.Tensor],
    reduce_range: bool,
    gelu: bool = False,
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """Linear ``i`` of the weight table applied to ``x`` ``[rows, in]``.

    Then GELU if ``gelu``, then ``+ residual``.
    """
    # The modes are written as literals: TorchScript reads no global constants.
    if mode == 4:  # KERNEL: GELU and residual run inside the kernel, on its output
        return torch.ops.musicgen_nb.linear_int8(
            x, weights[i], scales[i], biases[i], gelu, None, None, 1e-5, residual
        )
    if mode == 0:  # INT8 (fbgemm: the bias is packed with the weights)
        y = torch.ops.quantized.linear_dynamic(x, packed[i], reduce_range)
    elif mode == 1:  # MATVEC
        b = biases[i]
        y = torch.mm(weights[i], x.t()) if b is None else torch.addmm(b, weights[i], x.t())
        y = y.t().contiguous()
    elif mode == 2:  # LINEAR
        y = F.linear(x, weights[i], biases[i])
    else:  # DEQUANT
        b = biases[i]
        y = F.linear(x, weights[i].to(x.dtype)) * scales[i]
        y = y if b is None else y + b
    y = F.gelu(y) if gelu else y
    return y if residual is None else residual + y


def _norm_linear(
    x: torch.Tensor,
    i: int,
    n: int,
    norms: list[torch.Tensor],
    eps: float,
    mode: int,
    packed: list[torch.classes.quantized.LinearPackedParamsBase],
    weights: list[torch.Tensor],
    biases: list[torch.Tensor | None],
    scales: list[torch.Tensor],
    reduce_range: bool,
    gelu: bool = False,
) -> torch.Tensor:
    """Linear ``i`` of ``layer_norm(x)`` with norm ``n`` of the table (fused in the kernel)."""
    if mode == 4:
        return torch.ops.musicgen_nb.linear_int8(
            x, weights[i], scales[i], biases[i], gelu, norms[2 * n], norms[2 * n + 1], eps, None
        )
    h = F.layer_norm(x, [x.shape[1]], norms[2 * n], norms[2 * n + 1], eps)
    return _linear(h, i, mode, packed, weights, biases, scales, reduce_range, gelu)


def _weights(
    q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None, causal: bool, scaling: float
) -> torch.Tensor:
    """Attention weights of ``q`` over ``k`` in fp32 (what capture keeps)."""
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scaling
    if bias is not None:
        scores = scores + bias.float()
    if causal:
        n, m = q.shape[-2], k.shape[-2]
        mask = torch.ones(n, m, dtype=torch.bool, device=q.device).tril(m - n)
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1)


def _attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    causal: bool,
    keep: bool,
    scaling: float,
    kept: list[torch.Tensor],
) -> torch.Tensor:
    """Attention of ``q`` over ``k``/``v``; when ``keep``, its weights are appended to ``kept``.

    The output is the fused attention's either way, so capturing never changes the
    tokens; the kept weights are computed beside it, in fp32.
    """
    if keep:
        kept.append(_weights(q, k, bias, causal, scaling))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, is_causal=causal)


def _qkv(
    x: torch.Tensor,
    i: int,
    norms: list[torch.Tensor],
    eps: float,
    mode: int,
    fused_qkv: bool,
    packed: list[torch.classes.quantized.LinearPackedParamsBase],
    weights: list[torch.Tensor],
    biases: list[torch.Tensor | None],
    scales: list[torch.Tensor],
    reduce_range: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Layer ``i``'s self-attention query, key and value of ``x`` ``[rows * n, dim]``."""
    dim = x.shape[1]
    j = 8 * i
    if fused_qkv:
        qkv = _norm_linear(
            x, j, 3 * i, norms, eps, mode, packed, weights, biases, scales, reduce_range
        )
        return qkv[:, :dim], qkv[:, dim : 2 * dim], qkv[:, 2 * dim :]
    h = F.layer_norm(x, [dim], norms[6 * i], norms[6 * i + 1], eps)
    q = _linear(h, j, mode, packed, weights, biases, scales, reduce_range)
    k = _linear(h, j + 1, mode, packed, weights, biases, scales, reduce_range)
    v = _linear(h, j + 2, mode, packed, weights, biases, scales, reduce_range)
    return q, k, v


def _cache_kv(
    k: torch.Tensor,
    v: torch.Tensor,
    start: int,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    k_scale: torch.Tensor | None,
    v_scale: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Write ``k``, ``v`` ``[rows, heads, n, head_dim]`` at ``start`` into one layer's cache.

    The cache is int8, with a scale per position and head, when ``k_scale`` is given. Return the
    keys and values of positions ``0 .. start + n``.
    """
    n = k.shape[2]
    end = start + n
    if k_scale is None or v_scale is None:
        k_cache.narrow(2, start, n).copy_(k)
        v_cache.narrow(2, start, n).copy_(v)
        return k_cache.narrow(2, 0, end), v_cache.narrow(2, 0, end)
    kq, ks = quantize_kv(k)
    vq, vs = quantize_kv(v)
    k_cache.narrow(2, start, n).copy_(kq)
    v_cache.narrow(2, start, n).copy_(vq)
    k_scale.narrow(2, start, n).copy_(ks)
    v_scale.narrow(2, start, n).copy_(vs)
    keys = k_cache.narrow(2, 0, end).to(k.dtype) * k_scale.narrow(2, 0, end)[..., None]
    values = v_cache.narrow(2, 0, end).to(v.dtype) * v_scale.narrow(2, 0, end)[..., None]
    return keys, values


def _self_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    i: int,
    rows: int,
    start: int,
    heads: int,
    k_cache: list[torch.Tensor],
    v_cache: list[torch.Tensor],
    k_scale: list[torch.Tensor],
    v_scale: list[torch.Tensor],
    kernel: bool,
    self_bias: torch.Tensor | None,
    causal: bool,
    capture: list[int],
    scaling: float,
    kept: list[torch.Tensor],
) -> torch.Tensor:
    """Layer ``i``'s self-attention output ``[rows * n, dim]``; writes this step into the cache."""
    dim = q.shape[1]
    n = q.shape[0] // rows
    hd = dim // heads
    if kernel and n == 1:
        # one call: int8 cache write, scores, softmax, weighted values
        o = torch.ops.musicgen_nb.attend_int8(
            q, k, v, k_cache[i], k_scale[i], v_cache[i], v_scale[i], start, scaling
        )
        if i in capture:  # the weights beside the kernel's output, from the cache it wrote
            keys = k_cache[i].narrow(2, 0, start + 1).to(q.dtype)
            keys = keys * k_scale[i].narrow(2, 0, start + 1)[..., None]
            kept.append(
                _weights(q.reshape(rows, 1, heads, hd).transpose(1, 2), keys, None, False, scaling)
            )
        return o
    q = q.reshape(rows, n, heads, hd).transpose(1, 2)
    k = k.reshape(rows, n, heads, hd).transpose(1, 2)
    v = v.reshape(rows, n, heads, hd).transpose(1, 2)
    int8 = len(k_scale) > 0
    keys, values = _cache_kv(
        k, v, start, k_cache[i], v_cache[i], k_scale[i] if int8 else None,
        v_scale[i] if int8 else None,
    )  # fmt: skip
    o = _attention(q, keys, values, self_bias, causal, i in capture, scaling, kept)
    return o.transpose(1, 2).reshape(rows * n, dim)


def _cross_attention(
    q: torch.Tensor,
    i: int,
    rows: int,
    heads: int,
    kernel: bool,
    cross_k: list[torch.Tensor],
    cross_v: list[torch.Tensor],
    cross_bias: torch.Tensor | None,
    capture: list[int],
    scaling: float,
    kept: list[torch.Tensor],
) -> torch.Tensor:
    """Layer ``i``'s cross-attention output ``[rows * n, dim]`` for queries ``q``."""
    dim = q.shape[1]
    n = q.shape[0] // rows
    keep = i in capture
    if kernel and n == 1:  # one query over the text: one C++ call
        o = torch.ops.musicgen_nb.attend_cross(q, cross_k[i], cross_v[i], cross_bias, scaling)
        if keep:
            q4 = q.reshape(rows, n, heads, dim // heads).transpose(1, 2)
            kept.append(_weights(q4, cross_k[i], cross_bias, False, scaling))
        return o
    q = q.reshape(rows, n, heads, dim // heads).transpose(1, 2)
    o = _attention(q, cross_k[i], cross_v[i], cross_bias, False, keep, scaling, kept)
    return o.transpose(1, 2).reshape(rows * n, dim)


def run_layers(
    x: torch.Tensor,
    rows: int,
    start: int,
    heads: int,
    norms: list[torch.Tensor],
    eps: float,
    mode: int,
    fused_qkv: bool,
    packed: list[torch.classes.quantized.LinearPackedParamsBase],
    weights: list[torch.Tensor],
    biases: list[torch.Tensor | None],
    scales: list[torch.Tensor],
    reduce_range: bool,
    k_cache: list[torch.Tensor],
    v_cache: list[torch.Tensor],
    k_scale: list[torch.Tensor],
    v_scale: list[torch.Tensor],
    kernel: bool,
    cross_k: list[torch.Tensor],
    cross_v: list[torch.Tensor],
    cross_bias: torch.Tensor | None,
    self_bias: torch.Tensor | None,
    causal: bool,
    capture: list[int],
    scaling: float,
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Every decoder layer on ``x`` ``[rows * n, dim]`` (pre-norm MusicGen layers).

    The keys and values of positions ``start .. start + n`` are written into
    ``k_cache``/``v_cache`` (``[rows, heads, positions, head_dim]`` per layer).
    When ``k_scale``/``v_scale`` are given (int8 mode), the caches are int8 with
    one scale per position and head (``[rows, heads, positions]``); with
    ``kernel``, a single step's self-attention runs in the fused C++ kernel
    (:mod:`musicgen_nb._kernels`), else in PyTorch on the dequantized cache.
    Returns the hidden states and the attention weights of the ``capture``
    layers (self, cross). TorchScript compiles this function (see
    :func:`compiled`); it is plain Python too.
    """
    kept_self: list[torch.Tensor] = []
    kept_cross: list[torch.Tensor] = []
    for i in range(len(k_cache)):
        j = 8 * i
        q, k, v = _qkv(
            x, i, norms, eps, mode, fused_qkv, packed, weights, biases, scales, reduce_range
        )
        o = _self_attention(
            q, k, v, i, rows, start, heads, k_cache, v_cache, k_scale, v_scale, kernel, self_bias,
            causal, capture, scaling, kept_self,
        )  # fmt: skip
        x = _linear(o, j + 3, mode, packed, weights, biases, scales, reduce_range, False, x)
        if len(cross_k) > 0:
            q = _norm_linear(
                x, j + 4, 3 * i + 1, norms, eps, mode, packed, weights, biases, scales, reduce_range
            )
            o = _cross_attention(
                q, i, rows, heads, kernel, cross_k, cross_v, cross_bias, capture, scaling, kept_cross
            )  # fmt: skip
            x = _linear(o, j + 5, mode, packed, weights, biases, scales, reduce_range, False, x)
        h = _norm_linear(
            x, j + 6, 3 * i + 2, norms, eps, mode, packed, weights, biases, scales, reduce_range, True
        )  # fmt: skip
        x = _linear(h, j + 7, mode, packed, weights, biases, scales, reduce_range, False, x)
    return x, kept_self, kept_cross


@functools.cache
def compiled():
    """:func:`run_layers` compiled by TorchScript, or the Python function where that fails.

    A decode step calls ~30 small ops per layer; from TorchScript each costs
    ~1-2 us of dispatch instead of ~5-15 us from Python (~4 ms of a 20 ms int8
    step on musicgen-small). PyTorch marks TorchScript deprecated but ships it,
    and it is the one compiler that takes fbgemm's packed int8 weights
    (``torch.compile`` cannot trace them). :class:`~musicgen_nb.engine.Decoder`
    runs it with ``torch.jit.optimized_execution(False)``: the interpreter runs
    the ops as written, with no fusion passes, so the results are the Python
    function's.

    Examples
    --------
    >>> callable(compiled())
    True
    """
    return script_or_python(run_layers)
